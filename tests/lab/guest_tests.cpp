// The lab suite: hostdev's core against a real kernel (run inside the lab VM by tests/lab/payload/run).
// Each TEST is one meson test of the 'lab' suite (and 'e2e' for the nested guest). The expectations are
// checked against the kernel's own view, read here with std::filesystem, independent of hostdev's code.
#include "core/error.hpp"
#include "core/ids.hpp"
#include "core/service.hpp"
#include "core/validate.hpp"

#include "fixtures/test_util.hpp"

#include <gtest/gtest.h>

#include <array>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;
using namespace hostdev::core;

namespace {

const fs::path kPci = "/sys/bus/pci/devices";

std::string slurp(const fs::path &p) {
  std::ifstream in(p);
  std::string s{std::istreambuf_iterator<char>(in), {}};
  while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
    s.pop_back();
  return s;
}

std::optional<std::string> kernel_driver(const std::string &addr) {
  std::error_code ec;
  auto t = fs::read_symlink(kPci / addr / "driver", ec);
  if (ec)
    return std::nullopt;
  return t.filename().string();
}

std::optional<int> kernel_group(const std::string &addr) {
  std::error_code ec;
  auto t = fs::read_symlink(kPci / addr / "iommu_group", ec);
  if (ec)
    return std::nullopt;
  return std::stoi(t.filename().string());
}

// The lowest address of a function with that vendor:device (three NVMe PFs share 1b36:0010; 0000:01:00.0 is the
// lab's own, the others play GPUs for the vGPU simulator). sysfs lists directories in hash order, not by name.
std::string find_pci(const std::string &vendor, const std::string &device) {
  std::string found;
  for (const auto &e : fs::directory_iterator(kPci))
    if (slurp(e.path() / "vendor") == vendor && slurp(e.path() / "device") == device &&
        (found.empty() || e.path().filename().string() < found))
      found = e.path().filename().string();
  return found;
}

std::string run(const std::string &cmd) {
  std::string out;
  FILE *p = ::popen(cmd.c_str(), "r");
  if (!p)
    return out;
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), buf.size(), p))
    out += buf.data();
  ::pclose(p);
  return out;
}

unsigned mtty_available(const std::string &type) {
  return static_cast<unsigned>(
      std::stoul(slurp("/sys/class/mdev_bus/mtty/mdev_supported_types/" + type + "/available_instances")));
}

// One hostdev as the daemon would hold it: real /sys, a fresh state directory.
class LabTest : public ::testing::Test {
protected:
  void SetUp() override { restart(); }
  void TearDown() override { service_.reset(); }
  void restart() {
    service_.reset();
    store_ = std::make_unique<Store>(state_.string());
    store_->load();
    service_ = std::make_unique<Service>(sysfs_, *store_, *names_, nullptr, nullptr);
  }

  Sysfs sysfs_{"/"};
  std::unique_ptr<PciNames> names_ = make_hwdb_names();
  hostdev::test::TempDir state_dir_{"hostdev-lab", "/tmp"};
  fs::path state_ = state_dir_.path();
  std::unique_ptr<Store> store_;
  std::unique_ptr<Service> service_;
};

} // namespace

TEST_F(LabTest, Inspect) {
  auto functions = service_->pci().discover();
  std::set<std::string> kernel;
  for (const auto &e : fs::directory_iterator(kPci))
    kernel.insert(e.path().filename().string());
  ASSERT_EQ(functions.size(), kernel.size());
  for (const auto &fn : functions) {
    SCOPED_TRACE(fn.address);
    EXPECT_TRUE(kernel.count(fn.address));
    EXPECT_EQ("0x" + hex4(fn.vendor_id), slurp(kPci / fn.address / "vendor"));
    EXPECT_EQ("0x" + hex4(fn.device_id), slurp(kPci / fn.address / "device"));
    EXPECT_EQ(class_hex(fn.class_code), slurp(kPci / fn.address / "class"));
    EXPECT_EQ(fn.driver, kernel_driver(fn.address));
    EXPECT_EQ(fn.iommu_group, kernel_group(fn.address));
    ASSERT_TRUE(fn.iommu_group) << "intel-iommu gives every function a group";
    std::vector<std::string> members;
    for (const auto &m :
         fs::directory_iterator("/sys/kernel/iommu_groups/" + std::to_string(*fn.iommu_group) + "/devices"))
      members.push_back(m.path().filename().string());
    std::sort(members.begin(), members.end());
    EXPECT_EQ(fn.group_members, members);
  }
  // The user-space resolver (used where seccomp refuses openat2, e.g. under the unit's RestrictSUIDSGID=) walks
  // the kernel's real symlinks to the same answers.
  Sysfs walk("/", Sysfs::Resolver::Userspace);
  PciBus walked(walk, *names_);
  const auto again = walked.discover();
  ASSERT_EQ(again.size(), functions.size());
  for (std::size_t i = 0; i < again.size(); ++i) {
    SCOPED_TRACE(again[i].address);
    EXPECT_EQ(again[i].address, functions[i].address);
    EXPECT_EQ(again[i].driver, functions[i].driver);
    EXPECT_EQ(again[i].iommu_group, functions[i].iommu_group);
    EXPECT_EQ(again[i].group_members, functions[i].group_members);
    EXPECT_EQ(again[i].virtfns, functions[i].virtfns);
  }
  EXPECT_EQ(MdevBus(walk).parent_names(), service_->mdevs().parent_names());
  EXPECT_FALSE(walk.exists("sys/bus/pci/devices/../../../../etc/passwd"));
  // The ICH9 functions share one group.
  const auto lpc = service_->pci().find("0000:00:1f.0");
  ASSERT_TRUE(lpc);
  EXPECT_GE(lpc->group_members.size(), 3u);
  // SR-IOV facts of the NVMe PF.
  const auto nvme = find_pci("0x1b36", "0x0010");
  ASSERT_FALSE(nvme.empty());
  auto pf = service_->pci().find(nvme);
  EXPECT_EQ(pf->sriov_totalvfs, 4u);
  EXPECT_EQ(pf->sriov_numvfs, 0u);
  // Names come from the real hwdb; the e1000e is well known.
  auto e1000e = service_->pci().find(find_pci("0x8086", "0x10d3"));
  EXPECT_NE(e1000e->device_name.find("82574L"), std::string::npos) << e1000e->device_name;
  auto report = service_->host_report();
  EXPECT_TRUE(report.iommu_enabled);
  EXPECT_TRUE(report.vfio_available());
  EXPECT_EQ(report.gpu_mode, GpuMode::Vgpu) << "the mtty parent makes this an mdev host";
  // And the CLI says the same in JSON.
  auto json = run("hostdevctl inspect --json --all");
  EXPECT_NE(json.find("\"iommu_enabled\": true"), std::string::npos) << json.substr(0, 400);
  EXPECT_NE(json.find("\"parent\": \"mtty\""), std::string::npos);
}

TEST_F(LabTest, BindE1000eAndRestore) {
  const auto addr = find_pci("0x8086", "0x10d3");
  ASSERT_EQ(kernel_driver(addr), "e1000e");
  const auto group = kernel_group(addr);
  ASSERT_TRUE(group);
  const auto dev = "/dev/vfio/" + std::to_string(*group);
  service_->register_device("nic", addr);
  service_->bind_device("nic");
  EXPECT_EQ(kernel_driver(addr), "vfio-pci");
  EXPECT_TRUE(fs::is_character_file(dev));
  EXPECT_EQ(slurp(kPci / addr / "driver_override"), "vfio-pci");
  EXPECT_EQ(hostdev::test::error_code_of([&] { service_->bind_device("nic"); }), Errc::AlreadyBound);
  service_->unbind_device("nic");
  EXPECT_EQ(kernel_driver(addr), "e1000e");
  EXPECT_EQ(slurp(kPci / addr / "driver_override"), "(null)");
  EXPECT_FALSE(fs::exists(dev));
}

TEST_F(LabTest, BindDriverlessEdu) {
  const auto addr = find_pci("0x1234", "0x11e8");
  ASSERT_EQ(kernel_driver(addr), std::nullopt);
  service_->register_device("edu", addr);
  service_->bind_device("edu");
  EXPECT_EQ(kernel_driver(addr), "vfio-pci");
  service_->unbind_device("edu");
  EXPECT_EQ(kernel_driver(addr), std::nullopt);
  EXPECT_EQ(slurp(kPci / addr / "driver_override"), "(null)");
  // restore on a healthy device changes nothing
  service_->restore_device("edu");
  EXPECT_EQ(kernel_driver(addr), std::nullopt);
}

TEST_F(LabTest, GroupConflict) {
  // 00:1f.2 (AHCI) shares a group with 00:1f.3 (SMBus, i2c_i801) and 00:1f.0 (LPC).
  ASSERT_EQ(kernel_driver("0000:00:1f.3"), "i801_smbus");
  const auto before = kernel_driver("0000:00:1f.2");
  service_->register_device("sata", "0000:00:1f.2");
  std::string message;
  EXPECT_EQ(hostdev::test::error_code_of([&] { service_->bind_device("sata"); }, &message), Errc::IommuGroupConflict);
  EXPECT_NE(message.find("0000:00:1f.3 (i801_smbus)"), std::string::npos) << message;
  EXPECT_EQ(kernel_driver("0000:00:1f.2"), before);
  EXPECT_EQ(slurp(kPci / "0000:00:1f.2" / "driver_override"), "(null)");
}

TEST_F(LabTest, SriovVf) {
  const auto pf = find_pci("0x1b36", "0x0010");
  ASSERT_FALSE(pf.empty());
  sysfs_.write("sys/bus/pci/devices/" + pf + "/sriov_drivers_autoprobe", "0");
  sysfs_.write("sys/bus/pci/devices/" + pf + "/sriov_numvfs", "2");
  auto fn = service_->pci().find(pf);
  ASSERT_EQ(fn->virtfns.size(), 2u);
  const auto vf = fn->virtfns[0];
  auto vfn = service_->pci().find(vf);
  EXPECT_EQ(vfn->physfn, pf);
  EXPECT_EQ(vfn->iommu_group, kernel_group(vf));
  EXPECT_NE(vfn->iommu_group, fn->iommu_group) << "a VF gets its own group";
  service_->register_device("vf0", vf);
  service_->bind_device("vf0");
  EXPECT_EQ(kernel_driver(vf), "vfio-pci");
  service_->unbind_device("vf0");
  EXPECT_EQ(kernel_driver(vf), std::nullopt);
  service_->unregister_device("vf0");
  sysfs_.write("sys/bus/pci/devices/" + pf + "/sriov_numvfs", "0");
  EXPECT_FALSE(fs::exists(kPci / vf));
}

TEST_F(LabTest, InstanceWithDevice) {
  const auto addr = find_pci("0x8086", "0x10d3");
  service_->register_device("nic", addr);
  const auto inst = service_->create_instance("vm-nic", {{"nic"}, "", "debian"}, 0);
  EXPECT_EQ(kernel_driver(addr), "vfio-pci");
  EXPECT_EQ(service_->get_device("nic").attached_to, inst.id);
  EXPECT_TRUE(fs::exists(state_ / "instances" / (inst.id + ".json")));
  auto paths = service_->instance_paths(inst);
  ASSERT_EQ(paths.device_paths.size(), 1u);
  EXPECT_TRUE(fs::is_directory(paths.device_paths[0]));
  service_->delete_instance("vm-nic");
  EXPECT_EQ(kernel_driver(addr), "e1000e");
  EXPECT_EQ(service_->get_device("nic").attached_to, "");
  EXPECT_FALSE(fs::exists(state_ / "instances" / (inst.id + ".json")));
}

TEST_F(LabTest, InstanceWithMttyProfile) {
  const auto before = mtty_available("mtty-2");
  const auto inst = service_->create_instance("vm-mtty", {{}, "Dual port serial", ""}, 0);
  ASSERT_TRUE(is_uuid(inst.mdev_uuid));
  EXPECT_EQ(inst.mdev_parent, "mtty");
  EXPECT_TRUE(fs::is_directory("/sys/bus/mdev/devices/" + inst.mdev_uuid));
  EXPECT_EQ(mtty_available("mtty-2"), before - 1);
  EXPECT_EQ(store_->mdevs().count(inst.mdev_uuid), 1u);
  restart();
  EXPECT_EQ(service_->get_instance("vm-mtty").mdev_uuid, inst.mdev_uuid) << "the store recorded it";
  service_->delete_instance("vm-mtty");
  EXPECT_FALSE(fs::exists("/sys/bus/mdev/devices/" + inst.mdev_uuid));
  EXPECT_EQ(mtty_available("mtty-2"), before);
  EXPECT_TRUE(store_->mdevs().empty());
}

TEST_F(LabTest, NoCapacity) {
  const auto free_slots = mtty_available("mtty-2");
  ASSERT_GT(free_slots, 0u);
  for (unsigned i = 0; i < free_slots; ++i)
    service_->create_instance("fill" + std::to_string(i), {{}, "mtty-2", ""}, 0);
  EXPECT_EQ(mtty_available("mtty-2"), 0u);
  const auto nic = find_pci("0x8086", "0x10d3");
  service_->register_device("nic", nic);
  EXPECT_EQ(hostdev::test::error_code_of([&] {
              service_->create_instance("one-too-many", {{"nic"}, "mtty-2", ""}, 0);
            }),
            Errc::NoCapacity);
  EXPECT_EQ(kernel_driver(nic), "e1000e") << "refused before binding anything";
  for (unsigned i = 0; i < free_slots; ++i)
    service_->delete_instance("fill" + std::to_string(i));
  EXPECT_EQ(mtty_available("mtty-2"), free_slots);
}

TEST_F(LabTest, CrashReconcile) {
  auto crash_create = [&](const std::string &name) {
    pid_t pid = ::fork();
    if (pid == 0) {
      ::setenv("HOSTDEV_TEST_CRASH_AT", "after-mdev-create", 1);
      try {
        service_->create_instance(name, {{}, "mtty-1", ""}, 0);
      } catch (...) {
      }
      ::_exit(3); // only reached when the crash point did not fire
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  };
  const auto before = service_->mdevs().list().size();
  ASSERT_TRUE(crash_create("crashed-a")) << "kill -9 after the mdev write";
  ASSERT_TRUE(crash_create("crashed-b"));
  restart();
  std::vector<std::string> ours;
  for (const auto &[uuid, rec] : store_->mdevs())
    ours.push_back(uuid);
  ASSERT_EQ(ours.size(), 2u);
  for (const auto &uuid : ours)
    ASSERT_TRUE(fs::exists("/sys/bus/mdev/devices/" + uuid)) << "the crashed process really created " << uuid;
  // A foreign mdev, created behind hostdev's back.
  const std::string foreign = new_uuid();
  sysfs_.write("sys/class/mdev_bus/mtty/mdev_supported_types/mtty-1/create", foreign);
  // One of ours is held open by a process (an open VFIO group fd, as a VM holds it).
  auto held = service_->mdevs().find(ours[1]);
  ASSERT_TRUE(held && held->iommu_group);
  int fd = ::open(("/dev/vfio/" + std::to_string(*held->iommu_group)).c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0) << "cannot open the mdev's VFIO group";

  auto stats = service_->reconcile();
  EXPECT_EQ(stats.destroyed, 1u);
  EXPECT_EQ(stats.skipped_in_use, 1u);
  EXPECT_EQ(stats.skipped_not_ours, before + 1);
  EXPECT_TRUE(stats.errors.empty());
  EXPECT_FALSE(fs::exists("/sys/bus/mdev/devices/" + ours[0])) << "exactly the orphan is destroyed";
  EXPECT_TRUE(fs::exists("/sys/bus/mdev/devices/" + ours[1])) << "never one in use";
  EXPECT_TRUE(fs::exists("/sys/bus/mdev/devices/" + foreign)) << "never a foreign one";

  ::close(fd);
  stats = service_->reconcile();
  EXPECT_EQ(stats.destroyed, 1u) << "released, it goes too";
  EXPECT_FALSE(fs::exists("/sys/bus/mdev/devices/" + ours[1]));
  EXPECT_TRUE(store_->mdevs().empty());
  EXPECT_TRUE(store_->intents().empty());
  sysfs_.write("sys/bus/mdev/devices/" + foreign + "/remove", "1");
}

TEST_F(LabTest, MdevctlAgrees) {
  const auto inst = service_->create_instance("vm-peer", {{}, "mtty-1", ""}, 0);
  const auto listing = run("mdevctl list 2>&1");
  EXPECT_NE(listing.find(inst.mdev_uuid), std::string::npos) << listing;
  EXPECT_NE(listing.find("mtty-1"), std::string::npos) << listing;
  service_->delete_instance("vm-peer");
  EXPECT_EQ(run("mdevctl list 2>&1").find(inst.mdev_uuid), std::string::npos);
}

// e2e: what the original's GPU end-to-end test proves, with edu standing in for the GPU and an mtty mdev for the
// vGPU: a nested QEMU started with exactly hostdev's arguments sees both devices.
TEST_F(LabTest, E2eNestedGuest) {
  const char *nested = std::getenv("LAB_NESTED_BOOT");
  if (!nested || !*nested)
    GTEST_SKIP() << "the lab VM was booted without --with-qemu";
  const auto edu = find_pci("0x1234", "0x11e8");
  service_->register_device("edu", edu);
  const auto inst = service_->create_instance("e2e", {{"edu"}, "mtty-2", ""}, 0);
  const auto args = service_->instance_paths(inst).qemu_args;
  ASSERT_EQ(args.size(), 4u);
  std::string cmd = nested;
  for (const auto &a : args)
    cmd += " '" + a + "'";
  std::cout << "nested: " << cmd << std::endl;
  const auto out = run(cmd + " 2>&1");
  std::cout << out << std::endl;
  EXPECT_NE(out.find("1234:11e8"), std::string::npos) << "the nested guest sees the edu device";
  EXPECT_NE(out.find("4348:3253"), std::string::npos) << "the nested guest sees the mtty mdev";
  service_->delete_instance("e2e");
  EXPECT_EQ(kernel_driver(edu), std::nullopt);
  EXPECT_FALSE(fs::exists("/sys/bus/mdev/devices/" + inst.mdev_uuid));
  EXPECT_TRUE(store_->instances().empty());
  EXPECT_EQ(service_->get_device("edu").attached_to, "");
}
