#include "core/records.hpp"

#include <gtest/gtest.h>

#include <vector>

using namespace hostdev::core;

namespace {

// A device record the API could have written.
DeviceRecord valid_device() {
  DeviceRecord d;
  d.id = "0123456789abcdef0123456789abcdef";
  d.name = "gpu0";
  d.type = "gpu";
  d.pci_address = "0000:a2:00.0";
  d.vendor_id = "10de";
  d.device_id = "26b9";
  return d;
}

} // namespace

TEST(Records, EveryKindRoundTrips) {
  DeviceRecord d = valid_device();
  d.iommu_group = 3;
  d.host_driver = "nvidia";
  const auto d2 = device_from_json(to_json(d));
  EXPECT_EQ(d2.name, "gpu0");
  EXPECT_EQ(d2.iommu_group, 3);
  EXPECT_EQ(d2.host_driver, "nvidia");

  InstanceRecord i;
  i.id = d.id;
  i.name = "vm";
  i.devices = {d.id};
  i.owner_uid = 1000;
  EXPECT_EQ(instance_from_json(to_json(i)).devices, i.devices);
  EXPECT_EQ(instance_from_json(to_json(i)).owner_uid, 1000u);

  MdevRecord m;
  m.uuid = "4b20d080-1b54-4048-85b3-a6a62d165c01";
  m.parent = "mtty";
  m.type_id = "mtty-1";
  EXPECT_EQ(mdev_from_json(to_json(m)).parent, "mtty");

  Intent in;
  in.id = d.id;
  in.op = "create-instance";
  in.bound_devices = {d.id};
  EXPECT_EQ(intent_from_json(to_json(in)).bound_devices, in.bound_devices);
}

TEST(Records, ShapeIsChecked) {
  DeviceRecord d;
  d.id = "0123456789abcdef0123456789abcdef";
  auto missing = to_json(d);
  missing.erase("name");
  EXPECT_THROW(device_from_json(missing), BadRecord);
  auto wrong_type = to_json(d);
  wrong_type["created_at"] = "yesterday";
  EXPECT_THROW(device_from_json(wrong_type), BadRecord);
  auto future = to_json(d);
  future["version"] = 2;
  EXPECT_THROW(device_from_json(future), BadRecord);
  EXPECT_THROW(device_from_json(RecordJson::array()), BadRecord);
  EXPECT_THROW(instance_from_json(to_json(d)), BadRecord) << "a device is not an instance";
}

TEST(Records, ContentIsCheckedLikeTheAPIChecksIt) {
  const DeviceRecord d = valid_device();
  EXPECT_NO_THROW(device_from_json(to_json(d)));
  for (auto edit : std::vector<void (*)(DeviceRecord &)>{
           [](DeviceRecord &r) { r.pci_address = "0000:A2:00.0"; }, [](DeviceRecord &r) { r.pci_address = "../x"; },
           [](DeviceRecord &r) { r.name = "../x"; }, [](DeviceRecord &r) { r.type = "nic"; },
           [](DeviceRecord &r) { r.vendor_id = "10DE"; }, [](DeviceRecord &r) { r.iommu_group = -2; },
           [](DeviceRecord &r) { r.attached_to = "vm1"; }, [](DeviceRecord &r) { r.host_driver = "a/b"; }}) {
    auto bad = d;
    edit(bad);
    EXPECT_THROW(device_from_json(to_json(bad)), BadRecord);
  }
  InstanceRecord i;
  i.id = d.id;
  i.name = "vm";
  EXPECT_NO_THROW(instance_from_json(to_json(i)));
  for (auto edit : std::vector<void (*)(InstanceRecord &)>{[](InstanceRecord &r) { r.mdev_uuid = "../../etc"; },
                                                           [](InstanceRecord &r) { r.image = std::string(5000, 'x'); },
                                                           [](InstanceRecord &r) { r.gpu_profile = "a/b"; },
                                                           [](InstanceRecord &r) { r.devices = {"../d"}; },
                                                           [](InstanceRecord &r) { r.mdev_parent = ".."; }}) {
    auto bad = i;
    edit(bad);
    EXPECT_THROW(instance_from_json(to_json(bad)), BadRecord);
  }
}
