#include "core/records.hpp"

#include <gtest/gtest.h>

using namespace hostdev::core;

TEST(Records, EveryKindRoundTrips) {
  DeviceRecord d;
  d.id = "0123456789abcdef0123456789abcdef";
  d.name = "gpu0";
  d.type = "gpu";
  d.pci_address = "0000:a2:00.0";
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
  EXPECT_EQ(mdev_from_json(to_json(m)).parent, "mtty");

  Intent in;
  in.id = d.id;
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
