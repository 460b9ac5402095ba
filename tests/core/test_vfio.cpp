#include "core/error.hpp"
#include "core/vfio.hpp"

#include "fixtures/fake_host.hpp"
#include "fixtures/test_util.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

using namespace hostdev::core;
using namespace hostdev::test;
using namespace std::chrono_literals;

namespace {

struct FakeUnits : UnitControl {
  bool present = true;
  bool active = true;
  bool stop_throws = false; // as systemd's API can, with a non-core exception
  std::vector<std::string> calls;
  bool exists(const std::string &) override { return present; }
  bool is_active(const std::string &) override { return present && active; }
  void stop(const std::string &unit) override {
    calls.push_back("stop " + unit);
    if (stop_throws)
      throw std::runtime_error("Connection timed out");
    active = false;
  }
  void start(const std::string &unit) override {
    calls.push_back("start " + unit);
    active = true;
  }
};

class VfioTest : public ::testing::Test {
protected:
  void build(void (*canned)(FakeHost &)) {
    canned(host_);
    sysfs_ = std::make_unique<Sysfs>(host_.root());
    sysfs_->set_write_hook(host_.kernel());
    bus_ = std::make_unique<PciBus>(*sysfs_, *names_);
    // Generous: a loaded 2-core machine (the lab VM under TCG, an ASan build) must not turn a write into a Timeout.
    vfio_ = std::make_unique<Vfio>(*sysfs_, *bus_, &units_, 1000ms);
  }
  bool has(const std::string &rel) { return std::filesystem::exists(host_.path(rel)); }

  FakeHost host_;
  std::unique_ptr<PciNames> names_ = make_no_names();
  std::unique_ptr<Sysfs> sysfs_;
  std::unique_ptr<PciBus> bus_;
  FakeUnits units_;
  std::unique_ptr<Vfio> vfio_;
};

} // namespace

TEST_F(VfioTest, BindsADeviceWithAHostDriverAndGivesItBack) {
  build(make_passthrough_host);
  EXPECT_EQ(vfio_->bind(kNicAddr), "igb");
  EXPECT_EQ(bus_->driver_of(kNicAddr), "vfio-pci");
  EXPECT_TRUE(has("dev/vfio/2"));
  const auto w = host_.writes();
  ASSERT_EQ(w.size(), 3u);
  EXPECT_EQ(w[0], "sys/bus/pci/devices/0000:02:00.0/driver_override=vfio-pci");
  EXPECT_EQ(w[1], "sys/bus/pci/drivers/igb/unbind=0000:02:00.0");
  EXPECT_EQ(w[2], "sys/bus/pci/drivers_probe=0000:02:00.0");

  EXPECT_EQ(vfio_->unbind(kNicAddr, std::string("igb")), "igb");
  EXPECT_EQ(bus_->driver_of(kNicAddr), "igb");
  EXPECT_EQ(bus_->find(kNicAddr)->driver_override, std::nullopt);
  EXPECT_FALSE(has("dev/vfio/2"));
  EXPECT_TRUE(units_.calls.empty()); // not an NVIDIA function
}

TEST_F(VfioTest, DriverlessDeviceNeedsNoUnbind) {
  build(make_passthrough_host);
  EXPECT_EQ(vfio_->bind(kBareAddr), std::nullopt);
  EXPECT_EQ(bus_->driver_of(kBareAddr), "vfio-pci");
  EXPECT_EQ(host_.writes().size(), 2u);
  EXPECT_EQ(vfio_->unbind(kBareAddr), std::nullopt);
  EXPECT_EQ(bus_->driver_of(kBareAddr), std::nullopt);
}

TEST_F(VfioTest, GroupConflictNamesTheOthersAndChangesNothing) {
  build(make_passthrough_host);
  std::string message;
  EXPECT_EQ(error_code_of([&] { vfio_->bind(kGpuAddr); }, &message), Errc::IommuGroupConflict);
  EXPECT_NE(message.find("0000:01:00.1 (snd_hda_intel)"), std::string::npos) << message;
  EXPECT_EQ(message.find(kBridgeAddr), std::string::npos) << "bridges never block: " << message;
  EXPECT_TRUE(host_.writes().empty());
  EXPECT_EQ(bus_->driver_of(kGpuAddr), "nvidia");
  EXPECT_TRUE(units_.calls.empty()) << "persistenced is left alone when nothing is attempted";

  auto check = vfio_->check_group(kGpuAddr);
  EXPECT_EQ(check.group, 1);
  EXPECT_EQ(check.members.size(), 3u);
  EXPECT_EQ(check.blockers, std::vector<std::string>{"0000:01:00.1 (snd_hda_intel)"});
}

TEST_F(VfioTest, CompanionsInOneOperationDoNotBlockEachOther) {
  build(make_passthrough_host);
  const std::vector<std::string> both{kGpuAddr, kAudioAddr};
  EXPECT_EQ(vfio_->bind(kGpuAddr, both), "nvidia");
  EXPECT_EQ(vfio_->bind(kAudioAddr, both), "snd_hda_intel");
  EXPECT_EQ(bus_->driver_of(kGpuAddr), "vfio-pci");
  EXPECT_EQ(bus_->driver_of(kAudioAddr), "vfio-pci");
  EXPECT_TRUE(vfio_->check_group(kGpuAddr).blockers.empty());
}

TEST_F(VfioTest, RefusesWithTheRightError) {
  build(make_passthrough_host);
  EXPECT_EQ(error_code_of([&] { vfio_->bind("0000:09:00.0"); }), Errc::DeviceNotFound);
  EXPECT_EQ(error_code_of([&] { vfio_->bind("../../etc"); }), Errc::InvalidPciAddress);
  EXPECT_EQ(error_code_of([&] { vfio_->unbind(kNicAddr); }), Errc::NotBound);
  vfio_->bind(kNicAddr);
  EXPECT_EQ(error_code_of([&] { vfio_->bind(kNicAddr); }), Errc::AlreadyBound);
  EXPECT_EQ(host_.writes().size(), 3u) << "refusals write nothing";
}

TEST_F(VfioTest, NoVfioDriverIsVfioUnavailable) {
  build([](FakeHost &h) {
    h.iommu(true).vfio(false).driver("igb");
    h.add_function(make_fn(kNicAddr, 0x8086, 0x1533, 0x020000, "igb", 2));
  });
  EXPECT_FALSE(vfio_->vfio_pci_available());
  EXPECT_EQ(error_code_of([&] { vfio_->bind(kNicAddr); }), Errc::VfioUnavailable);
  EXPECT_TRUE(host_.writes().empty());
}

TEST_F(VfioTest, NoIommuIsIommuUnavailable) {
  build(make_no_iommu_host);
  std::string message;
  EXPECT_EQ(error_code_of([&] { vfio_->bind(kGpuAddr); }, &message), Errc::IommuUnavailable);
  EXPECT_NE(message.find("intel_iommu=on"), std::string::npos);
  EXPECT_TRUE(host_.writes().empty());
}

TEST_F(VfioTest, AFailedBindIsUndone) {
  build(make_passthrough_host);
  host_.fail_writes("drivers/igb/unbind", EBUSY);
  std::string message;
  EXPECT_EQ(error_code_of([&] { vfio_->bind(kNicAddr); }, &message), Errc::KernelError);
  EXPECT_NE(message.find("busy"), std::string::npos) << message;
  EXPECT_EQ(bus_->driver_of(kNicAddr), "igb");
  EXPECT_EQ(bus_->find(kNicAddr)->driver_override, std::nullopt) << "the override is cleared again";
}

TEST_F(VfioTest, AProbeThatDoesNotLandOnVfioIsAKernelError) {
  build(make_passthrough_host);
  host_.fail_writes("drivers_probe", ENODEV);
  EXPECT_EQ(error_code_of([&] { vfio_->bind(kBareAddr); }), Errc::KernelError);
  EXPECT_NE(bus_->driver_of(kBareAddr), "vfio-pci");
}

TEST_F(VfioTest, AHangingUnbindTimesOutAndNamesTheHolders) {
  build(make_passthrough_host);
  host_.open_fd(4242, "qemu-system-x86", "/dev/vfio/2");
  host_.delay_writes("drivers/igb/unbind", 3000ms);
  std::string message;
  EXPECT_EQ(error_code_of([&] { vfio_->bind(kNicAddr); }, &message), Errc::Timeout);
  EXPECT_NE(message.find("1000 ms"), std::string::npos) << message;
  EXPECT_NE(message.find("4242 (qemu-system-x86)"), std::string::npos) << message;
}

TEST_F(VfioTest, UnbindRefusesWhileAVmHoldsTheGroup) {
  build(make_passthrough_host);
  vfio_->bind(kNicAddr);
  host_.open_fd(777, "qemu-system-x86", "/dev/vfio/2");
  std::string message;
  EXPECT_EQ(error_code_of([&] { vfio_->unbind(kNicAddr); }, &message), Errc::InUse);
  EXPECT_NE(message.find("777 (qemu-system-x86)"), std::string::npos) << message;
  EXPECT_EQ(bus_->driver_of(kNicAddr), "vfio-pci");
  EXPECT_FALSE(vfio_->holders_of(kNicAddr).empty()) << "group 2 is held";
  EXPECT_TRUE(vfio_->holders_of(kBareAddr).empty()) << "group 3 is not";
}

TEST_F(VfioTest, UnbindChecksTheHostDriverCameBack) {
  build(make_passthrough_host);
  vfio_->bind(kBareAddr);
  std::string message;
  EXPECT_EQ(error_code_of([&] { vfio_->unbind(kBareAddr, std::string("edu")); }, &message), Errc::KernelError);
  EXPECT_NE(message.find("Restore"), std::string::npos) << message;
  EXPECT_EQ(message.find("hostdevctl"), std::string::npos) << "the core states facts; advice is the CLI's: " << message;
}

TEST_F(VfioTest, NvidiaBindStopsAndRestartsPersistenced) {
  build(make_vgpu_host);
  EXPECT_EQ(vfio_->bind(kPf0Addr), "nvidia");
  EXPECT_EQ(units_.calls,
            (std::vector<std::string>{"stop nvidia-persistenced.service", "start nvidia-persistenced.service"}));
}

TEST_F(VfioTest, NvidiaBindRestartsPersistencedAlsoOnFailure) {
  build(make_vgpu_host);
  host_.fail_writes("drivers/nvidia/unbind", EIO);
  EXPECT_EQ(error_code_of([&] { vfio_->bind(kPf0Addr); }), Errc::KernelError);
  EXPECT_EQ(units_.calls,
            (std::vector<std::string>{"stop nvidia-persistenced.service", "start nvidia-persistenced.service"}));
}

TEST_F(VfioTest, NvidiaBindLeavesAnInactivePersistencedAlone) {
  build(make_vgpu_host);
  units_.active = false;
  vfio_->bind(kPf0Addr);
  EXPECT_TRUE(units_.calls.empty());
}

TEST_F(VfioTest, RestoreRecoversFromAnyState) {
  build(make_vgpu_host);
  vfio_->bind(kPf0Addr);
  units_.calls.clear();
  units_.active = false; // persistenced died meanwhile
  EXPECT_EQ(vfio_->restore(kPf0Addr), "nvidia");
  EXPECT_EQ(units_.calls, std::vector<std::string>{"start nvidia-persistenced.service"});
  // A device left with an override and no driver (a crash between the writes) also comes back.
  sysfs_->write("sys/bus/pci/devices/0000:a2:00.0/driver_override", "vfio-pci");
  sysfs_->write("sys/bus/pci/drivers/nvidia/unbind", kPf0Addr);
  EXPECT_EQ(bus_->driver_of(kPf0Addr), std::nullopt);
  EXPECT_EQ(vfio_->restore(kPf0Addr), "nvidia");
  EXPECT_EQ(bus_->find(kPf0Addr)->driver_override, std::nullopt);
}

TEST_F(VfioTest, HoldersMatchExactPathsAndPrefixes) {
  build(make_passthrough_host);
  host_.open_fd(100, "nvidia-smi", "/dev/nvidia0");
  host_.open_fd(200, "qemu", "/dev/vfio/7");
  host_.open_fd(300, "cat", "/dev/null");
  auto h = find_holders(*sysfs_, {"/dev/nvidia*"});
  ASSERT_EQ(h.size(), 1u);
  EXPECT_EQ(h[0].pid, 100);
  EXPECT_EQ(h[0].command, "nvidia-smi");
  EXPECT_EQ(find_holders(*sysfs_, {"/dev/vfio/7"}).size(), 1u);
  EXPECT_TRUE(find_holders(*sysfs_, {"/dev/vfio/70"}).empty());
  EXPECT_EQ(describe_holders(h), "100 (nvidia-smi) holding /dev/nvidia0");
}

TEST_F(VfioTest, AFailingPersistencedStopIsAKernelErrorAndItIsStartedAgain) {
  build(make_vgpu_host);
  units_.stop_throws = true;
  std::string message;
  EXPECT_EQ(error_code_of([&] { vfio_->bind(kPf0Addr); }, &message), Errc::KernelError);
  EXPECT_NE(message.find("nvidia-persistenced"), std::string::npos) << message;
  EXPECT_EQ(units_.calls,
            (std::vector<std::string>{"stop nvidia-persistenced.service", "start nvidia-persistenced.service"}));
  EXPECT_EQ(bus_->driver_of(kPf0Addr), "nvidia");
}

TEST_F(VfioTest, AHolderOfTheVfioDeviceCdevCountsToo) {
  build(make_passthrough_host);
  vfio_->bind(kNicAddr);
  // Newer kernels give each VFIO device a cdev, /dev/vfio/devices/vfioN, named under <device>/vfio-dev/.
  host_.write_file("sys/devices/pci0000:00/0000:02:00.0/vfio-dev/vfio0/dev", "511:0\n");
  host_.open_fd(2024, "qemu-system-x86", "/dev/vfio/devices/vfio0");
  std::string message;
  EXPECT_EQ(error_code_of([&] { vfio_->unbind(kNicAddr); }, &message), Errc::InUse);
  EXPECT_NE(message.find("/dev/vfio/devices/vfio0"), std::string::npos) << message;
  EXPECT_EQ(bus_->driver_of(kNicAddr), "vfio-pci");
}

TEST_F(VfioTest, AProcessWhoseOpenFilesCannotBeReadCountsAsAHolder) {
  build(make_passthrough_host);
  vfio_->bind(kNicAddr);
  // As root nothing in a plain tree is unreadable; a self-referencing link makes the listing fail (ELOOP) the way
  // an LSM denial would (EACCES): hostdev cannot tell, so it must assume a VM holds the device.
  host_.write_file("proc/4444/comm", "qemu-confined\n");
  host_.symlink("proc/4444/fd", "fd");
  auto holders = find_holders(*sysfs_, {"/dev/vfio/2"});
  ASSERT_EQ(holders.size(), 1u);
  EXPECT_EQ(holders[0].pid, 4444);
  EXPECT_NE(holders[0].path.find("unreadable"), std::string::npos) << holders[0].path;
  EXPECT_EQ(error_code_of([&] { vfio_->unbind(kNicAddr); }), Errc::InUse);
  EXPECT_TRUE(find_holders(*sysfs_, {}).empty()) << "no node asked for, nothing held";
}
