// The live model's update rules: for each kind of uevent (and each kind of hostdev's own write) the model re-reads
// only what the change names and implies, and ends equal to a fresh reading of the whole tree.
#include "core/model.hpp"

#include "core/host_names.hpp"
#include "core/validate.hpp"
#include "fixtures/fake_host.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

using namespace hostdev;
using namespace hostdev::core;

namespace {

constexpr const char *kUuid = "4b20d080-1b54-4048-85b3-a6a62d165c01";

Uevent event(const std::string &action, const std::string &devpath, const std::string &subsystem) {
  Uevent ev;
  ev.action = action;
  ev.devpath = devpath;
  ev.subsystem = subsystem;
  return ev;
}

Uevent pci_event(const std::string &action, const std::string &address) {
  return event(action, "/devices/pci0000:00/" + address, "pci");
}

class ModelTest : public ::testing::Test {
protected:
  void start(void (*make)(test::FakeHost &)) {
    make(host);
    sysfs = std::make_unique<Sysfs>(host.root());
    sysfs->set_write_hook(host.kernel());
    names = make_no_names();
    pci = std::make_unique<PciBus>(*sysfs, *names);
    mdev = std::make_unique<MdevBus>(*sysfs);
    vendor = std::make_unique<VendorVgpu>(*sysfs);
    model = std::make_unique<HostModel>(*sysfs, *pci, *mdev, *vendor);
    model->update(ModelChange{}); // a model never read reads everything
    ASSERT_TRUE(model->scanned());
    ASSERT_EQ(model->counters().rescans, 1u);
  }

  // The model equals a fresh reading of the whole tree.
  void expect_true_to_the_tree() {
    MdevBus fresh_mdev(*sysfs);
    HostModel fresh(*sysfs, *pci, fresh_mdev, *vendor);
    fresh.rescan();
    EXPECT_EQ(model->functions(), fresh.functions());
    EXPECT_EQ(model->parents(), fresh.parents());
    EXPECT_EQ(model->mdevs(), fresh.mdevs());
    EXPECT_EQ(model->vendor_vfs(), fresh.vendor_vfs());
    EXPECT_EQ(model->facts(), fresh.facts());
  }

  // Applies what the writes since the last call say (as the daemon does after a mutation).
  void apply_writes() {
    ModelChange change;
    for (const auto &[path, value] : sysfs->take_written().writes)
      change.merge(change_of_write(path, value));
    model->update(change);
  }

  const PciFunction *function(const std::string &address) const {
    for (const auto &fn : model->functions())
      if (fn.address == address)
        return &fn;
    return nullptr;
  }

  test::FakeHost host;
  std::unique_ptr<Sysfs> sysfs;
  std::unique_ptr<PciNames> names;
  std::unique_ptr<PciBus> pci;
  std::unique_ptr<MdevBus> mdev;
  std::unique_ptr<VendorVgpu> vendor;
  std::unique_ptr<HostModel> model;
};

} // namespace

TEST(ModelChangeOf, WhatEachUeventNames) {
  auto bind = change_of(pci_event("bind", "0000:02:00.0"));
  EXPECT_EQ(bind.functions, std::set<std::string>{"0000:02:00.0"});
  EXPECT_FALSE(bind.everything);
  for (const char *action : {"add", "remove", "unbind", "change", "online"})
    EXPECT_EQ(change_of(pci_event(action, "0000:02:00.0")).functions, std::set<std::string>{"0000:02:00.0"}) << action;
  auto add = change_of(event("add", std::string("/devices/pci0000:00/0000:a2:00.4/") + kUuid, "mdev"));
  EXPECT_EQ(add.mdevs, std::set<std::string>{kUuid});
  EXPECT_EQ(add.parents, std::set<std::string>{"0000:a2:00.4"});
  auto mtty = change_of(event("remove", std::string("/devices/virtual/mtty/mtty/") + kUuid, "mdev"));
  EXPECT_EQ(mtty.parents, std::set<std::string>{"mtty"});
  EXPECT_TRUE(change_of(pci_event("move", "0000:02:00.0")).everything) << "the old name is not in the event";
  EXPECT_TRUE(change_of(event("add", "/devices/virtual/tty/tty9", "tty")).empty());
  EXPECT_TRUE(change_of(event("add", "/devices/virtual/vfio/12", "vfio")).empty());
  auto module = change_of(event("add", "/module/vfio_pci", "module"));
  EXPECT_TRUE(module.host && module.parent_list && !module.everything);
  EXPECT_TRUE(change_of(event("add", "/devices/pci0000:00/not-an-address", "pci")).everything);
}

TEST(ModelChangeOf, WhatEachWriteNames) {
  EXPECT_EQ(change_of_write("sys/bus/pci/drivers/vfio-pci/bind", "0000:02:00.0\n").functions,
            std::set<std::string>{"0000:02:00.0"});
  EXPECT_EQ(change_of_write("sys/bus/pci/drivers/igb/unbind", "0000:02:00.0").functions,
            std::set<std::string>{"0000:02:00.0"});
  EXPECT_EQ(change_of_write("sys/bus/pci/drivers_probe", "0000:02:00.0").functions,
            std::set<std::string>{"0000:02:00.0"});
  EXPECT_EQ(change_of_write("sys/bus/pci/devices/0000:a2:00.0/sriov_numvfs", "4").functions,
            std::set<std::string>{"0000:a2:00.0"});
  EXPECT_EQ(change_of_write("sys/bus/pci/devices/0000:a2:00.4/nvidia/current_vgpu_type", "1150").functions,
            std::set<std::string>{"0000:a2:00.4"});
  auto create = change_of_write("sys/class/mdev_bus/0000:a2:00.4/mdev_supported_types/nvidia-1155/create", kUuid);
  EXPECT_EQ(create.mdevs, std::set<std::string>{kUuid});
  EXPECT_EQ(create.parents, std::set<std::string>{"0000:a2:00.4"});
  EXPECT_EQ(change_of_write(std::string("sys/bus/mdev/devices/") + kUuid + "/remove", "1").mdevs,
            std::set<std::string>{kUuid});
  EXPECT_TRUE(change_of_write("sys/bus/pci/rescan", "1").everything);
  EXPECT_TRUE(change_of_write("sys/bus/pci/drivers/vfio-pci/new_id", "10de 26b9").everything);
  EXPECT_TRUE(change_of_write("sys/bus/pci/drivers/vfio-pci/bind", "garbage").everything);
}

TEST_F(ModelTest, ViewsShareOneFunctionListPerUpdateAndKeepTheirOwn) {
  start(test::make_passthrough_host);
  const auto before = model->shared_functions();
  ASSERT_TRUE(before);
  EXPECT_EQ(model->shared_functions(), before) << "no update: the same list, not a copy";
  EXPECT_EQ(&model->functions(), before.get());
  const auto link = std::string("sys/bus/pci/devices/") + test::kNicAddr + "/driver";
  host.remove(link);
  model->update(change_of(pci_event("unbind", test::kNicAddr)));
  const auto after = model->shared_functions();
  EXPECT_NE(after, before) << "an update makes a new list";
  const auto in = [](const std::vector<PciFunction> &functions) { return find_function(functions, test::kNicAddr); };
  ASSERT_TRUE(in(*before) && in(*after));
  EXPECT_EQ(in(*before)->driver, "igb") << "a view taken before the update still holds what it was given";
  EXPECT_EQ(in(*after)->driver, std::nullopt);
}

TEST_F(ModelTest, AnUnbindAndABindByHandReadOneFunction) {
  start(test::make_passthrough_host);
  const auto reads = model->counters().function_reads;
  const auto link = std::string("sys/bus/pci/devices/") + test::kNicAddr + "/driver";
  const auto target = sysfs->readlink(link);
  ASSERT_TRUE(target);
  host.remove(link);
  EXPECT_EQ(function(test::kNicAddr)->driver, "igb") << "nothing said yet: the model is what it read";
  model->update(change_of(pci_event("unbind", test::kNicAddr)));
  EXPECT_EQ(function(test::kNicAddr)->driver, std::nullopt);
  EXPECT_EQ(model->counters().function_reads, reads + 1);
  EXPECT_EQ(model->counters().rescans, 1u);
  expect_true_to_the_tree();
  host.symlink(link, *target);
  model->update(change_of(pci_event("bind", test::kNicAddr)));
  EXPECT_EQ(function(test::kNicAddr)->driver, "igb");
  expect_true_to_the_tree();
}

// The daemon takes a new snapshot only when the model's revision (or the store's) moved.
TEST_F(ModelTest, OnlyAReadingMovesTheRevision) {
  start(test::make_passthrough_host);
  auto rev = model->revision();
  model->update(ModelChange{});
  EXPECT_EQ(model->revision(), rev) << "an empty change reads nothing";
  model->update(change_of(pci_event("change", test::kNicAddr)));
  EXPECT_GT(model->revision(), rev);
  rev = model->revision();
  model->update(ModelChange::all());
  EXPECT_GT(model->revision(), rev);
}

TEST_F(ModelTest, AHotAddedFunctionJoinsItsGroupAndARemovedOneLeavesIt) {
  start(test::make_passthrough_host);
  auto fn = test::make_fn("0000:02:00.1", 0x8086, 0x1533, 0x020000, "igb", 2); // the NIC's group
  host.add_function(fn);
  model->update(change_of(pci_event("add", "0000:02:00.1")));
  ASSERT_NE(function("0000:02:00.1"), nullptr);
  EXPECT_EQ(function(test::kNicAddr)->group_members, (std::vector<std::string>{test::kNicAddr, "0000:02:00.1"}))
      << "its group partner's members, derived without listing the group";
  expect_true_to_the_tree();
  host.remove("sys/bus/pci/devices/0000:02:00.1");
  host.remove("sys/devices/pci0000:00/0000:02:00.1");
  host.remove("sys/kernel/iommu_groups/2/devices/0000:02:00.1");
  model->update(change_of(pci_event("remove", "0000:02:00.1")));
  EXPECT_EQ(function("0000:02:00.1"), nullptr);
  EXPECT_EQ(function(test::kNicAddr)->group_members, std::vector<std::string>{test::kNicAddr});
  expect_true_to_the_tree();
}

TEST_F(ModelTest, VfsMadeAndRemovedThroughTheirPfAreReadAndDropped) {
  start(test::make_vgpu_host);
  const auto pf = std::string(test::kPf0Addr);
  const auto vf0 = test::vf_address(pf, 0);
  ASSERT_NE(function(vf0), nullptr);
  ASSERT_EQ(model->parents().size(), 64u);
  sysfs->write("sys/bus/pci/devices/" + pf + "/sriov_numvfs", "0");
  apply_writes();
  EXPECT_EQ(function(vf0), nullptr) << "a VF the PF lost";
  EXPECT_EQ(function(pf)->sriov_numvfs, 0u);
  EXPECT_EQ(model->parents().size(), 32u) << "the lost VFs' mdev parents go with them";
  EXPECT_EQ(model->counters().rescans, 1u);
  expect_true_to_the_tree();
  const auto reads = model->counters().function_reads;
  sysfs->write("sys/bus/pci/devices/" + pf + "/sriov_numvfs", "4");
  apply_writes();
  EXPECT_EQ(model->counters().function_reads, reads + 5) << "the PF and its four new VFs, nothing else";
  EXPECT_NE(function(vf0), nullptr);
  expect_true_to_the_tree();
}

TEST_F(ModelTest, AnMdevMadeOrRemovedOutsideHostdevMovesItsParentsAvailability) {
  start(test::make_vgpu_host);
  const auto vf0 = test::vf_address(test::kPf0Addr, 0);
  mdev->create(vf0, "nvidia-1157", kUuid); // as mdevctl would
  (void)sysfs->take_written();             // not hostdev's write: only the kernel's word counts
  const auto reads = model->counters().parent_reads;
  model->update(change_of(event("add", "/devices/pci0000:00/" + vf0 + "/" + kUuid, "mdev")));
  ASSERT_EQ(model->mdevs().size(), 1u);
  EXPECT_EQ(model->mdevs()[0].parent, vf0);
  EXPECT_EQ(model->mdevs()[0].profile_name, "NVIDIA L40S-4Q");
  EXPECT_LE(model->counters().parent_reads, reads + 32) << "the parent and its GPU's other VFs, nothing more";
  expect_true_to_the_tree();
  host.remove(std::string("sys/bus/mdev/devices/") + kUuid); // the kernel's side of a remove, by hand
  const auto parents = model->parents();
  for (const auto &t : parents[0].types)
    host.write_file("sys/class/mdev_bus/" + vf0 + "/mdev_supported_types/" + t.id + "/available_instances", "1\n");
  model->update(change_of(event("remove", "/devices/pci0000:00/" + vf0 + "/" + kUuid, "mdev")));
  EXPECT_TRUE(model->mdevs().empty());
  expect_true_to_the_tree();
}

TEST_F(ModelTest, HostdevsOwnMdevWritesNeedNoUevent) {
  start(test::make_vgpu_host);
  const auto vf0 = test::vf_address(test::kPf0Addr, 0);
  mdev->create(vf0, "nvidia-1155", kUuid);
  apply_writes();
  ASSERT_EQ(model->mdevs().size(), 1u);
  expect_true_to_the_tree();
  mdev->remove(kUuid);
  apply_writes();
  EXPECT_TRUE(model->mdevs().empty());
  expect_true_to_the_tree();
  EXPECT_EQ(model->counters().rescans, 1u);
}

TEST_F(ModelTest, AVendorVgpuChangesWhatItsSiblingsOffer) {
  start(test::make_vendor_vgpu_host);
  const auto vf0 = test::vf_address(test::kPf0Addr, 0);
  ASSERT_FALSE(model->vendor_vfs().empty());
  vendor->assign(vf0, 1155, Sysfs::kDefaultDeadline); // 48Q: the whole GPU
  apply_writes();
  expect_true_to_the_tree();
  for (const auto &vf : model->vendor_vfs()) {
    if (vf.gpu == test::kPf0Addr && vf.address != vf0) {
      EXPECT_TRUE(vf.creatable.empty()) << vf.address << ": its GPU is full";
    }
  }
  vendor->release(vf0, Sysfs::kDefaultDeadline);
  apply_writes();
  expect_true_to_the_tree();
}

TEST_F(ModelTest, ADriverBindingByHandThroughTheKernelAndAModuleLoad) {
  start(test::make_passthrough_host);
  sysfs->write(std::string("sys/bus/pci/devices/") + test::kNicAddr + "/driver_override", "vfio-pci");
  sysfs->write(std::string("sys/bus/pci/drivers/igb/unbind"), test::kNicAddr);
  sysfs->write("sys/bus/pci/drivers_probe", test::kNicAddr);
  (void)sysfs->take_written();
  model->update(change_of(pci_event("unbind", test::kNicAddr)));
  model->update(change_of(pci_event("bind", test::kNicAddr)));
  EXPECT_EQ(function(test::kNicAddr)->driver, "vfio-pci");
  expect_true_to_the_tree();
  host.remove("sys/module/vfio_iommu_type1");
  model->update(change_of(event("remove", "/module/vfio_iommu_type1", "module")));
  EXPECT_FALSE(model->facts().vfio_iommu_type1_loaded);
  expect_true_to_the_tree();
}

TEST_F(ModelTest, AnOverrunOrAMoveReadsEverythingAgain) {
  start(test::make_passthrough_host);
  host.remove(std::string("sys/bus/pci/devices/") + test::kNicAddr + "/driver"); // missed: its uevent was lost
  model->update(ModelChange{});
  EXPECT_EQ(function(test::kNicAddr)->driver, "igb") << "an empty change reads nothing";
  model->update(ModelChange::all()); // what the monitor asks for after ENOBUFS
  EXPECT_EQ(model->counters().rescans, 2u);
  EXPECT_EQ(function(test::kNicAddr)->driver, std::nullopt);
  expect_true_to_the_tree();
  model->update(change_of(pci_event("move", test::kNicAddr)));
  EXPECT_EQ(model->counters().rescans, 3u);
}

TEST_F(ModelTest, AWriteJournalThatOverflowedReadsEverything) {
  start(test::make_passthrough_host);
  for (std::size_t i = 0; i <= Sysfs::kWrittenKept; ++i)
    sysfs->write(std::string("sys/bus/pci/devices/") + test::kNicAddr + "/driver_override", "");
  auto written = sysfs->take_written();
  EXPECT_TRUE(written.overflowed);
  EXPECT_TRUE(sysfs->take_written().writes.empty()) << "taken once";
}
