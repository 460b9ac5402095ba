#include "core/error.hpp"
#include "core/vendor_vgpu.hpp"

#include "fixtures/fake_host.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <fstream>
#include <sstream>

using namespace hostdev::core;
using namespace hostdev::test;
using namespace std::chrono_literals;

namespace {

// The driver's format: a header, then "%-5d : %s" per type.
constexpr const char *kCreatable = "ID    : vGPU Name\n"
                                   "1147  : NVIDIA L40S-1Q\n"
                                   "1148  : NVIDIA L40S-2Q\n"
                                   "1150  : NVIDIA L40S-4Q\n"
                                   "1155  : NVIDIA L40S-48Q\n";

TEST(VendorVgpuParse, ReadsTheDriversFormat) {
  auto types = parse_creatable_vgpu_types(kCreatable);
  ASSERT_EQ(types.size(), 4U);
  EXPECT_EQ(types[0], (VgpuType{1147, "NVIDIA L40S-1Q", 1024}));
  EXPECT_EQ(types[2], (VgpuType{1150, "NVIDIA L40S-4Q", 4096}));
  EXPECT_EQ(types[3], (VgpuType{1155, "NVIDIA L40S-48Q", 49152}));
}

std::string fixture(const std::string &name) {
  std::ifstream in(std::string(HOSTDEV_VENDOR_FIXTURES) + "/" + name);
  EXPECT_TRUE(in) << name;
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

TEST(VendorVgpuParse, TheDriversTextByteForByte) {
  auto empty = parse_creatable_vgpu_types(fixture("creatable_vgpu_types.empty-gpu"));
  ASSERT_GE(empty.size(), 4U);
  EXPECT_EQ(empty[0], (VgpuType{1147, "NVIDIA L40S-1Q", 1024}));
  EXPECT_EQ(empty[3], (VgpuType{1152, "NVIDIA L40S-8Q", 8192}));
  auto after = parse_creatable_vgpu_types(fixture("creatable_vgpu_types.after-4q"));
  EXPECT_EQ(after.size(), 3U) << "the list shrinks as the GPU fills";
  EXPECT_EQ(after.back().name, "NVIDIA L40S-4Q");
  EXPECT_TRUE(parse_creatable_vgpu_types(fixture("creatable_vgpu_types.header-only")).empty());
  // current_vgpu_type, as the fake kernel of the unit tests writes it too
  FakeHost host;
  make_vendor_vgpu_host(host);
  Sysfs sysfs(host.root());
  const auto dir = "sys/bus/pci/devices/" + vf_address(kPf0Addr, 0) + "/nvidia/";
  EXPECT_EQ(sysfs.read(dir + "current_vgpu_type").value_or(""), fixture("current_vgpu_type.none"));
  host.write_file("sys/devices/pci0000:00/" + vf_address(kPf0Addr, 0) + "/nvidia/current_vgpu_type",
                  fixture("current_vgpu_type.1150"));
  EXPECT_EQ(VendorVgpu(sysfs).current_type(vf_address(kPf0Addr, 0)), 1150U);
  // The fixture host's list has the same lines as the driver's (it has one more type, 48Q, at the end).
  const auto listed = sysfs.read(dir + "creatable_vgpu_types").value_or("");
  EXPECT_EQ(listed.rfind(fixture("creatable_vgpu_types.empty-gpu"), 0), 0U) << listed;
}

TEST(VendorVgpuParse, AFullGpuListsOnlyTheHeader) {
  EXPECT_TRUE(parse_creatable_vgpu_types("ID    : vGPU Name\n").empty());
  EXPECT_TRUE(parse_creatable_vgpu_types("").empty());
}

TEST(VendorVgpuParse, SkipsWhatIsNoTypeLine) {
  auto types = parse_creatable_vgpu_types("ID    : vGPU Name\n"
                                          "garbage\n"
                                          "0     : NVIDIA zero\n"
                                          "-3    : NVIDIA negative\n"
                                          "99999999999 : NVIDIA too big\n"
                                          "12ab  : NVIDIA not a number\n"
                                          "1147  :\n"
                                          "1150  : NVIDIA L40S-4Q\r\n"
                                          "1150  : NVIDIA duplicate\n"
                                          "1152:NVIDIA L40S-8Q");
  ASSERT_EQ(types.size(), 2U);
  EXPECT_EQ(types[0], (VgpuType{1150, "NVIDIA L40S-4Q", 4096}));
  EXPECT_EQ(types[1], (VgpuType{1152, "NVIDIA L40S-8Q", 8192}));
}

TEST(VendorVgpuParse, CutsOverlongNames) {
  auto types = parse_creatable_vgpu_types("1 : " + std::string(1000, 'x') + "\n");
  ASSERT_EQ(types.size(), 1U);
  EXPECT_EQ(types[0].name.size(), 128U);
}

TEST(VendorVgpuNames, FramebufferFromTheProfileName) {
  EXPECT_EQ(framebuffer_from_profile_name("NVIDIA L40S-4Q"), 4096U);
  EXPECT_EQ(framebuffer_from_profile_name("L40S-48Q"), 49152U);
  EXPECT_EQ(framebuffer_from_profile_name("NVIDIA H200X-1-18C"), 18432U);
  EXPECT_EQ(framebuffer_from_profile_name("NVIDIA A100-2-10C"), 10240U);
  EXPECT_EQ(framebuffer_from_profile_name("GRID M60-0B"), 512U);
  EXPECT_EQ(framebuffer_from_profile_name("NVIDIA RTX6000-Ada-12A"), 12288U);
  EXPECT_EQ(framebuffer_from_profile_name("mtty-2"), 0U);
  EXPECT_EQ(framebuffer_from_profile_name("L40S-Q"), 0U);
  EXPECT_EQ(framebuffer_from_profile_name("L40S-4q"), 0U);
  EXPECT_EQ(framebuffer_from_profile_name("L40S-99999Q"), 0U);
  EXPECT_EQ(framebuffer_from_profile_name(""), 0U);
}

TEST(VendorVgpuNames, AsUsersWriteThem) {
  EXPECT_EQ(short_profile_name("NVIDIA L40S-1Q"), "L40S-1Q");
  EXPECT_EQ(short_profile_name("GRID M60-0B"), "M60-0B");
  EXPECT_EQ(short_profile_name("L40S-1Q"), "L40S-1Q");
  EXPECT_EQ(short_profile_name("mtty-2"), "mtty-2");
  // the driver's name, the name without the vendor word, the type id — on either framework
  EXPECT_TRUE(profile_matches("NVIDIA L40S-1Q", "NVIDIA L40S-1Q", "1147"));
  EXPECT_TRUE(profile_matches("L40S-1Q", "NVIDIA L40S-1Q", "1147"));
  EXPECT_TRUE(profile_matches("1147", "NVIDIA L40S-1Q", "1147"));
  EXPECT_TRUE(profile_matches("L40S-1Q", "NVIDIA L40S-1Q", "nvidia-1155"));
  EXPECT_TRUE(profile_matches("nvidia-1155", "NVIDIA L40S-1Q", "nvidia-1155"));
  EXPECT_TRUE(profile_matches("1155", "NVIDIA L40S-1Q", "nvidia-1155"));
  EXPECT_TRUE(profile_matches("mtty-2", "mtty-2", "mtty-2"));
  EXPECT_FALSE(profile_matches("L40S-2Q", "NVIDIA L40S-1Q", "1147"));
  EXPECT_FALSE(profile_matches("114", "NVIDIA L40S-1Q", "1147"));
  EXPECT_FALSE(profile_matches("2", "mtty-2", "mtty-2")); // a bare number names only a vendor type id
  EXPECT_FALSE(profile_matches("", "NVIDIA L40S-1Q", "1147"));
  EXPECT_FALSE(profile_matches("NVIDIA", "NVIDIA L40S-1Q", "1147"));
}

class VendorVgpuTest : public ::testing::Test {
protected:
  void SetUp() override {
    make_vendor_vgpu_host(host_);
    sysfs_ = std::make_unique<Sysfs>(host_.root());
    sysfs_->set_write_hook(host_.kernel());
  }
  FakeHost host_;
  std::unique_ptr<Sysfs> sysfs_;
};

TEST_F(VendorVgpuTest, FindsTheVfsAndWhatTheyOffer) {
  VendorVgpu vendor(*sysfs_);
  const auto vf = vf_address(kPf0Addr, 0);
  EXPECT_TRUE(vendor.is_vendor_vf(vf));
  EXPECT_FALSE(vendor.is_vendor_vf(kPf0Addr));
  auto found = vendor.find(vf);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->gpu, kPf0Addr);
  EXPECT_EQ(found->current_type, 0U);
  EXPECT_EQ(found->creatable.size(), 5U);
  EXPECT_EQ(found->iommu_group, 100);
  EXPECT_FALSE(found->gpu_instance_id);
  // newer drivers' attributes are reported where present
  host_.write_file("sys/devices/pci0000:00/" + vf + "/nvidia/placement_id", "3\n");
  EXPECT_EQ(vendor.find(vf)->placement_id, "3");
}

TEST_F(VendorVgpuTest, AssignReadsBackAndTheListShrinks) {
  VendorVgpu vendor(*sysfs_);
  const auto vf0 = vf_address(kPf0Addr, 0), vf1 = vf_address(kPf0Addr, 1);
  vendor.assign(vf0, 1155, 1s); // 48Q: the whole GPU
  EXPECT_EQ(vendor.current_type(vf0), 1155U);
  EXPECT_TRUE(vendor.find(vf0)->creatable.empty());
  EXPECT_TRUE(vendor.find(vf1)->creatable.empty()); // the GPU is full
  EXPECT_EQ(vendor.find(vf_address(kPf1Addr, 0))->creatable.size(), 5U);
  try {
    vendor.assign(vf0, 1147, 1s);
    FAIL() << "a second type on one VF";
  } catch (const Error &e) {
    EXPECT_EQ(e.code(), Errc::AlreadyExists);
  }
  try {
    vendor.assign(vf1, 1147, 1s);
    FAIL() << "a full GPU";
  } catch (const Error &e) {
    EXPECT_EQ(e.code(), Errc::KernelError);
    EXPECT_EQ(e.sys_errno(), EINVAL);
  }
  vendor.release(vf0, 1s);
  EXPECT_EQ(vendor.current_type(vf0), 0U);
  EXPECT_EQ(vendor.find(vf1)->creatable.size(), 5U);
  vendor.release(vf0, 1s); // nothing to release: done
}

TEST_F(VendorVgpuTest, ReleaseWaitsForTheVmmToCloseTheDeviceThenGivesUp) {
  VendorVgpu vendor(*sysfs_);
  const auto vf = vf_address(kPf0Addr, 2);
  vendor.assign(vf, 1150, 1s);
  host_.open_fd(4242, "qemu-system-x86", "/dev/vfio/102");
  const auto start = std::chrono::steady_clock::now();
  try {
    vendor.release(vf, 400ms);
    FAIL() << "released while open";
  } catch (const Error &e) {
    EXPECT_EQ(e.code(), Errc::InUse);
    EXPECT_NE(std::string(e.what()).find("Device or resource busy"), std::string::npos) << e.what();
  }
  EXPECT_GE(std::chrono::steady_clock::now() - start, 400ms);
  EXPECT_EQ(vendor.current_type(vf), 1150U);
  host_.remove("proc/4242");
  vendor.release(vf, 400ms);
  EXPECT_EQ(vendor.current_type(vf), 0U);
}

TEST_F(VendorVgpuTest, RefusesTypeZeroAndFunctionsWithoutTheFiles) {
  VendorVgpu vendor(*sysfs_);
  EXPECT_THROW(vendor.assign(vf_address(kPf0Addr, 0), 0, 1s), Error);
  try {
    vendor.assign(kPf0Addr, 1147, 1s);
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(e.code(), Errc::DeviceNotFound);
  }
}

} // namespace
