#include "core/describe.hpp"

#include <gtest/gtest.h>

using namespace hostdev::core;

TEST(Describe, DeviceJsonHasEveryKeyWithNullsWhereAbsent) {
  PciFunction fn;
  fn.address = "0000:a2:00.0";
  fn.vendor_id = 0x10de;
  fn.device_id = 0x26b9;
  fn.class_code = 0x030200;
  fn.iommu_group = 42;
  fn.group_members = {"0000:a2:00.0"};
  fn.driver = "nvidia";
  fn.sriov_totalvfs = 32;
  fn.sriov_numvfs = 0;
  const auto j = device_json(fn);
  EXPECT_EQ(j["pci_address"], "0000:a2:00.0");
  EXPECT_EQ(j["vendor_id"], "10de");
  EXPECT_EQ(j["device_id"], "26b9");
  EXPECT_EQ(j["class"], "0x030200");
  EXPECT_EQ(j["iommu_group"], 42);
  EXPECT_EQ(j["driver"], "nvidia");
  EXPECT_TRUE(j["driver_override"].is_null());
  EXPECT_TRUE(j["physfn"].is_null());
  EXPECT_EQ(j["is_gpu"], true);
  EXPECT_EQ(j["sriov_totalvfs"], 32);
  for (const char *key : {"subsystem_vendor_id", "subsystem_device_id", "vendor_name", "device_name", "revision",
                          "iommu_group_members", "numa_node", "reset_method", "sriov_numvfs", "virtfns"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j.size(), 20u) << "a key was added or removed: update the man page and inspect's tests";
}

TEST(Describe, InspectJsonListsReportDevicesAndParents) {
  HostReport report;
  report.iommu_enabled = true;
  report.gpu_mode = GpuMode::Vgpu;
  report.problems.push_back({"no hugepages", "reserve some"});
  MdevParent parent;
  parent.name = "0000:a2:00.4";
  MdevType type;
  type.id = "nvidia-1155";
  type.name = "NVIDIA L40S-4Q";
  type.framebuffer_mb = 4096;
  type.available = 1;
  parent.types.push_back(type);
  PciFunction fn;
  fn.address = "0000:a2:00.0";
  const auto j = inspect_json(report, {fn}, {parent});
  EXPECT_EQ(j["gpu_mode"], "vgpu");
  EXPECT_EQ(j["problems"][0], "no hugepages");
  EXPECT_EQ(j["hints"][0], "reserve some");
  EXPECT_EQ(j["devices"].size(), 1u);
  EXPECT_EQ(j["mdev_parents"][0]["parent"], "0000:a2:00.4");
  EXPECT_EQ(j["mdev_parents"][0]["profiles"][0]["framebuffer_mb"], 4096);
}
