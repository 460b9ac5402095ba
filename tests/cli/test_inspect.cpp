#include "cli/inspect.hpp"

#include "fixtures/fake_host.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sstream>

using namespace hostdev;
using namespace hostdev::test;
using nlohmann::json;

namespace {

json inspect(const FakeHost &host, bool all) {
  std::ostringstream out, err;
  cli::InspectOptions o;
  o.sysfs_root = host.root();
  o.json = true;
  o.all = all;
  EXPECT_EQ(cli::run_inspect(o, out, err), 0) << err.str();
  return json::parse(out.str());
}

std::string text(const FakeHost &host) {
  std::ostringstream out, err;
  cli::InspectOptions o;
  o.sysfs_root = host.root();
  EXPECT_EQ(cli::run_inspect(o, out, err), 0) << err.str();
  return out.str();
}

const json *device(const json &doc, const std::string &address) {
  for (const auto &d : doc["devices"])
    if (d["pci_address"] == address)
      return &d;
  return nullptr;
}

} // namespace

TEST(Inspect, PassthroughHostJson) {
  FakeHost h;
  make_passthrough_host(h);
  auto doc = inspect(h, false);
  EXPECT_EQ(doc["iommu_enabled"], true);
  EXPECT_EQ(doc["vfio_available"], true);
  EXPECT_EQ(doc["gpu_mode"], "passthrough");
  ASSERT_TRUE(doc["problems"].is_array());
  ASSERT_EQ(doc["devices"].size(), 2u) << doc.dump(2);
  const auto *gpu = device(doc, kGpuAddr);
  ASSERT_NE(gpu, nullptr);
  EXPECT_EQ((*gpu)["vendor_id"], "10de");
  EXPECT_EQ((*gpu)["device_id"], "27b8");
  EXPECT_EQ((*gpu)["class"], "0x030200");
  EXPECT_EQ((*gpu)["iommu_group"], 1);
  EXPECT_EQ((*gpu)["driver"], "nvidia");
  EXPECT_EQ((*gpu)["is_gpu"], true);
  EXPECT_EQ((*gpu)["numa_node"], 0);
  EXPECT_EQ((*gpu)["reset_method"], "flr bus");
  EXPECT_TRUE((*gpu)["vendor_name"].is_string());
  EXPECT_TRUE((*gpu)["device_name"].is_string());
  EXPECT_EQ((*gpu)["iommu_group_members"].size(), 3u);
  EXPECT_TRUE(doc["mdev_parents"].empty());
}

TEST(Inspect, AllListsEveryFunctionWithNullsWhereAbsent) {
  FakeHost h;
  make_passthrough_host(h);
  auto doc = inspect(h, true);
  EXPECT_EQ(doc["devices"].size(), 5u);
  const auto *bare = device(doc, kBareAddr);
  ASSERT_NE(bare, nullptr);
  EXPECT_TRUE((*bare)["driver"].is_null());
  EXPECT_EQ((*bare)["is_gpu"], false);
}

TEST(Inspect, VgpuHostShowsParentsAndProfiles) {
  FakeHost h;
  make_vgpu_host(h);
  auto doc = inspect(h, false);
  EXPECT_EQ(doc["gpu_mode"], "vgpu");
  EXPECT_EQ(doc["mdev_parents"].size(), 64u);
  const auto &first = doc["mdev_parents"][0];
  EXPECT_EQ(first["parent"], vf_address(kPf0Addr, 0));
  ASSERT_EQ(first["profiles"].size(), 4u);
  bool found = false;
  for (const auto &p : first["profiles"])
    if (p["name"] == "NVIDIA L40S-4Q") {
      found = true;
      EXPECT_EQ(p["type"], "nvidia-1157");
      EXPECT_EQ(p["framebuffer_mb"], 4096);
      EXPECT_EQ(p["available"], 1);
    }
  EXPECT_TRUE(found);
  const auto *pf = device(doc, kPf0Addr);
  ASSERT_NE(pf, nullptr);
  EXPECT_EQ((*pf)["sriov_totalvfs"], 32);
  EXPECT_EQ((*pf)["virtfns"].size(), 32u);
}

TEST(Inspect, VendorVfioHostIsVgpuWithItsFramework) {
  FakeHost h;
  make_vendor_vgpu_host(h);
  auto doc = inspect(h, false);
  EXPECT_EQ(doc["gpu_mode"], "vgpu") << "no mdev bus, yet a vGPU host";
  EXPECT_EQ(doc["gpu_framework"], "vendor-vfio");
  EXPECT_EQ(doc["gpu_frameworks"], json::array({"vendor-vfio"}));
  EXPECT_TRUE(doc["mdev_parents"].empty());
  ASSERT_EQ(doc["vendor_vfs"].size(), 16u);
  const auto &vf = doc["vendor_vfs"][0];
  EXPECT_EQ(vf["vf"], vf_address(kPf0Addr, 0));
  EXPECT_EQ(vf["gpu"], kPf0Addr);
  EXPECT_EQ(vf["current_type"], 0);
  EXPECT_EQ(vf["creatable"][2], json({{"type", "1150"}, {"name", "NVIDIA L40S-4Q"}, {"framebuffer_mb", 4096}}));
  EXPECT_TRUE(vf["placement_id"].is_null());
  const auto out = text(h);
  EXPECT_NE(out.find("vgpu (vendor-vfio)"), std::string::npos) << out;
  EXPECT_NE(out.find("NVIDIA L40S-4Q"), std::string::npos) << out;
  EXPECT_NE(out.find("0 of 16 VFs have a vGPU"), std::string::npos) << out;
}

TEST(Inspect, AHostWithBothFrameworksSaysSo) {
  FakeHost h;
  make_vendor_vgpu_host(h);
  h.add_mdev_parent(kGpuAddr, {{"mtty-2", "mtty-2", "2 ports", 12}});
  auto doc = inspect(h, false);
  EXPECT_EQ(doc["gpu_framework"], "mdev+vendor-vfio");
}

TEST(Inspect, NoIommuHostReportsProblemsWithHints) {
  FakeHost h;
  make_no_iommu_host(h);
  auto doc = inspect(h, false);
  EXPECT_EQ(doc["iommu_enabled"], false);
  EXPECT_EQ(doc["vfio_available"], false);
  EXPECT_EQ(doc["gpu_mode"], "none");
  EXPECT_TRUE(doc["devices"][0]["iommu_group"].is_null());
  ASSERT_GE(doc["problems"].size(), 2u);
  EXPECT_EQ(doc["problems"].size(), doc["hints"].size());
  EXPECT_NE(doc["hints"].dump().find("intel_iommu=on"), std::string::npos);
  EXPECT_NE(doc["hints"].dump().find("modprobe vfio-pci"), std::string::npos);
}

TEST(Inspect, TextOutputIsATable) {
  FakeHost h;
  make_passthrough_host(h);
  auto out = text(h);
  EXPECT_NE(out.find("GPU mode"), std::string::npos) << out;
  EXPECT_NE(out.find("passthrough"), std::string::npos);
  EXPECT_NE(out.find("ADDRESS"), std::string::npos);
  EXPECT_NE(out.find("0000:01:00.0  10de:27b8"), std::string::npos) << out;
}

TEST(Inspect, MissingRootIsAnError) {
  std::ostringstream out, err;
  cli::InspectOptions o;
  o.sysfs_root = "/nonexistent/root";
  EXPECT_EQ(cli::run_inspect(o, out, err), 1);
  EXPECT_NE(err.str().find("/nonexistent/root"), std::string::npos);
  EXPECT_TRUE(out.str().empty());
}
