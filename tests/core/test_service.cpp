#include "core/acl.hpp"
#include "core/error.hpp"
#include "core/process.hpp"
#include "core/service.hpp"
#include "core/validate.hpp"

#include "fixtures/fake_host.hpp"
#include "fixtures/test_util.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

#include <fstream>
#include <sstream>

#include <csignal>
#include <cstdlib>
#include <filesystem>

namespace fs = std::filesystem;
using namespace hostdev::core;
using namespace hostdev::test;
using namespace std::chrono_literals;

namespace {

struct RecordingEvents : Events {
  std::vector<std::string> log;
  void mdev_created(const std::string &uuid, const std::string &profile, const std::string &parent,
                    const std::string &) override {
    log.push_back("mdev_created " + profile + " " + parent + " " + uuid);
  }
  void mdev_destroyed(const std::string &uuid, const std::string &) override {
    log.push_back("mdev_destroyed " + uuid);
  }
  void instance_state_changed(const std::string &id, const std::string &state, const std::string &) override {
    log.push_back("instance_state_changed " + id + " " + state);
  }
  void vf_quarantined(const std::string &vf, const std::vector<std::string> &instances) override {
    log.push_back("vf_quarantined " + vf + " " + std::to_string(instances.size()));
  }
  void reconciled(const ReconcileStats &s) override {
    log.push_back("reconciled " + std::to_string(s.destroyed) + "/" + std::to_string(s.skipped_not_ours) + "/" +
                  std::to_string(s.skipped_in_use) + "/" + std::to_string(s.cleared_attachments));
  }
  bool saw(const std::string &prefix) const {
    return std::any_of(log.begin(), log.end(), [&](const auto &l) { return l.rfind(prefix, 0) == 0; });
  }
};

class ServiceTest : public ::testing::Test {
protected:
  void TearDown() override { service_.reset(); }
  void build(const std::function<void(FakeHost &)> &canned) {
    canned(host_);
    sysfs_ = std::make_unique<Sysfs>(host_.root());
    sysfs_->set_write_hook(host_.kernel());
    restart();
  }
  // A fresh Store and Service over the same state directory: what a daemon restart sees.
  void restart() {
    service_.reset();
    store_ = std::make_unique<Store>(state_.string());
    store_->load();
    service_ = std::make_unique<Service>(*sysfs_, *store_, *names_, nullptr, &events_, ServiceOptions{300ms});
  }
  std::size_t files_in(const std::string &folder) {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto &e : fs::directory_iterator(state_ / folder))
      ++n;
    return n;
  }
  std::optional<std::string> driver(const std::string &addr) { return service_->pci().driver_of(addr); }
  unsigned available(const std::string &parent, const std::string &type) {
    for (const auto &p : service_->mdevs().parents())
      if (p.name == parent)
        for (const auto &t : p.types)
          if (t.id == type)
            return t.available;
    return 9999;
  }

  FakeHost host_;
  TempDir state_dir_{"hostdev-state"};
  fs::path state_ = state_dir_.path();
  std::unique_ptr<PciNames> names_ = make_no_names();
  std::unique_ptr<Sysfs> sysfs_;
  std::unique_ptr<Store> store_;
  RecordingEvents events_;
  std::unique_ptr<Service> service_;
};

// A host with one mdev parent whose one type has room for exactly one instance, plus a NIC.
void one_slot_host(FakeHost &h) {
  h.iommu(true).vfio(true).driver("igb").driver("mtty");
  h.add_function(make_fn(kNicAddr, 0x8086, 0x1533, 0x020000, "igb", 2)).host_driver_for(kNicAddr, "igb");
  h.add_function(make_fn("0000:05:00.0", 0x10de, 0x26b9, 0x030200, std::nullopt, 5));
  h.add_mdev_parent("0000:05:00.0", {TypeSpec{"nvidia-1157", "NVIDIA L40S-4Q",
                                              "num_heads=4, frl_config=60, framebuffer=4096M, max_instance=1", 1}});
}

} // namespace

// ------------------------------------------------------------------------------------------------ register

TEST_F(ServiceTest, RegisterWithDefaultAndGivenNames) {
  build(make_passthrough_host);
  const auto &a = service_->register_device("", "0000:02:00.0");
  EXPECT_EQ(a.name, "pci-0000-02-00-0");
  EXPECT_EQ(a.type, "pci");
  EXPECT_TRUE(is_object_id(a.id));
  EXPECT_EQ(a.vendor_id, "8086");
  EXPECT_EQ(a.device_id, "1533");
  EXPECT_EQ(a.iommu_group, 2);
  EXPECT_EQ(a.host_driver, "igb");
  EXPECT_GT(a.created_at, 0u);
  const auto b = service_->register_device("l4", "0000:01:00.0");
  EXPECT_EQ(b.type, "gpu");
  EXPECT_EQ(service_->get_device("l4").pci_address, "0000:01:00.0");
  EXPECT_EQ(service_->get_device(b.id).name, "l4");
  EXPECT_EQ(service_->list_devices().size(), 2u);
  restart();
  EXPECT_EQ(service_->get_device("l4").id, b.id) << "registrations survive a restart";
}

TEST_F(ServiceTest, RegisterNormalisesTheAddress) {
  build(make_vgpu_host);
  EXPECT_EQ(service_->register_device("pf0", "0000:A2:00.0").pci_address, "0000:a2:00.0");
  EXPECT_EQ(error_code_of([&] { service_->register_device("again", "0000:a2:00.0"); }), Errc::AlreadyExists);
}

TEST_F(ServiceTest, RegisterRefusesBadInputAndWritesNothing) {
  build(make_passthrough_host);
  service_->register_device("nic", kNicAddr);
  const auto before = files_in("devices");
  EXPECT_EQ(error_code_of([&] { service_->register_device("x1", "0000:02:00"); }), Errc::InvalidPciAddress);
  EXPECT_EQ(error_code_of([&] { service_->register_device("x1", "../../../etc"); }), Errc::InvalidPciAddress);
  EXPECT_EQ(error_code_of([&] { service_->register_device("-bad", kBareAddr); }), Errc::InvalidName);
  EXPECT_EQ(error_code_of([&] { service_->register_device("a/b", kBareAddr); }), Errc::InvalidName);
  EXPECT_EQ(error_code_of([&] { service_->register_device("nic", kBareAddr); }), Errc::NameExists);
  EXPECT_EQ(error_code_of([&] { service_->register_device("nic2", kNicAddr); }), Errc::AlreadyExists);
  EXPECT_EQ(error_code_of([&] { service_->register_device("ghost", "0000:09:00.0"); }), Errc::DeviceNotFound);
  EXPECT_EQ(files_in("devices"), before);
  EXPECT_TRUE(host_.writes().empty()) << "registration never touches sysfs";
}

TEST_F(ServiceTest, RegisterWithoutIommuGroupIsIommuUnavailable) {
  build(make_no_iommu_host);
  EXPECT_EQ(error_code_of([&] { service_->register_device("gpu", kGpuAddr); }), Errc::IommuUnavailable);
  EXPECT_EQ(files_in("devices"), 0u);
}

TEST_F(ServiceTest, LookupsValidateAndReportNotFound) {
  build(make_passthrough_host);
  EXPECT_EQ(error_code_of([&] { service_->get_device("nope"); }), Errc::NotFound);
  EXPECT_EQ(error_code_of([&] { service_->get_device("../x"); }), Errc::InvalidName);
  EXPECT_EQ(error_code_of([&] { service_->get_instance("vm1"); }), Errc::NotFound);
  EXPECT_EQ(error_code_of([&] { service_->get_instance(""); }), Errc::InvalidName);
  EXPECT_EQ(error_code_of([&] { service_->unregister_device("nope"); }), Errc::NotFound);
}

TEST_F(ServiceTest, UnregisterRefusedWhileAttached) {
  build(make_passthrough_host);
  service_->register_device("nic", kNicAddr);
  service_->create_instance("vm1", {{"nic"}, "", ""}, 1000);
  EXPECT_EQ(error_code_of([&] { service_->unregister_device("nic"); }), Errc::InUse);
  service_->delete_instance("vm1");
  service_->unregister_device("nic");
  EXPECT_EQ(files_in("devices"), 0u);
  EXPECT_EQ(error_code_of([&] { service_->get_device("nic"); }), Errc::NotFound);
}

// ------------------------------------------------------------------------------------------------ bind

TEST_F(ServiceTest, BindUnbindRestore) {
  build(make_passthrough_host);
  service_->register_device("nic", kNicAddr);
  service_->bind_device("nic");
  EXPECT_EQ(driver(kNicAddr), "vfio-pci");
  EXPECT_EQ(error_code_of([&] { service_->bind_device("nic"); }), Errc::AlreadyBound);
  service_->unbind_device("nic");
  EXPECT_EQ(driver(kNicAddr), "igb");
  EXPECT_EQ(error_code_of([&] { service_->unbind_device("nic"); }), Errc::NotBound);
  service_->bind_device("nic");
  service_->restore_device("nic");
  EXPECT_EQ(driver(kNicAddr), "igb");
  service_->restore_device("nic"); // restoring a healthy device is harmless
  EXPECT_EQ(driver(kNicAddr), "igb");
}

TEST_F(ServiceTest, ATimedOutWriteMarksTheDeviceBusyUntilRestored) {
  build(make_passthrough_host);
  service_->register_device("nic", kNicAddr);
  host_.delay_writes("drivers/igb/unbind", 800ms);
  EXPECT_EQ(error_code_of([&] { service_->bind_device("nic"); }), Errc::Timeout);
  EXPECT_TRUE(service_->is_busy(kNicAddr));
  std::string message;
  EXPECT_EQ(error_code_of([&] { service_->bind_device("nic"); }, &message), Errc::InUse);
  EXPECT_NE(message.find("busy"), std::string::npos) << message;
  EXPECT_EQ(error_code_of([&] { service_->create_instance("vm1", {{"nic"}, "", ""}, 0); }), Errc::InUse);
  std::this_thread::sleep_for(900ms); // the kernel finishes the write eventually
  host_.delay_writes("drivers/igb/unbind", 0ms);
  service_->restore_device("nic");
  EXPECT_FALSE(service_->is_busy(kNicAddr));
}

// ------------------------------------------------------------------------------------------------ instances

TEST_F(ServiceTest, InstanceWithDevicesBindsAttachesAndDeleteGivesBack) {
  build(make_passthrough_host);
  service_->register_device("l4", kGpuAddr);
  service_->register_device("l4-audio", kAudioAddr);
  const auto inst = service_->create_instance("vm1", {{"l4", "l4-audio"}, "", "ubuntu-24.04"}, 1000);
  EXPECT_EQ(driver(kGpuAddr), "vfio-pci");
  EXPECT_EQ(driver(kAudioAddr), "vfio-pci");
  EXPECT_EQ(inst.owner_uid, 1000u);
  EXPECT_EQ(inst.image, "ubuntu-24.04");
  EXPECT_EQ(service_->get_device("l4").attached_to, inst.id);
  EXPECT_EQ(service_->get_device("l4-audio").attached_to, inst.id);
  EXPECT_TRUE(store_->intents().empty());

  auto paths = service_->instance_paths(inst);
  EXPECT_EQ(paths.device_paths,
            (std::vector<std::string>{"/sys/bus/pci/devices/0000:01:00.0/", "/sys/bus/pci/devices/0000:01:00.1/"}));
  EXPECT_EQ(paths.qemu_args, (std::vector<std::string>{"-device", "vfio-pci,host=0000:01:00.0", "-device",
                                                       "vfio-pci,host=0000:01:00.1"}));
  EXPECT_EQ(paths.cloud_hypervisor_args,
            (std::vector<std::string>{"--device", "path=/sys/bus/pci/devices/0000:01:00.0/",
                                      "path=/sys/bus/pci/devices/0000:01:00.1/"}));
  EXPECT_EQ(error_code_of([&] {
              service_->create_instance("vm2", {{"l4"}, "", ""}, 0);
            }),
            Errc::InUse)
      << "one attachment per device";

  restart();
  EXPECT_EQ(service_->get_instance("vm1").devices.size(), 2u);
  service_->delete_instance("vm1");
  EXPECT_EQ(driver(kGpuAddr), "nvidia");
  EXPECT_EQ(driver(kAudioAddr), "snd_hda_intel");
  EXPECT_EQ(service_->get_device("l4").attached_to, "");
  EXPECT_EQ(files_in("instances"), 0u);
}

TEST_F(ServiceTest, InstanceWithAProfileCreatesAnMdevAndDeleteDestroysIt) {
  build(make_vgpu_host);
  const auto before = available(vf_address(kPf0Addr, 0), "nvidia-1157");
  const auto inst = service_->create_instance("vgpu1", {{}, "NVIDIA L40S-4Q", ""}, 0);
  ASSERT_TRUE(is_uuid(inst.mdev_uuid));
  EXPECT_EQ(inst.gpu_profile, "NVIDIA L40S-4Q");
  EXPECT_EQ(inst.mdev_parent, vf_address(kPf0Addr, 0));
  auto m = service_->mdevs().find(inst.mdev_uuid);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->type_id, "nvidia-1157");
  EXPECT_EQ(available(inst.mdev_parent, "nvidia-1157"), before - 1);
  EXPECT_EQ(store_->mdevs().count(inst.mdev_uuid), 1u);
  EXPECT_TRUE(events_.saw("mdev_created NVIDIA L40S-4Q " + inst.mdev_parent + " " + inst.mdev_uuid));

  auto paths = service_->instance_paths(inst);
  EXPECT_EQ(paths.device_paths, std::vector<std::string>{"/sys/bus/mdev/devices/" + inst.mdev_uuid + "/"});
  EXPECT_EQ(paths.qemu_args,
            (std::vector<std::string>{"-device", "vfio-pci,sysfsdev=/sys/bus/mdev/devices/" + inst.mdev_uuid}));

  // The profile may also be named by its type id; the next free parent is taken.
  const auto second = service_->create_instance("vgpu2", {{}, "nvidia-1157", ""}, 0);
  EXPECT_NE(second.mdev_parent, inst.mdev_parent);

  service_->delete_instance("vgpu1");
  EXPECT_FALSE(service_->mdevs().find(inst.mdev_uuid));
  EXPECT_EQ(available(inst.mdev_parent, "nvidia-1157"), before);
  EXPECT_EQ(store_->mdevs().count(inst.mdev_uuid), 0u);
  EXPECT_TRUE(events_.saw("mdev_destroyed " + inst.mdev_uuid));
}

TEST_F(ServiceTest, NoCapacityAndUnknownProfilesAreRefusedBeforeAnyWrite) {
  build(one_slot_host);
  service_->register_device("nic", kNicAddr);
  service_->create_instance("first", {{}, "NVIDIA L40S-4Q", ""}, 0);
  const auto writes = host_.writes().size();
  EXPECT_EQ(error_code_of([&] {
              service_->create_instance("second", {{"nic"}, "NVIDIA L40S-4Q", ""}, 0);
            }),
            Errc::NoCapacity);
  EXPECT_EQ(error_code_of([&] {
              service_->create_instance("third", {{"nic"}, "NVIDIA A100-40C", ""}, 0);
            }),
            Errc::ProfileUnavailable);
  EXPECT_EQ(host_.writes().size(), writes);
  EXPECT_EQ(driver(kNicAddr), "igb");
  EXPECT_EQ(files_in("instances"), 1u);
  EXPECT_EQ(files_in("journal"), 0u);
}

TEST_F(ServiceTest, CreateValidatesItsArguments) {
  build(make_passthrough_host);
  service_->register_device("nic", kNicAddr);
  service_->create_instance("vm1", {{"nic"}, "", ""}, 0);
  service_->register_device("bare", kBareAddr);
  EXPECT_EQ(error_code_of([&] { service_->create_instance("-x", {{"bare"}, "", ""}, 0); }), Errc::InvalidName);
  EXPECT_EQ(error_code_of([&] { service_->create_instance("vm1", {{"bare"}, "", ""}, 0); }), Errc::NameExists);
  EXPECT_EQ(error_code_of([&] { service_->create_instance("vm2", {{}, "", ""}, 0); }), Errc::InvalidArgument);
  EXPECT_EQ(error_code_of([&] {
              service_->create_instance("vm2", {{"bare", "bare"}, "", ""}, 0);
            }),
            Errc::InvalidArgument);
  EXPECT_EQ(error_code_of([&] { service_->create_instance("vm2", {{"ghost"}, "", ""}, 0); }), Errc::NotFound);
  EXPECT_EQ(error_code_of([&] { service_->create_instance("vm2", {{"bare"}, "", "a\nb"}, 0); }), Errc::InvalidArgument);
  EXPECT_EQ(error_code_of([&] {
              service_->create_instance("vm2", {{"bare"}, "x/../y", ""}, 0);
            }),
            Errc::InvalidArgument);
  EXPECT_EQ(driver(kBareAddr), std::nullopt);
  EXPECT_EQ(files_in("instances"), 1u);
}

TEST_F(ServiceTest, AFailedCreateRollsBackEveryDeviceInReverse) {
  build(make_passthrough_host);
  service_->register_device("nic", kNicAddr);
  service_->register_device("bare", kBareAddr);
  // The second bind fails at the probe: the first device must go back to igb.
  host_.fail_writes("drivers_probe", 0); // no-op knob reset guard
  std::vector<std::string> seen;
  int probes = 0;
  auto kernel = host_.kernel();
  sysfs_->set_write_hook([&, kernel](const std::string &path, std::string_view value) {
    if (path == "sys/bus/pci/drivers_probe" && value == kBareAddr && ++probes == 1)
      return EIO;
    return kernel(path, value);
  });
  std::string message;
  EXPECT_EQ(error_code_of(
                [&] {
                  service_->create_instance("vm1", {{"nic", "bare"}, "", ""}, 0);
                },
                &message),
            Errc::KernelError);
  EXPECT_EQ(driver(kNicAddr), "igb");
  EXPECT_NE(driver(kBareAddr), "vfio-pci");
  EXPECT_EQ(service_->get_device("nic").attached_to, "");
  EXPECT_EQ(files_in("instances"), 0u);
  EXPECT_EQ(files_in("journal"), 0u) << "a complete rollback leaves no intent behind";
}

TEST_F(ServiceTest, AFailedMdevCreateRollsBackTheDevices) {
  build(one_slot_host);
  service_->register_device("nic", kNicAddr);
  host_.fail_writes("/create", EIO);
  EXPECT_EQ(error_code_of([&] {
              service_->create_instance("vm1", {{"nic"}, "NVIDIA L40S-4Q", ""}, 0);
            }),
            Errc::KernelError);
  EXPECT_EQ(driver(kNicAddr), "igb");
  EXPECT_EQ(files_in("mdevs"), 0u);
  EXPECT_EQ(files_in("instances"), 0u);
  EXPECT_EQ(files_in("journal"), 0u);
  EXPECT_EQ(available("0000:05:00.0", "nvidia-1157"), 1u);
}

TEST_F(ServiceTest, DeleteRefusesWhileAVmHoldsTheDeviceAndCanBeRetried) {
  build(make_passthrough_host);
  service_->register_device("nic", kNicAddr);
  service_->create_instance("vm1", {{"nic"}, "", ""}, 0);
  host_.open_fd(31337, "qemu-system-x86", "/dev/vfio/2");
  std::string message;
  EXPECT_EQ(error_code_of([&] { service_->delete_instance("vm1"); }, &message), Errc::InUse);
  EXPECT_NE(message.find("31337 (qemu-system-x86)"), std::string::npos) << message;
  EXPECT_EQ(driver(kNicAddr), "vfio-pci");
  EXPECT_EQ(files_in("instances"), 1u);
  host_.remove("proc/31337");
  service_->delete_instance("vm1");
  EXPECT_EQ(driver(kNicAddr), "igb");
}

TEST_F(ServiceTest, DeleteRefusesWhileAVmHoldsTheMdev) {
  build(one_slot_host);
  const auto inst = service_->create_instance("vm1", {{}, "NVIDIA L40S-4Q", ""}, 0);
  auto group = service_->mdevs().find(inst.mdev_uuid)->iommu_group;
  ASSERT_TRUE(group);
  host_.open_fd(4000, "qemu-system-x86", "/dev/vfio/" + std::to_string(*group));
  EXPECT_EQ(error_code_of([&] { service_->delete_instance("vm1"); }), Errc::InUse);
  EXPECT_TRUE(service_->mdevs().find(inst.mdev_uuid));
}

// ------------------------------------------------------------------------------------------------ reads

TEST_F(ServiceTest, ResourcesInVgpuMode) {
  build(make_vgpu_host);
  auto res = service_->gpu_resources();
  EXPECT_EQ(res.mode, GpuMode::Vgpu);
  EXPECT_EQ(res.total_slots, 64u);
  EXPECT_EQ(res.used_slots, 0u);
  ASSERT_EQ(res.profiles.size(), 4u);
  for (const auto &p : res.profiles)
    EXPECT_EQ(p.available, 64u) << p.name;
  service_->create_instance("v1", {{}, "NVIDIA L40S-48Q", ""}, 0);
  res = service_->gpu_resources();
  EXPECT_EQ(res.used_slots, 1u);
  EXPECT_EQ(res.total_slots, 64u);
  for (const auto &p : res.profiles)
    EXPECT_EQ(p.available, 63u) << p.name << ": a VF holding a vGPU offers no other profile";
  // Per GPU: the two PFs with their 32 VFs each; the vGPU is on one of them.
  ASSERT_EQ(res.gpus.size(), 2u);
  EXPECT_EQ(res.gpus[0].pci_address, kPf0Addr);
  EXPECT_EQ(res.gpus[1].pci_address, kPf1Addr);
  EXPECT_EQ(res.gpus[0].total_slots + res.gpus[1].total_slots, 64u);
  EXPECT_EQ(res.gpus[0].total_slots, 32u);
  EXPECT_EQ(res.gpus[0].used_slots + res.gpus[1].used_slots, 1u);
}

TEST_F(ServiceTest, ResourcesInPassthroughMode) {
  build(make_passthrough_host);
  auto res = service_->gpu_resources();
  EXPECT_EQ(res.mode, GpuMode::Passthrough);
  ASSERT_EQ(res.devices.size(), 1u);
  EXPECT_EQ(res.devices[0].pci_address, kGpuAddr);
  EXPECT_TRUE(res.devices[0].available);
  EXPECT_EQ(res.total_slots, 1u);
  service_->register_device("l4", kGpuAddr);
  service_->register_device("l4-audio", kAudioAddr);
  service_->create_instance("vm", {{"l4", "l4-audio"}, "", ""}, 0);
  res = service_->gpu_resources();
  EXPECT_EQ(res.devices[0].name, "l4");
  EXPECT_FALSE(res.devices[0].available);
  EXPECT_EQ(res.used_slots, 1u);
}

TEST_F(ServiceTest, ResourcesWithoutIommuOfferNoSlots) {
  build(make_no_iommu_host);
  auto res = service_->gpu_resources();
  EXPECT_EQ(res.mode, GpuMode::None);
  ASSERT_EQ(res.devices.size(), 1u);
  EXPECT_FALSE(res.devices[0].available);
  EXPECT_EQ(res.total_slots, 0u) << "a GPU without an IOMMU group is no slot";
  EXPECT_EQ(res.used_slots, 0u) << "and nothing uses it";
}

TEST_F(ServiceTest, ListAvailableMarksRegisteredDevices) {
  build(make_passthrough_host);
  const auto &rec = service_->register_device("l4", kGpuAddr);
  auto gpus = service_->list_available(false);
  ASSERT_EQ(gpus.size(), 2u) << "the L4 and, being NVIDIA, its audio function";
  EXPECT_EQ(gpus[0].registered_id, rec.id);
  EXPECT_EQ(gpus[1].registered_id, "");
  EXPECT_EQ(service_->list_available(true).size(), 5u);
  EXPECT_EQ(service_->host_report().gpu_mode, GpuMode::Passthrough);
}

// ------------------------------------------------------------------------------------------------ reconcile

TEST_F(ServiceTest, ReconcileDestroysOnlyOurOrphanedIdleMdevs) {
  build(make_vgpu_host);
  const auto p0 = vf_address(kPf0Addr, 0), p1 = vf_address(kPf0Addr, 1), p2 = vf_address(kPf0Addr, 2);
  const std::string orphan = "11111111-1111-4111-8111-111111111111";
  const std::string foreign = "22222222-2222-4222-8222-222222222222";
  const std::string busy = "33333333-3333-4333-8333-333333333333";
  host_.add_mdev(p0, "nvidia-1157", orphan).add_mdev(p1, "nvidia-1157", foreign).add_mdev(p2, "nvidia-1157", busy);
  store_->put_mdev({orphan, p0, "nvidia-1157", "0123456789abcdef0123456789abcdef", 1});
  store_->put_mdev({busy, p2, "nvidia-1157", "0123456789abcdef0123456789abcdee", 1});
  const auto kept = service_->create_instance("kept", {{}, "NVIDIA L40S-1Q", ""}, 0);
  auto busy_group = service_->mdevs().find(busy)->iommu_group;
  host_.open_fd(555, "qemu-system-x86", "/dev/vfio/" + std::to_string(*busy_group));

  restart();
  auto stats = service_->reconcile();
  EXPECT_EQ(stats.destroyed, 1u);
  EXPECT_EQ(stats.skipped_not_ours, 1u);
  EXPECT_EQ(stats.skipped_in_use, 1u);
  EXPECT_TRUE(stats.errors.empty());
  EXPECT_FALSE(service_->mdevs().find(orphan));
  EXPECT_TRUE(service_->mdevs().find(foreign));
  EXPECT_TRUE(service_->mdevs().find(busy));
  EXPECT_TRUE(service_->mdevs().find(kept.mdev_uuid)) << "an instance's mdev is never touched";
  EXPECT_TRUE(events_.saw("mdev_destroyed " + orphan));
  EXPECT_TRUE(events_.saw("reconciled 1/1/1/0"));
  EXPECT_EQ(store_->mdevs().count(orphan), 0u);
}

TEST_F(ServiceTest, ReconcileClearsAttachmentsToVanishedInstancesAndRestoresTheDevice) {
  build(make_passthrough_host);
  service_->register_device("nic", kNicAddr);
  const auto inst = service_->create_instance("vm1", {{"nic"}, "", ""}, 0);
  // The instance file vanishes (deleted by hand, lost with a disk): the attachment is stale.
  fs::remove(state_ / "instances" / (inst.id + ".json"));
  restart();
  auto stats = service_->reconcile();
  EXPECT_EQ(stats.cleared_attachments, 1u);
  EXPECT_EQ(service_->get_device("nic").attached_to, "");
  EXPECT_EQ(driver(kNicAddr), "igb");
}

TEST_F(ServiceTest, ACrashAfterTheMdevWriteIsUndoneByTheNextReconcile) {
  build(one_slot_host);
  service_->register_device("nic", kNicAddr);
  // The child creates the instance and is killed right after the mdev exists, before the store commit.
  EXPECT_EXIT(
      {
        ::setenv("HOSTDEV_TEST_CRASH_AT", "after-mdev-create", 1);
        service_->create_instance("vm1", {{"nic"}, "NVIDIA L40S-4Q", ""}, 0);
        std::exit(0);
      },
      ::testing::KilledBySignal(SIGKILL), "");
  ASSERT_EQ(service_->mdevs().list().size(), 1u) << "the child really created the mdev";
  EXPECT_EQ(driver(kNicAddr), "vfio-pci");
  restart();
  EXPECT_EQ(store_->intents().size(), 1u);
  EXPECT_TRUE(store_->instances().empty());
  auto stats = service_->reconcile();
  EXPECT_EQ(stats.destroyed, 1u);
  EXPECT_TRUE(service_->mdevs().list().empty());
  EXPECT_EQ(driver(kNicAddr), "igb") << "the device the crashed create bound is given back";
  EXPECT_TRUE(store_->intents().empty());
  EXPECT_TRUE(store_->mdevs().empty());
  EXPECT_EQ(available("0000:05:00.0", "nvidia-1157"), 1u);
}

TEST_F(ServiceTest, ACrashBeforeTheInstanceCommitIsUndoneToo) {
  build(make_passthrough_host);
  service_->register_device("nic", kNicAddr);
  EXPECT_EXIT(
      {
        ::setenv("HOSTDEV_TEST_CRASH_AT", "before-instance-commit", 1);
        service_->create_instance("vm1", {{"nic"}, "", ""}, 0);
        std::exit(0);
      },
      ::testing::KilledBySignal(SIGKILL), "");
  restart();
  EXPECT_FALSE(service_->get_device("nic").attached_to.empty()) << "the crash left a dangling attachment";
  auto stats = service_->reconcile();
  EXPECT_EQ(stats.cleared_attachments, 1u);
  EXPECT_EQ(service_->get_device("nic").attached_to, "");
  EXPECT_EQ(driver(kNicAddr), "igb");
}

// ------------------------------------------------------------------------------------------------ review fixes

TEST_F(ServiceTest, AnMdevCreateThatTimesOutIsRememberedAndRemovedOnceItExists) {
  build(one_slot_host);
  host_.delay_writes("/create", 700ms); // deadline is 300 ms
  EXPECT_EQ(error_code_of([&] { service_->create_instance("vm1", {{}, "NVIDIA L40S-4Q", ""}, 0); }), Errc::Timeout);
  EXPECT_EQ(store_->mdevs().size(), 1u) << "the record of an mdev the kernel may still make is kept";
  EXPECT_EQ(store_->intents().size(), 1u);
  auto early = service_->reconcile(); // while the kernel is still at it: the record must survive
  EXPECT_EQ(store_->mdevs().size(), 1u);
  EXPECT_EQ(early.destroyed, 0u);
  std::this_thread::sleep_for(800ms); // the write lands: the mdev exists, owned by no instance
  ASSERT_EQ(service_->mdevs().list().size(), 1u);
  auto stats = service_->reconcile();
  EXPECT_EQ(stats.destroyed, 1u);
  EXPECT_EQ(stats.skipped_not_ours, 0u) << "hostdev's own mdev never turns foreign";
  EXPECT_TRUE(service_->mdevs().list().empty());
  EXPECT_TRUE(store_->mdevs().empty());
  EXPECT_TRUE(store_->intents().empty());
  EXPECT_EQ(available("0000:05:00.0", "nvidia-1157"), 1u);
}

TEST_F(ServiceTest, ADeleteWhoseUnbindTimesOutReleasesTheDeviceSoRestoreAndRetryWork) {
  build(make_passthrough_host);
  service_->register_device("nic", kNicAddr);
  service_->create_instance("vm1", {{"nic"}, "", ""}, 0);
  host_.delay_writes("drivers/vfio-pci/unbind", 700ms);
  EXPECT_EQ(error_code_of([&] { service_->delete_instance("vm1"); }), Errc::Timeout);
  EXPECT_TRUE(service_->is_busy(kNicAddr));
  EXPECT_EQ(service_->get_device("nic").attached_to, "") << "released from the instance";
  std::this_thread::sleep_for(800ms);
  host_.delay_writes("drivers/vfio-pci/unbind", 0ms);
  service_->delete_instance("vm1"); // the retry finishes the delete
  EXPECT_EQ(files_in("instances"), 0u);
  service_->restore_device("nic"); // and restore clears the busy mark
  EXPECT_FALSE(service_->is_busy(kNicAddr));
  EXPECT_EQ(driver(kNicAddr), "igb");
}

TEST_F(ServiceTest, ReconcileKeepsTheJournalUntilItsWorkIsUndone) {
  build(make_passthrough_host);
  service_->register_device("nic", kNicAddr);
  EXPECT_EXIT(
      {
        ::setenv("HOSTDEV_TEST_CRASH_AT", "after-bind", 1);
        service_->create_instance("vm1", {{"nic"}, "", ""}, 0);
        std::exit(0);
      },
      ::testing::KilledBySignal(SIGKILL), "");
  restart();
  ASSERT_EQ(driver(kNicAddr), "vfio-pci");
  host_.open_fd(6060, "qemu-system-x86", "/dev/vfio/2"); // something holds it: the unbind must wait
  auto stats = service_->reconcile();
  EXPECT_EQ(stats.errors.size(), 1u);
  EXPECT_EQ(store_->intents().size(), 1u) << "the intent stays until the device is given back";
  EXPECT_EQ(driver(kNicAddr), "vfio-pci");
  host_.remove("proc/6060");
  stats = service_->reconcile();
  EXPECT_TRUE(stats.errors.empty());
  EXPECT_EQ(driver(kNicAddr), "igb");
  EXPECT_TRUE(store_->intents().empty());
}

TEST_F(ServiceTest, AStaleAttachmentIsKeptWhileAVmStillHoldsTheDevice) {
  build(make_passthrough_host);
  service_->register_device("nic", kNicAddr);
  const auto inst = service_->create_instance("vm1", {{"nic"}, "", ""}, 0);
  fs::remove(state_ / "instances" / (inst.id + ".json"));
  restart();
  host_.open_fd(7070, "qemu-system-x86", "/dev/vfio/2");
  auto stats = service_->reconcile();
  EXPECT_EQ(stats.cleared_attachments, 0u);
  EXPECT_EQ(service_->get_device("nic").attached_to, inst.id) << "never handed to another instance while held";
  EXPECT_EQ(error_code_of([&] { service_->create_instance("vm2", {{"nic"}, "", ""}, 0); }), Errc::InUse);
  host_.remove("proc/7070");
  stats = service_->reconcile();
  EXPECT_EQ(stats.cleared_attachments, 1u);
  EXPECT_EQ(driver(kNicAddr), "igb");
}

// ------------------------------------------------------------------------------ defects from the adversarial review

TEST_F(ServiceTest, ADeleteCutShortNoLongerClaimsTheDevicesItGaveBack) {
  build(make_passthrough_host);
  service_->register_device("nic", kNicAddr);
  service_->register_device("bare", kBareAddr);
  service_->create_instance("vm1", {{"nic", "bare"}, "", ""}, 0);
  host_.fail_writes(std::string(kBareAddr) + "/driver_override", EBUSY); // the second device refuses
  EXPECT_EQ(error_code_of([&] { service_->delete_instance("vm1"); }), Errc::KernelError);
  EXPECT_EQ(driver(kNicAddr), "igb") << "the first device was given back";
  const auto nic_id = service_->get_device("nic").id;
  EXPECT_EQ(service_->get_instance("vm1").devices, std::vector<std::string>{service_->get_device("bare").id})
      << "vm1 still claimed the device it had released";
  // Another instance takes the released device: nobody else lists it.
  service_->create_instance("vm2", {{"nic"}, "", ""}, 0);
  for (const auto &inst : service_->list_instances()) {
    if (inst.name != "vm2") {
      EXPECT_EQ(std::count(inst.devices.begin(), inst.devices.end(), nic_id), 0) << inst.name;
    }
  }
  restart();
  EXPECT_EQ(service_->get_instance("vm1").devices.size(), 1u) << "and so after a restart";
  host_.fail_writes(std::string(kBareAddr) + "/driver_override", 0);
  service_->delete_instance("vm1");
  EXPECT_EQ(service_->get_device("nic").attached_to, service_->get_instance("vm2").id);
}

TEST_F(ServiceTest, DeleteJournalsBeforeTheFirstKernelWrite) {
  build(make_vgpu_host);
  const auto inst = service_->create_instance("vgpu1", {{}, "NVIDIA L40S-1Q", ""}, 0);
  // The state directory stops taking writes (read-only, full): every folder becomes unwritable.
  for (const char *folder : {"devices", "instances", "mdevs", "journal"}) {
    fs::remove_all(state_ / folder);
    std::ofstream(state_ / folder) << "not a folder\n";
  }
  EXPECT_EQ(error_code_of([&] { service_->delete_instance("vgpu1"); }), Errc::KernelError);
  EXPECT_TRUE(service_->mdevs().find(inst.mdev_uuid)) << "the vGPU was destroyed although nothing was recorded";
  EXPECT_EQ(service_->get_instance("vgpu1").mdev_uuid, inst.mdev_uuid);
}

TEST_F(ServiceTest, AnInterruptedDeleteIsFinishedByReconcile) {
  build(make_passthrough_host);
  service_->register_device("nic", kNicAddr);
  service_->create_instance("vm1", {{"nic"}, "", ""}, 0);
  host_.fail_writes("drivers/vfio-pci/unbind", EIO);
  EXPECT_EQ(error_code_of([&] { service_->delete_instance("vm1"); }), Errc::KernelError);
  host_.fail_writes("drivers/vfio-pci/unbind", 0);
  EXPECT_EQ(files_in("journal"), 1u) << "the delete is journalled until it is finished";
  restart();
  const auto stats = service_->reconcile();
  EXPECT_TRUE(stats.errors.empty()) << ::testing::PrintToString(stats.errors);
  EXPECT_EQ(error_code_of([&] { service_->get_instance("vm1"); }), Errc::NotFound) << "reconcile finished it";
  EXPECT_EQ(driver(kNicAddr), "igb");
  EXPECT_EQ(files_in("journal"), 0u);
}

TEST_F(ServiceTest, AVgpuCreateTriesTheNextParentWhenOneRefuses) {
  build(make_vgpu_host);
  const auto first = vf_address(kPf0Addr, 0);
  host_.fail_writes(first + "/mdev_supported_types/nvidia-1155/create", EBUSY);
  const auto inst = service_->create_instance("vgpu1", {{}, "NVIDIA L40S-1Q", ""}, 0);
  EXPECT_NE(inst.mdev_parent, first);
  EXPECT_TRUE(service_->mdevs().find(inst.mdev_uuid));
  EXPECT_EQ(store_->mdevs().size(), 1u) << "the refused attempt left no record";
  EXPECT_EQ(files_in("journal"), 0u);
}

TEST_F(ServiceTest, AVgpuCreateFailsOnlyWhenEveryParentRefuses) {
  build(one_slot_host);
  host_.fail_writes("/create", EBUSY);
  std::string message;
  EXPECT_EQ(error_code_of(
                [&] {
                  service_->create_instance("vm1", {{}, "NVIDIA L40S-4Q", ""}, 0);
                },
                &message),
            Errc::KernelError);
  EXPECT_TRUE(store_->mdevs().empty());
  EXPECT_EQ(files_in("journal"), 0u);
}

TEST_F(ServiceTest, BridgesCannotBeRegistered) {
  build(make_passthrough_host);
  std::string message;
  EXPECT_EQ(error_code_of([&] { service_->register_device("br", kBridgeAddr); }, &message), Errc::InvalidArgument);
  EXPECT_NE(message.find("bridge"), std::string::npos) << message;
  EXPECT_EQ(files_in("devices"), 0u);
}

TEST_F(ServiceTest, UnregisteringABoundDeviceGivesItBackFirst) {
  build(make_passthrough_host);
  service_->register_device("nic", kNicAddr);
  service_->bind_device("nic");
  EXPECT_EQ(driver(kNicAddr), "vfio-pci");
  service_->unregister_device("nic");
  EXPECT_EQ(driver(kNicAddr), "igb") << "its host driver, which only the record knew, is not forgotten";
  EXPECT_EQ(files_in("devices"), 0u);
}

// ---------------------------------------------------------------------------------------------------- vendor VFIO

class VendorServiceTest : public ServiceTest {
protected:
  void SetUp() override { build(make_vendor_vgpu_host); }
  std::uint32_t type_on(const std::string &vf) { return service_->vendor_vgpu().current_type(vf); }
  std::vector<std::string> overrides_written() {
    std::vector<std::string> out;
    for (const auto &w : host_.writes())
      if (w.find("driver_override") != std::string::npos || w.find("drivers_probe") != std::string::npos ||
          w.find("/unbind") != std::string::npos)
        out.push_back(w);
    return out;
  }
};

TEST_F(VendorServiceTest, DetectedAsVgpuOnTheVendorFramework) {
  const auto view = service_->host_view();
  EXPECT_EQ(view.report.gpu_mode, GpuMode::Vgpu);
  EXPECT_EQ(view.report.gpu_framework(), "vendor-vfio");
  EXPECT_EQ(view.report.vendor_vf_count, 16U);
  const auto &res = view.resources;
  EXPECT_EQ(res.frameworks, (std::vector<std::string>{"vendor-vfio"}));
  EXPECT_EQ(res.total_slots, 16U);
  EXPECT_EQ(res.used_slots, 0U);
  ASSERT_EQ(res.gpus.size(), 2U);
  EXPECT_EQ(res.gpus[0].pci_address, kPf0Addr);
  EXPECT_EQ(res.gpus[0].framework, "vendor-vfio");
  ASSERT_EQ(res.profiles.size(), 5U);
  auto q4 = std::find_if(res.profiles.begin(), res.profiles.end(),
                         [](const ProfileSummary &p) { return p.name == "NVIDIA L40S-4Q"; });
  ASSERT_NE(q4, res.profiles.end());
  EXPECT_EQ(q4->type_id, "1150");
  EXPECT_EQ(q4->framebuffer_mb, 4096U);
  EXPECT_EQ(q4->available, 16U);
  EXPECT_EQ(q4->framework, "vendor-vfio");
}

TEST_F(VendorServiceTest, TwoVgpusGoToTwoGpusAndNoVfIsEverRebound) {
  const auto &a = service_->create_instance("vm1", {{}, "L40S-4Q", ""}, 1000);
  const auto vf_a = a.vgpu_vf;
  const auto &b = service_->create_instance("vm2", {{}, "NVIDIA L40S-4Q", ""}, 1000);
  const auto vf_b = b.vgpu_vf;
  ASSERT_FALSE(vf_a.empty());
  ASSERT_FALSE(vf_b.empty());
  EXPECT_EQ(service_->vendor_vgpu().find(vf_a)->gpu, kPf0Addr);
  EXPECT_EQ(service_->vendor_vgpu().find(vf_b)->gpu, kPf1Addr) << "the least-loaded GPU takes the second";
  EXPECT_EQ(type_on(vf_a), 1150U);
  EXPECT_EQ(type_on(vf_b), 1150U);
  EXPECT_EQ(b.gpu_profile, "NVIDIA L40S-4Q");
  EXPECT_EQ(b.vgpu_type, 1150U);
  EXPECT_TRUE(is_normalized_uuid(b.uuid));
  EXPECT_TRUE(b.mdev_uuid.empty());
  EXPECT_EQ(files_in("vgpus"), 2U);
  const auto paths = service_->instance_paths(b);
  EXPECT_EQ(paths.device_paths, (std::vector<std::string>{"/sys/bus/pci/devices/" + vf_b + "/"}));
  EXPECT_EQ(paths.qemu_args, (std::vector<std::string>{"-device", "vfio-pci,host=" + vf_b, "-uuid", b.uuid}));
  EXPECT_EQ(paths.cloud_hypervisor_args,
            (std::vector<std::string>{"--device", "path=/sys/bus/pci/devices/" + vf_b + "/"}));
  EXPECT_TRUE(events_.saw("mdev_created NVIDIA L40S-4Q " + vf_b + " " + b.uuid));

  const auto res = service_->gpu_resources();
  EXPECT_EQ(res.used_slots, 2U);
  EXPECT_EQ(res.gpus[0].framebuffer_used_mb, 4096U);
  EXPECT_EQ(res.gpus[1].framebuffer_used_mb, 4096U);

  service_->delete_instance("vm2");
  service_->delete_instance("vm1");
  EXPECT_EQ(type_on(vf_a), 0U);
  EXPECT_EQ(type_on(vf_b), 0U);
  const auto writes = host_.writes();
  EXPECT_NE(std::find(writes.begin(), writes.end(), "sys/bus/pci/devices/" + vf_b + "/nvidia/current_vgpu_type=0"),
            writes.end());
  EXPECT_TRUE(overrides_written().empty()) << overrides_written().front();
  EXPECT_EQ(files_in("vgpus"), 0U);
  EXPECT_EQ(files_in("journal"), 0U);
}

TEST_F(VendorServiceTest, TheTypeIdNamesAProfileToo) {
  const auto &a = service_->create_instance("vm1", {{}, "1147", ""}, 0);
  EXPECT_EQ(a.gpu_profile, "NVIDIA L40S-1Q");
}

TEST_F(VendorServiceTest, ARefusingVfIsSkippedForTheNext) {
  host_.fail_writes(vf_address(kPf0Addr, 0) + "/nvidia/current_vgpu_type", EIO);
  const auto &a = service_->create_instance("vm1", {{}, "L40S-4Q", ""}, 0);
  EXPECT_EQ(a.vgpu_vf, vf_address(kPf0Addr, 1));
  EXPECT_EQ(files_in("vgpus"), 1U);
}

TEST_F(VendorServiceTest, FullGpusGiveNoCapacityAndTheCatalogueKeepsTheName) {
  service_->create_instance("big1", {{}, "L40S-48Q", ""}, 0);
  service_->create_instance("big2", {{}, "L40S-48Q", ""}, 0);
  std::string message;
  EXPECT_EQ(error_code_of(
                [&] {
                  service_->create_instance("vm3", {{}, "L40S-48Q", ""}, 0);
                },
                &message),
            Errc::NoCapacity);
  EXPECT_NE(message.find("NVIDIA L40S-48Q"), std::string::npos) << message;
  // The daemon resolves the profile against the resources first: they must know it too (from the catalogue).
  EXPECT_NO_THROW(resolve_profile(service_->gpu_resources().profiles, "L40S-48Q"));
  EXPECT_EQ(error_code_of(
                [&] {
                  service_->create_instance("vm3", {{}, "L40S-5Q", ""}, 0);
                },
                &message),
            Errc::ProfileUnavailable);
  // Nothing is creatable now, yet the resources still name the assigned type and its framebuffer.
  const auto res = service_->gpu_resources();
  EXPECT_EQ(res.used_slots, 2U);
  EXPECT_EQ(res.gpus[0].framebuffer_used_mb, 49152U);
  auto big = std::find_if(res.profiles.begin(), res.profiles.end(),
                          [](const ProfileSummary &p) { return p.name == "NVIDIA L40S-48Q"; });
  ASSERT_NE(big, res.profiles.end());
  EXPECT_EQ(big->available, 0U);
  EXPECT_EQ(files_in("vgpu-types"), 5U);
}

TEST_F(VendorServiceTest, DeleteRefusesWhileAProcessHoldsTheVf) {
  const auto &a = service_->create_instance("vm1", {{}, "L40S-4Q", ""}, 0);
  const auto vf = a.vgpu_vf;
  host_.open_fd(777, "qemu-system-x86", "/dev/vfio/100");
  std::string message;
  EXPECT_EQ(error_code_of([&] { service_->delete_instance("vm1"); }, &message), Errc::InUse);
  EXPECT_NE(message.find("777 (qemu-system-x86)"), std::string::npos) << message;
  EXPECT_EQ(type_on(vf), 1150U);
  host_.remove("proc/777");
  service_->delete_instance("vm1");
  EXPECT_EQ(type_on(vf), 0U);
}

TEST_F(VendorServiceTest, ReconcileReleasesOnlyItsOwnOrphans) {
  const auto &a = service_->create_instance("vm1", {{}, "L40S-4Q", ""}, 0);
  const auto ours = a.vgpu_vf;
  // Someone else's assignment, made outside hostdev: never touched.
  const auto foreign = vf_address(kPf1Addr, 5);
  service_->vendor_vgpu().assign(foreign, 1147, 1s);
  // The instance vanishes (a crash between the store's writes, a hand edit): its vGPU is an orphan now.
  fs::remove(state_ / "instances" / (a.id + ".json"));
  restart();
  auto stats = service_->reconcile();
  EXPECT_EQ(stats.destroyed, 1U);
  EXPECT_EQ(stats.skipped_not_ours, 1U);
  EXPECT_EQ(type_on(ours), 0U);
  EXPECT_EQ(type_on(foreign), 1147U);
  EXPECT_EQ(files_in("vgpus"), 0U);
}

TEST_F(VendorServiceTest, ReconcileLeavesAHeldOrphan) {
  const auto &a = service_->create_instance("vm1", {{}, "L40S-4Q", ""}, 0);
  const auto vf = a.vgpu_vf;
  fs::remove(state_ / "instances" / (a.id + ".json"));
  restart();
  host_.open_fd(778, "qemu-system-x86", "/dev/vfio/100");
  EXPECT_EQ(service_->reconcile().skipped_in_use, 1U);
  EXPECT_EQ(type_on(vf), 1150U);
  host_.remove("proc/778");
  EXPECT_EQ(service_->reconcile().destroyed, 1U);
  EXPECT_EQ(type_on(vf), 0U);
}

TEST_F(VendorServiceTest, CrashAfterTheWriteIsUndoneByReconcile) {
  EXPECT_EXIT(
      {
        ::setenv("HOSTDEV_TEST_CRASH_AT", "after-vgpu-assign", 1);
        service_->create_instance("vm1", {{}, "L40S-4Q", ""}, 0);
      },
      ::testing::KilledBySignal(SIGKILL), "");
  const auto vf = vf_address(kPf0Addr, 0);
  EXPECT_EQ(type_on(vf), 1150U) << "the write happened before the crash";
  restart();
  EXPECT_EQ(service_->reconcile().destroyed, 1U);
  EXPECT_EQ(type_on(vf), 0U);
  EXPECT_EQ(files_in("journal"), 0U);
  EXPECT_EQ(files_in("vgpus"), 0U);
}

TEST_F(VendorServiceTest, TwoFailedGuestsQuarantineAVfUntilLifted) {
  const auto vf = vf_address(kPf0Addr, 0);
  auto &first = service_->create_instance("vm1", {{}, "L40S-1Q", ""}, 0);
  ASSERT_EQ(first.vgpu_vf, vf);
  EXPECT_FALSE(service_->report_guest_init("vm1", false));
  EXPECT_FALSE(service_->report_guest_init("vm1", false)) << "one instance counts once";
  service_->delete_instance("vm1");
  ASSERT_EQ(service_->create_instance("vm2", {{}, "L40S-1Q", ""}, 0).vgpu_vf, vf);
  EXPECT_TRUE(service_->report_guest_init("vm2", false));
  EXPECT_TRUE(events_.saw("vf_quarantined " + vf));
  service_->delete_instance("vm2");
  // Placement skips it now; the resources say so.
  const auto &third = service_->create_instance("vm3", {{}, "L40S-1Q", ""}, 0);
  EXPECT_NE(third.vgpu_vf, vf);
  EXPECT_EQ(service_->gpu_resources().quarantined_slots, 1U);
  // It survives a restart (persisted) until an administrator lifts it.
  restart();
  EXPECT_TRUE(service_->is_quarantined(vf));
  service_->unquarantine(vf);
  EXPECT_FALSE(service_->is_quarantined(vf));
  EXPECT_EQ(error_code_of([&] { service_->unquarantine(vf); }), Errc::NotFound);
}

TEST_F(VendorServiceTest, ASuccessClearsEarlierFailures) {
  service_->create_instance("vm1", {{}, "L40S-1Q", ""}, 0);
  service_->report_guest_init("vm1", false);
  EXPECT_EQ(files_in("vf-health"), 1U);
  service_->report_guest_init("vm1", true);
  EXPECT_EQ(files_in("vf-health"), 0U);
  EXPECT_EQ(error_code_of([&] { service_->report_guest_init("nope", true); }), Errc::NotFound);
}

TEST_F(VendorServiceTest, ConfigureSriovChangesTheCountThroughZeroAndRecordsIt) {
  auto r = service_->configure_sriov(kPf0Addr, 4);
  EXPECT_EQ(r.num_vfs, 4U);
  EXPECT_EQ(r.vfs.size(), 4U);
  EXPECT_TRUE(r.drivers_autoprobe);
  const auto writes = host_.writes();
  const std::string path = std::string("sys/bus/pci/devices/") + kPf0Addr + "/sriov_numvfs=";
  EXPECT_NE(std::find(writes.begin(), writes.end(), path + "0"), writes.end());
  EXPECT_NE(std::find(writes.begin(), writes.end(), path + "4"), writes.end());
  EXPECT_EQ(store_->sriov().at(kPf0Addr).num_vfs, 4U);
  EXPECT_TRUE(service_->vendor_vgpu().is_vendor_vf(vf_address(kPf0Addr, 3)));
  EXPECT_EQ(error_code_of([&] { service_->configure_sriov(kPf0Addr, 17); }), Errc::InvalidArgument);
  EXPECT_EQ(error_code_of([&] { service_->configure_sriov(vf_address(kPf0Addr, 0), 1); }), Errc::InvalidArgument);
  service_->configure_sriov(kPf0Addr, 0);
  EXPECT_TRUE(store_->sriov().empty());
}

TEST_F(VendorServiceTest, ConfigureSriovRefusesWhileAVfHasAVgpu) {
  const auto &a = service_->create_instance("vm1", {{}, "L40S-1Q", ""}, 0);
  std::string message;
  EXPECT_EQ(error_code_of([&] { service_->configure_sriov(kPf0Addr, 2); }, &message), Errc::InUse);
  EXPECT_NE(message.find(a.vgpu_vf), std::string::npos) << message;
  EXPECT_EQ(service_->pci().find(kPf0Addr)->sriov_numvfs, 8U);
}

TEST_F(VendorServiceTest, VendorVfsAreNeverBoundToVfioPci) {
  const auto vf = vf_address(kPf0Addr, 0);
  EXPECT_EQ(error_code_of([&] { service_->register_device("vf", vf); }), Errc::InvalidArgument);
  EXPECT_TRUE(overrides_written().empty());
}

TEST_F(ServiceTest, MdevPlacementPrefersTheLeastLoadedGpu) {
  build(make_vgpu_host);
  const auto &a = service_->create_instance("vm1", {{}, "L40S-4Q", ""}, 0);
  const auto &b = service_->create_instance("vm2", {{}, "nvidia-1157", ""}, 0);
  EXPECT_EQ(a.mdev_parent, vf_address(kPf0Addr, 0));
  EXPECT_EQ(b.mdev_parent, vf_address(kPf1Addr, 0)) << "the second GPU has no framebuffer in use";
  EXPECT_EQ(b.gpu_profile, "NVIDIA L40S-4Q");
}

// ---------------------------------------------------------------------------------------------------- reboot

// A host that reboots: a fresh fixture tree (the kernel forgot every binding, mdev, VF and type) with a new boot
// id, over the same state directory.
class RestoreTest : public ::testing::Test {
protected:
  void TearDown() override { service_.reset(); }
  void boot(const std::function<void(FakeHost &)> &canned, const std::string &boot_id) {
    service_.reset();
    sysfs_.reset();
    host_ = std::make_unique<FakeHost>();
    canned(*host_);
    if (!boot_id.empty())
      host_->write_file("proc/sys/kernel/random/boot_id", boot_id + "\n");
    sysfs_ = std::make_unique<Sysfs>(host_->root());
    sysfs_->set_write_hook(host_->kernel());
    store_ = std::make_unique<Store>(state_.string());
    store_->load();
    ServiceOptions options{300ms};
    options.restore_wait = 200ms;
    service_ = std::make_unique<Service>(*sysfs_, *store_, *names_, nullptr, &events_, options);
  }
  const InstanceRecord &inst(const std::string &name) { return service_->get_instance(name); }
  std::size_t files_in_vgpus() {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto &e : fs::directory_iterator(state_ / "vgpus"))
      ++n;
    return n;
  }

  static constexpr const char *kBootA = "11111111-2222-3333-4444-555555555555";
  static constexpr const char *kBootB = "66666666-7777-8888-9999-000000000000";
  TempDir state_dir_{"hostdev-state"};
  fs::path state_ = state_dir_.path();
  std::unique_ptr<PciNames> names_ = make_no_names();
  std::unique_ptr<FakeHost> host_;
  std::unique_ptr<Sysfs> sysfs_;
  std::unique_ptr<Store> store_;
  RecordingEvents events_;
  std::unique_ptr<Service> service_;
};

TEST_F(RestoreTest, AfterARebootEverythingComesBackUnderTheSameNames) {
  boot(make_vgpu_host, kBootA);
  EXPECT_FALSE(service_->start_up().new_boot) << "the first start records the boot id";
  service_->register_device("nic", kPf1Addr); // stands for any device: the L40S PF on vfio-pci
  const auto uuid = service_->create_instance("vm1", {{"nic"}, "L40S-4Q", ""}, 0).mdev_uuid;
  const auto parent = inst("vm1").mdev_parent;
  service_->create_instance("tmp", {{}, "L40S-1Q", "", false}, 0);
  EXPECT_EQ(service_->pci().driver_of(kPf1Addr), "vfio-pci");

  boot(make_vgpu_host, kBootB);
  EXPECT_EQ(service_->pci().driver_of(kPf1Addr), "nvidia") << "a fresh boot";
  EXPECT_FALSE(service_->mdevs().find(uuid));
  const auto report = service_->start_up();
  EXPECT_TRUE(report.new_boot);
  EXPECT_EQ(report.active, 1U);
  EXPECT_EQ(report.dropped, 1U) << "the non-persistent instance ends with its boot";
  EXPECT_EQ(service_->pci().driver_of(kPf1Addr), "vfio-pci");
  auto mdev = service_->mdevs().find(uuid);
  ASSERT_TRUE(mdev) << "the same UUID";
  EXPECT_EQ(mdev->parent, parent);
  EXPECT_EQ(mdev->type_id, "nvidia-1157");
  EXPECT_EQ(inst("vm1").state, "active");
  EXPECT_EQ(error_code_of([&] { service_->get_instance("tmp"); }), Errc::NotFound);
  EXPECT_EQ(*store_->boot_id(), kBootB);

  // A restart within the same boot reconciles and restores nothing.
  boot(make_vgpu_host, kBootB);
  EXPECT_FALSE(service_->start_up().new_boot);
}

TEST_F(RestoreTest, AMissingOrDifferentDeviceDegradesOnlyItsInstance) {
  boot(make_passthrough_host, kBootA);
  service_->start_up();
  service_->register_device("nic", kNicAddr);
  service_->register_device("edu", kBareAddr);
  service_->create_instance("vm-nic", {{"nic"}, "", ""}, 0);
  service_->create_instance("vm-edu", {{"edu"}, "", ""}, 0);

  // The next boot: the NIC's slot holds another card, the edu device is gone.
  boot(
      [](FakeHost &h) {
        make_passthrough_host(h);
        h.remove("sys/bus/pci/devices/" + std::string(kBareAddr));
        h.write_file("sys/devices/pci0000:00/" + std::string(kNicAddr) + "/device", "0x10d3\n");
      },
      kBootB);
  const auto report = service_->start_up();
  EXPECT_EQ(report.degraded, 2U);
  EXPECT_EQ(inst("vm-nic").state, "degraded");
  EXPECT_NE(inst("vm-nic").state_reason.find("is now 8086:10d3"), std::string::npos) << inst("vm-nic").state_reason;
  EXPECT_EQ(service_->pci().driver_of(kNicAddr), "igb") << "never bound onto the wrong card";
  EXPECT_NE(inst("vm-edu").state_reason.find("is missing"), std::string::npos) << inst("vm-edu").state_reason;
  EXPECT_TRUE(events_.saw("instance_state_changed"));
  // Nothing is dropped silently: the instances stay, can be retried or deleted.
  EXPECT_EQ(service_->restore_instance("vm-edu").state, "degraded");
  service_->delete_instance("vm-edu");
}

TEST_F(RestoreTest, AParentThatNeverAppearsDegradesWithAReason) {
  boot(make_vgpu_host, kBootA);
  service_->start_up();
  service_->create_instance("vm1", {{}, "L40S-4Q", ""}, 0);
  const auto parent = inst("vm1").mdev_parent;
  boot([](FakeHost &h) { make_passthrough_host(h); }, kBootB); // no mdev parents: the driver did not load
  service_->start_up();
  EXPECT_EQ(inst("vm1").state, "degraded");
  EXPECT_NE(inst("vm1").state_reason.find(parent + " is not there"), std::string::npos) << inst("vm1").state_reason;
}

TEST_F(RestoreTest, VendorTypesAndVfCountsComeBack) {
  boot(make_vendor_vgpu_host, kBootA);
  service_->start_up();
  service_->configure_sriov(kPf1Addr, 4);
  const auto &a = service_->create_instance("vm1", {{}, "L40S-4Q", ""}, 0);
  const auto vf = a.vgpu_vf;
  const auto uuid = a.uuid;
  boot(make_vendor_vgpu_host, kBootB); // 8 VFs per PF again, no types
  EXPECT_EQ(service_->pci().find(kPf1Addr)->sriov_numvfs, 8U);
  const auto report = service_->start_up();
  EXPECT_EQ(report.active, 1U);
  EXPECT_EQ(service_->pci().find(kPf1Addr)->sriov_numvfs, 4U) << "the VF count hostdev set";
  EXPECT_EQ(service_->vendor_vgpu().current_type(vf), 1150U) << "the type on the same VF";
  EXPECT_EQ(inst("vm1").uuid, uuid);
  EXPECT_EQ(files_in_vgpus(), 1U);
}

TEST_F(RestoreTest, NoBootIdMeansNoRestore) {
  boot(make_vgpu_host, kBootA);
  service_->start_up();
  service_->create_instance("vm1", {{}, "L40S-4Q", ""}, 0);
  boot(make_vgpu_host, ""); // the file is missing
  const auto report = service_->start_up();
  EXPECT_FALSE(report.new_boot);
  ASSERT_FALSE(report.notes.empty());
  EXPECT_NE(report.notes[0].find("boot id"), std::string::npos);
  EXPECT_EQ(*store_->boot_id(), kBootA) << "kept for the next start";
}

TEST_F(VendorServiceTest, AProfileNoGpuHasRoomForIsNoCapacityNotUnknown) {
  // One 1Q on each GPU: a 48Q fits nowhere now, and no VF lists it any more.
  service_->create_instance("vm-a", {{}, "L40S-1Q", ""}, 0);
  service_->create_instance("vm-b", {{}, "L40S-1Q", ""}, 0);
  EXPECT_NE(service_->vendor_vgpu().find(vf_address(kPf1Addr, 0))->gpu,
            service_->vendor_vgpu().find(vf_address(kPf0Addr, 0))->gpu);
  // The daemon resolves the profile against the resources before it queues the work: they know it.
  const auto res = service_->gpu_resources();
  EXPECT_NO_THROW(resolve_profile(res.profiles, "L40S-48Q"));
  EXPECT_EQ(error_code_of([&] { service_->create_instance("vm-c", {{}, "L40S-48Q", ""}, 0); }), Errc::NoCapacity);
}

TEST_F(RestoreTest, AnInstanceANewerHostdevWroteIsShownDegradedAndNeverTouched) {
  boot(make_vgpu_host, kBootA);
  service_->start_up();
  const auto &made = service_->create_instance("vm1", {{}, "L40S-4Q", ""}, 0);
  const auto id = made.id, uuid = made.mdev_uuid;
  // A newer hostdev rewrote the file in a later format (then the administrator went back to this version).
  const auto file = state_ / "instances" / (id + ".json");
  const std::string newer = R"({"version": 2, "id": ")" + id + R"(", "name": "vm1", "something_new": [1, 2]})" + "\n";
  {
    std::ofstream out(file);
    out << newer;
  }
  boot(make_vgpu_host, kBootB);
  const auto report = service_->start_up();
  EXPECT_EQ(report.degraded, 1U);
  EXPECT_EQ(inst("vm1").state, "degraded");
  EXPECT_NE(inst("vm1").state_reason.find("newer hostdev (format 2"), std::string::npos) << inst("vm1").state_reason;
  EXPECT_TRUE(store_->mdevs().count(uuid)) << "what is recorded for it is kept";
  EXPECT_EQ(error_code_of([&] { service_->delete_instance("vm1"); }), Errc::InvalidArgument);
  EXPECT_EQ(error_code_of([&] { service_->restore_instance("vm1"); }), Errc::InvalidArgument);
  std::ifstream in(file);
  std::stringstream buf;
  buf << in.rdbuf();
  EXPECT_EQ(buf.str(), newer) << "the file is left as the newer version wrote it";
  EXPECT_EQ(fs::exists(state_ / "corrupt"), false);
}

// ---------------------------------------------------------------------------------------------------- VFIO access

TEST_F(ServiceTest, OpenVfioGrantsTheOwnerTheNodesUntilTheInstanceGoes) {
  build(make_vgpu_host);
  service_->register_device("nic", kPf1Addr);
  const auto &made = service_->create_instance("vm1", {{"nic"}, "L40S-4Q", ""}, 4712);
  const auto mdev = service_->mdevs().find(made.mdev_uuid);
  ASSERT_TRUE(mdev && mdev->iommu_group);
  const auto access = service_->open_vfio("vm1", 4712);
  EXPECT_EQ(access.mode, "acl");
  const std::vector<std::string> want = {"/dev/vfio/vfio", "/dev/vfio/11",
                                         "/dev/vfio/" + std::to_string(*mdev->iommu_group)};
  EXPECT_EQ(access.nodes, want);
  for (const auto &node : want)
    EXPECT_TRUE(has_user_access(*sysfs_, node.substr(1), 4712)) << node;
  EXPECT_FALSE(has_user_access(*sysfs_, "dev/vfio/11", 4713));
  EXPECT_EQ(service_->get_instance("vm1").granted_nodes, want) << "recorded, to be revoked";
  // Another uid while the first has it: refused.
  EXPECT_EQ(error_code_of([&] { service_->open_vfio("vm1", 4713); }), Errc::InUse);
  // Held by a process: refused (the owner's own VMM opens them after this call, not before).
  host_.open_fd(555, "qemu-system-x86", "/dev/vfio/11");
  EXPECT_EQ(error_code_of([&] { service_->open_vfio("vm1", 4712); }), Errc::InUse);
  host_.remove("proc/555");
  service_->delete_instance("vm1");
  EXPECT_FALSE(has_user_access(*sysfs_, "dev/vfio/vfio", 4712)) << "revoked with the instance";
  EXPECT_EQ(error_code_of([&] { service_->open_vfio("vm1", 4712); }), Errc::NotFound);
}

namespace {
dev_t rdev_of(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 ? st.st_rdev : 0;
}
std::size_t open_fds() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto &e : fs::directory_iterator("/proc/self/fd"))
    ++n;
  return n;
}
} // namespace

TEST_F(ServiceTest, OpenVfioHandsOutIommufdAndOneUnboundCdevPerDeviceWhereTheKernelHasThem) {
  build(make_vgpu_host);
  host_.vfio_cdev(true);
  service_->register_device("nic", kPf1Addr);
  const auto &made = service_->create_instance("vm1", {{"nic"}, "L40S-4Q", ""}, 4712);
  const auto uuid = made.mdev_uuid;
  const auto fds_before = open_fds();
  {
    const auto access = service_->open_vfio("vm1", 4712);
    EXPECT_EQ(access.mode, "cdev");
    ASSERT_EQ(access.fds.size(), 3U);
    const std::vector<std::string> what = {"iommufd", kPf1Addr, uuid};
    EXPECT_EQ(access.objects, what);
    ASSERT_EQ(access.nodes.size(), 3U);
    EXPECT_EQ(access.nodes[0], "/dev/iommu");
    for (std::size_t i = 0; i < 3; ++i) {
      struct stat st {};
      ASSERT_EQ(::stat(host_.path(access.nodes[i].substr(1)).c_str(), &st), 0) << access.nodes[i];
      EXPECT_EQ(rdev_of(access.fds[i].get()), st.st_rdev) << "fd " << i << " is " << access.nodes[i];
    }
    EXPECT_EQ(rdev_of(access.fds[0].get()), makedev(1, 3));
    EXPECT_NE(rdev_of(access.fds[1].get()), rdev_of(access.fds[2].get())) << "two devices, two cdevs";
    const std::vector<std::string> args = {
        "-object", "iommufd,id=iommufd0,fd=3",
        "-device", "vfio-pci,iommufd=iommufd0,fd=4",
        "-device", "vfio-pci,iommufd=iommufd0,fd=5,sysfsdev=/sys/bus/mdev/devices/" + uuid};
    EXPECT_EQ(access.qemu_args, args) << "QEMU tells an mdev by its sysfsdev (no host IOMMU device for it), the fd "
                                         "is still what it opens";
    EXPECT_TRUE(service_->get_instance("vm1").granted_nodes.empty()) << "no ACL: the fds are the access";
    EXPECT_FALSE(has_user_access(*sysfs_, "dev/vfio/11", 4712));
  }
  EXPECT_EQ(open_fds(), fds_before) << "the fds are the caller's to close";
  // The ACL path on request, on the same kernel.
  EXPECT_EQ(service_->open_vfio("vm1", 4712, "acl").mode, "acl");
  EXPECT_TRUE(has_user_access(*sysfs_, "dev/vfio/11", 4712));
  EXPECT_EQ(error_code_of([&] { service_->open_vfio("vm1", 4712, "fds"); }), Errc::InvalidArgument);
  // A node that is not the device sysfs names (another device, or a file): refused, nothing left open.
  std::string nic_cdev;
  for (const auto &e : fs::directory_iterator(host_.path("sys/bus/pci/devices/" + std::string(kPf1Addr) + "/vfio-dev")))
    nic_cdev = e.path().filename().string();
  ASSERT_FALSE(nic_cdev.empty());
  host_.remove("dev/vfio/devices/" + nic_cdev);
  ASSERT_EQ(::mknod(host_.path("dev/vfio/devices/" + nic_cdev).c_str(), S_IFCHR | 0600, makedev(1, 3)), 0);
  EXPECT_EQ(error_code_of([&] { service_->open_vfio("vm1", 4712, "cdev"); }), Errc::KernelError);
  host_.remove("dev/vfio/devices/" + nic_cdev);
  host_.write_file("dev/vfio/devices/" + nic_cdev, "");
  EXPECT_EQ(error_code_of([&] { service_->open_vfio("vm1", 4712, "cdev"); }), Errc::KernelError);
  EXPECT_EQ(open_fds(), fds_before);
  // Held by a process through its cdev: refused.
  host_.remove("dev/vfio/devices/" + nic_cdev);
  host_.open_fd(555, "qemu-system-x86", "/dev/vfio/devices/" + nic_cdev);
  EXPECT_EQ(error_code_of([&] { service_->open_vfio("vm1", 4712, "cdev"); }), Errc::InUse);
  host_.remove("proc/555");
  // A kernel without them: mode cdev is refused, auto falls back to the ACLs.
  host_.vfio_cdev(false);
  EXPECT_EQ(error_code_of([&] { service_->open_vfio("vm1", 4712, "cdev"); }), Errc::VfioUnavailable);
  EXPECT_EQ(service_->open_vfio("vm1", 4712).mode, "acl");
}

// ---------------------------------------------------------------------------------------------------- memlock

TEST_F(ServiceTest, RaiseMemlockOnlyForTheLeasesOwnTreeWithinThePerUserMaximum) {
  build(make_vgpu_host);
  ServiceOptions options{300ms};
  options.memlock_max_per_user = 6ULL << 20; // within the hard limit: no CAP_SYS_RESOURCE needed
  service_ = std::make_unique<Service>(*sysfs_, *store_, *names_, nullptr, &events_, options);
  const auto self = static_cast<std::uint32_t>(::getpid());
  const auto uid = static_cast<std::uint32_t>(::getuid());
  InstanceSpec leased{{}, "L40S-1Q", ""};
  leased.persistent = false;
  leased.lease_owner = ":1.7";
  leased.lease_pid = self;
  leased.lease_start = process_start_time(self);
  service_->create_instance("vm1", leased, uid);
  service_->create_instance("plain", {{}, "L40S-1Q", ""}, uid);
  const pid_t vmm = ::fork();
  if (vmm == 0) {
    ::pause();
    ::_exit(0);
  }
  const Fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, vmm, 0)));
  ASSERT_GE(pidfd.get(), 0);
  struct rlimit64 low {};
  ASSERT_EQ(::prlimit64(vmm, RLIMIT_MEMLOCK, nullptr, &low), 0);
  ASSERT_GE(low.rlim_max, 4ULL << 20) << "this test raises the soft limit to 4 MiB within the hard one";
  low.rlim_cur = 1ULL << 20;
  ASSERT_EQ(::prlimit64(vmm, RLIMIT_MEMLOCK, &low, nullptr), 0);
  auto code = [&](auto fn) { return error_code_of(fn); };
  EXPECT_EQ(code([&] { service_->raise_memlock("plain", pidfd.get(), 1ULL << 20, uid, ":1.7"); }),
            Errc::InvalidArgument)
      << "not leased";
  EXPECT_EQ(code([&] { service_->raise_memlock("vm1", pidfd.get(), 1ULL << 20, uid, ":1.8"); }), Errc::NotAuthorized)
      << "another connection";
  EXPECT_EQ(code([&] { service_->raise_memlock("vm1", pidfd.get(), 1ULL << 20, uid + 1, ":1.7"); }),
            Errc::NotAuthorized)
      << "another uid's process";
  const Fd init(static_cast<int>(::syscall(SYS_pidfd_open, 1, 0)));
  EXPECT_EQ(code([&] { service_->raise_memlock("vm1", init.get(), 1ULL << 20, uid, ":1.7"); }), Errc::NotAuthorized)
      << "outside the lease's tree";
  const Fd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  EXPECT_EQ(code([&] { service_->raise_memlock("vm1", null.get(), 1ULL << 20, uid, ":1.7"); }), Errc::InvalidArgument)
      << "not a pidfd";
  EXPECT_EQ(code([&] { service_->raise_memlock("vm1", pidfd.get(), 0, uid, ":1.7"); }), Errc::InvalidArgument);
  EXPECT_EQ(code([&] { service_->raise_memlock("vm1", pidfd.get(), 7ULL << 20, uid, ":1.7"); }), Errc::NoCapacity);
  EXPECT_EQ(service_->get_instance("vm1").memlock_bytes, 0U) << "nothing recorded for a refusal";

  EXPECT_EQ(service_->raise_memlock("vm1", pidfd.get(), 4ULL << 20, uid, ":1.7"), 4ULL << 20);
  struct rlimit64 now {};
  ASSERT_EQ(::prlimit64(vmm, RLIMIT_MEMLOCK, nullptr, &now), 0);
  EXPECT_EQ(now.rlim_cur, 4ULL << 20);
  EXPECT_EQ(now.rlim_max, low.rlim_max) << "the hard limit was high enough";
  EXPECT_EQ(service_->get_instance("vm1").memlock_bytes, 4ULL << 20) << "counted against the user";
  EXPECT_EQ(service_->get_instance("vm1").memlock_pid, static_cast<std::uint32_t>(vmm));
  // A second lease of the same user: what is left of the maximum.
  leased.lease_owner = ":1.9";
  service_->create_instance("vm2", leased, uid);
  EXPECT_EQ(code([&] { service_->raise_memlock("vm2", pidfd.get(), 3ULL << 20, uid, ":1.9"); }), Errc::NoCapacity);
  // Asking again for the same process with less: the most it was given still counts (a limit is never lowered).
  EXPECT_GE(service_->raise_memlock("vm1", pidfd.get(), 1ULL << 20, uid, ":1.7"), 4ULL << 20);
  EXPECT_EQ(service_->get_instance("vm1").memlock_bytes, 4ULL << 20);
  // Another process of the tree for vm1 while the first lives: refused.
  const pid_t second = ::fork();
  if (second == 0) {
    ::pause();
    ::_exit(0);
  }
  const Fd second_fd(static_cast<int>(::syscall(SYS_pidfd_open, second, 0)));
  EXPECT_EQ(code([&] { service_->raise_memlock("vm1", second_fd.get(), 1ULL << 20, uid, ":1.7"); }), Errc::InUse);
  ::kill(second, SIGKILL);
  ::waitpid(second, nullptr, 0);
  ::kill(vmm, SIGKILL);
  ::waitpid(vmm, nullptr, 0);
  EXPECT_EQ(code([&] { service_->raise_memlock("vm1", pidfd.get(), 1ULL << 20, uid, ":1.7"); }), Errc::InvalidArgument)
      << "the process has ended";
  service_->delete_instance("vm1");
  const pid_t vmm2 = ::fork();
  if (vmm2 == 0) {
    ::pause();
    ::_exit(0);
  }
  const Fd pidfd2(static_cast<int>(::syscall(SYS_pidfd_open, vmm2, 0)));
  EXPECT_GE(service_->raise_memlock("vm2", pidfd2.get(), 3ULL << 20, uid, ":1.9"), 3ULL << 20)
      << "vm1's grant went with it";
  ::kill(vmm2, SIGKILL);
  ::waitpid(vmm2, nullptr, 0);
}
