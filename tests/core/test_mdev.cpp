#include "core/error.hpp"
#include "core/mdev.hpp"
#include "fixtures/fake_host.hpp"

#include <gtest/gtest.h>

#include <algorithm>

using namespace hostdev;
using namespace hostdev::core;
using hostdev::test::FakeHost;

namespace {

constexpr const char *kUuid = "6f1c7c2e-3a52-4f0b-9d1e-2b8f1a7c9e01";
constexpr const char *kUuid2 = "0b5d7d8e-1111-4222-8333-944455556666";

template <class F> void expect_errc(F &&f, Errc code, const std::string &message_part = "") {
  try {
    f();
    ADD_FAILURE() << "expected Error(" << errc_name(code) << "), nothing was thrown";
  } catch (const Error &e) {
    EXPECT_EQ(errc_name(e.code()), errc_name(code)) << e.what();
    EXPECT_NE(std::string(e.what()).find(message_part), std::string::npos) << e.what();
  }
}

std::string type_path(const std::string &parent, const std::string &type) {
  return "sys/class/mdev_bus/" + parent + "/mdev_supported_types/" + type;
}

unsigned available(const MdevBus &bus, const std::string &parent, const std::string &type) {
  for (const auto &p : bus.parents())
    if (p.name == parent)
      for (const auto &t : p.types)
        if (t.id == type)
          return t.available;
  throw std::runtime_error("no type " + type + " on " + parent);
}

// The shared 64-parent host is built once: building it costs about a second of file system work. Tests that
// change it use their own host.
class VgpuHost : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    shared_ = new FakeHost();
    test::make_vgpu_host(*shared_);
  }
  static void TearDownTestSuite() {
    delete shared_;
    shared_ = nullptr;
  }
  static FakeHost *shared_;
};
FakeHost *VgpuHost::shared_ = nullptr;

const std::string kVf0 = test::vf_address(test::kPf0Addr, 0); // 0000:a2:00.4
const std::string kVf1 = test::vf_address(test::kPf0Addr, 1); // 0000:a2:00.5

// ---- parents, types, profiles ---------------------------------------------------------------------------------

TEST_F(VgpuHost, ParentsAreEveryVfSorted) {
  Sysfs sysfs(shared_->root());
  MdevBus bus(sysfs);
  auto names = bus.parent_names();
  ASSERT_EQ(names.size(), 64u);
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  EXPECT_EQ(names.front(), kVf0);
  EXPECT_EQ(names[31], "0000:a2:04.3");
  EXPECT_EQ(names[32], "0000:c1:00.4");
  EXPECT_EQ(names.back(), "0000:c1:04.3");
}

TEST_F(VgpuHost, EveryParentOffersTheL40sTypes) {
  Sysfs sysfs(shared_->root());
  MdevBus bus(sysfs);
  auto parents = bus.parents();
  ASSERT_EQ(parents.size(), 64u);
  for (const auto &p : parents) {
    SCOPED_TRACE(p.name);
    ASSERT_EQ(p.types.size(), 4u);
    const std::string ids[] = {"nvidia-1155", "nvidia-1156", "nvidia-1157", "nvidia-1160"};
    const std::string names[] = {"NVIDIA L40S-1Q", "NVIDIA L40S-2Q", "NVIDIA L40S-4Q", "NVIDIA L40S-48Q"};
    const unsigned fb[] = {1024, 2048, 4096, 49152};
    for (std::size_t i = 0; i < 4; ++i) {
      EXPECT_EQ(p.types[i].id, ids[i]);
      EXPECT_EQ(p.types[i].name, names[i]);
      EXPECT_EQ(p.types[i].device_api, "vfio-pci");
      EXPECT_EQ(p.types[i].framebuffer_mb, fb[i]);
      EXPECT_EQ(p.types[i].available, 1u);
      EXPECT_NE(p.types[i].description.str().find("max_resolution=7680x4320"), std::string::npos);
    }
  }
}

// The parents of one GPU model offer the same types: their descriptions are kept once, however many parents
// (and copies of them in the model and the bus objects' view) there are.
TEST_F(VgpuHost, ParentsShareTheirTypesDescriptions) {
  Sysfs sysfs(shared_->root());
  MdevBus bus(sysfs);
  auto parents = bus.parents();
  ASSERT_EQ(parents.size(), 64u);
  auto copy = parents.back(); // a copy shares too
  for (std::size_t i = 0; i < 4; ++i) {
    const std::string *first = &parents.front().types[i].description.str();
    EXPECT_FALSE(first->empty());
    for (const auto &p : parents)
      EXPECT_EQ(&p.types[i].description.str(), first) << p.name << " " << p.types[i].id;
    EXPECT_EQ(&copy.types[i].description.str(), first);
  }
  EXPECT_NE(&parents.front().types[0].description.str(), &parents.front().types[1].description.str());
  // And the metadata cache keeps one list of types for the 64 parents, not 64.
  EXPECT_EQ(bus.type_lists_kept(), 1u);
}

TEST_F(VgpuHost, ProfilesSumOverParents) {
  Sysfs sysfs(shared_->root());
  MdevBus bus(sysfs);
  auto profiles = bus.profiles();
  ASSERT_EQ(profiles.size(), 4u);
  // sorted by name, as text
  EXPECT_EQ(profiles[0].name, "NVIDIA L40S-1Q");
  EXPECT_EQ(profiles[1].name, "NVIDIA L40S-2Q");
  EXPECT_EQ(profiles[2].name, "NVIDIA L40S-48Q");
  EXPECT_EQ(profiles[3].name, "NVIDIA L40S-4Q");
  EXPECT_EQ(profiles[2].type_id, "nvidia-1160");
  EXPECT_EQ(profiles[2].framebuffer_mb, 49152u);
  EXPECT_EQ(profiles[3].type_id, "nvidia-1157");
  EXPECT_EQ(profiles[3].framebuffer_mb, 4096u);
  for (const auto &p : profiles)
    EXPECT_EQ(p.available, 64u) << p.name;
}

TEST_F(VgpuHost, FindFreeIsDeterministicAndMatchesNameOrId) {
  Sysfs sysfs(shared_->root());
  MdevBus bus(sysfs);
  auto slot = bus.find_free("NVIDIA L40S-4Q");
  EXPECT_EQ(slot.parent, kVf0);
  EXPECT_EQ(slot.type.id, "nvidia-1157");
  EXPECT_EQ(slot.type.framebuffer_mb, 4096u);
  EXPECT_EQ(slot.type.available, 1u);
  auto by_id = bus.find_free("nvidia-1160");
  EXPECT_EQ(by_id.parent, kVf0);
  EXPECT_EQ(by_id.type.name, "NVIDIA L40S-48Q");
}

TEST_F(VgpuHost, UnknownProfileListsTheKnownOnes) {
  Sysfs sysfs(shared_->root());
  MdevBus bus(sysfs);
  expect_errc([&] { (void)bus.find_free("NVIDIA A100-4C"); }, Errc::ProfileUnavailable,
              "no parent offers profile 'NVIDIA A100-4C'; available profiles: NVIDIA L40S-1Q, NVIDIA L40S-2Q, "
              "NVIDIA L40S-48Q, NVIDIA L40S-4Q");
}

TEST(MdevCache, TypeMetadataIsCachedButAvailabilityIsNot) {
  FakeHost host;
  test::make_vgpu_host(host);
  Sysfs sysfs(host.root());
  MdevBus bus(sysfs);
  EXPECT_EQ(bus.metadata_reads(), 0u);
  bus.parents();
  EXPECT_EQ(bus.metadata_reads(), 64u * 4u);
  bus.parents();
  bus.profiles();
  (void)bus.find_free("NVIDIA L40S-1Q");
  EXPECT_EQ(bus.metadata_reads(), 64u * 4u);

  // Availability changes are seen at once; metadata is still not read again.
  host.write_file("sys/devices/pci0000:00/" + kVf0 + "/mdev_supported_types/nvidia-1155/available_instances", "0\n");
  host.write_file("sys/devices/pci0000:00/" + kVf0 + "/mdev_supported_types/nvidia-1155/name", "Renamed\n");
  EXPECT_EQ(available(bus, kVf0, "nvidia-1155"), 0u);
  EXPECT_EQ(bus.profiles()[0].available, 63u);
  EXPECT_EQ(bus.find_free("NVIDIA L40S-1Q").parent, kVf1);
  EXPECT_EQ(bus.parents()[0].types[0].name, "NVIDIA L40S-1Q"); // cached
  EXPECT_EQ(bus.metadata_reads(), 64u * 4u);

  bus.rescan();
  EXPECT_EQ(bus.parents()[0].types[0].name, "Renamed");
  EXPECT_EQ(bus.metadata_reads(), 2u * 64u * 4u);
}

// ---- framebuffer ------------------------------------------------------------------------------------------------

TEST(MdevFramebuffer, ParsesTheUsualForms) {
  const std::pair<const char *, unsigned> cases[] = {
      {"num_heads=4, frl_config=60, framebuffer=4096M, max_resolution=5120x2880, max_instance=12", 4096},
      {"num_heads=4, frl_config=60, framebuffer=49152M, max_resolution=7680x4320, max_instance=1", 49152},
      {"framebuffer=4G", 4096},
      {"framebuffer=1g", 1024},
      {"FrameBuffer=2G, num_heads=1", 2048},
      {"FRAMEBUFFER=512M", 512},
      {"framebuffer=2097152K", 2048},
      {"framebuffer=512K", 0},    // less than a megabyte
      {"framebuffer=1024", 1024}, // no unit: MB
      {"framebuffer = 8M", 8},
      {"framebuffer:16M", 16},
      {"max_framebuffer=8G, framebuffer=1G", 1024}, // the key must start a word
      {"max_framebuffer=8G", 0},
      {"framebuffer=", 0},
      {"framebuffer=abc", 0},
      {"framebuffer=99999999999G", 0}, // overflow
      {"num_heads=4, max_resolution=5120x2880", 0},
      {"", 0},
      {"Single port serial", 0},
  };
  for (const auto &[text, mb] : cases)
    EXPECT_EQ(parse_framebuffer_mb(text), mb) << text;
}

// ---- list, create, remove ------------------------------------------------------------------------------------------

class MdevTest : public ::testing::Test {
protected:
  void SetUp() override {
    host.iommu(true).vfio(true);
    host.add_function(test::make_fn(kVf0, 0x10de, 0x26b9, 0x030200, std::nullopt, 100));
    host.add_function(test::make_fn(kVf1, 0x10de, 0x26b9, 0x030200, std::nullopt, 101));
    const std::string desc = "num_heads=4, frl_config=60, framebuffer=4096M, max_resolution=7680x4320, max_instance=12";
    host.add_mdev_parent(
        kVf0, {{"nvidia-1157", "NVIDIA L40S-4Q", desc, 1}, {"nvidia-1160", "NVIDIA L40S-48Q", "framebuffer=48G", 0}});
    host.add_mdev_parent(
        kVf1, {{"nvidia-1157", "NVIDIA L40S-4Q", desc, 1}, {"nvidia-1160", "NVIDIA L40S-48Q", "framebuffer=48G", 0}});
  }
  FakeHost host;
};

TEST_F(MdevTest, CreateAndRemoveThroughTheKernel) {
  Sysfs sysfs(host.root());
  sysfs.set_write_hook(host.kernel());
  MdevBus bus(sysfs);
  EXPECT_TRUE(bus.list().empty());

  bus.create(kVf0, "nvidia-1157", kUuid);
  EXPECT_EQ(host.writes(), std::vector<std::string>{type_path(kVf0, "nvidia-1157") + "/create=" + kUuid});
  EXPECT_EQ(available(bus, kVf0, "nvidia-1157"), 0u);
  EXPECT_EQ(bus.profiles()[1].available, 1u); // "NVIDIA L40S-4Q": only kVf1 left
  EXPECT_EQ(bus.find_free("NVIDIA L40S-4Q").parent, kVf1);

  auto mdevs = bus.list();
  ASSERT_EQ(mdevs.size(), 1u);
  EXPECT_EQ(mdevs[0].uuid, kUuid);
  EXPECT_EQ(mdevs[0].parent, kVf0);
  EXPECT_EQ(mdevs[0].type_id, "nvidia-1157");
  EXPECT_EQ(mdevs[0].profile_name, "NVIDIA L40S-4Q");
  ASSERT_TRUE(mdevs[0].iommu_group);
  EXPECT_GT(*mdevs[0].iommu_group, 101);
  ASSERT_TRUE(bus.find(kUuid));
  EXPECT_EQ(bus.find(kUuid)->parent, kVf0);

  bus.remove(kUuid);
  EXPECT_EQ(host.writes().back(), "sys/bus/mdev/devices/" + std::string(kUuid) + "/remove=1");
  EXPECT_TRUE(bus.list().empty());
  EXPECT_EQ(bus.find(kUuid), std::nullopt);
  EXPECT_EQ(available(bus, kVf0, "nvidia-1157"), 1u);
}

TEST_F(MdevTest, UuidIsNormalisedBeforeTheWrite) {
  Sysfs sysfs(host.root());
  sysfs.set_write_hook(host.kernel());
  MdevBus bus(sysfs);
  std::string upper = kUuid;
  std::transform(upper.begin(), upper.end(), upper.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  bus.create(kVf1, "nvidia-1157", upper);
  EXPECT_EQ(host.writes(), std::vector<std::string>{type_path(kVf1, "nvidia-1157") + "/create=" + kUuid});
  bus.remove(upper);
  EXPECT_TRUE(bus.list().empty());
}

TEST_F(MdevTest, NoCapacityWhenEveryParentIsFull) {
  Sysfs sysfs(host.root());
  sysfs.set_write_hook(host.kernel());
  MdevBus bus(sysfs);
  expect_errc([&] { (void)bus.find_free("NVIDIA L40S-48Q"); }, Errc::NoCapacity, "NVIDIA L40S-48Q");
  bus.create(kVf0, "nvidia-1157", kUuid);
  bus.create(kVf1, "nvidia-1157", kUuid2);
  expect_errc([&] { (void)bus.find_free("nvidia-1157"); }, Errc::NoCapacity);
  bus.remove(kUuid2);
  EXPECT_EQ(bus.find_free("nvidia-1157").parent, kVf1);
}

TEST_F(MdevTest, KernelRefusalIsAKernelError) {
  Sysfs sysfs(host.root());
  sysfs.set_write_hook(host.kernel());
  MdevBus bus(sysfs);
  // available_instances is 0: the kernel says EINVAL
  expect_errc([&] { bus.create(kVf0, "nvidia-1160", kUuid); }, Errc::KernelError);
  EXPECT_TRUE(bus.list().empty());
  host.fail_writes("/create", EIO);
  expect_errc([&] { bus.create(kVf0, "nvidia-1157", kUuid); }, Errc::KernelError, "Input/output error");
  EXPECT_TRUE(bus.list().empty());
  EXPECT_EQ(available(bus, kVf0, "nvidia-1157"), 1u);
}

TEST_F(MdevTest, CreateChecksTheDeviceAppeared) {
  Sysfs sysfs(host.root()); // no fake kernel: the write lands in a plain file and nothing appears
  MdevBus bus(sysfs);
  expect_errc([&] { bus.create(kVf0, "nvidia-1157", kUuid); }, Errc::KernelError, "did not appear");
}

TEST_F(MdevTest, RemoveChecksTheDeviceWentAway) {
  host.add_mdev(kVf0, "nvidia-1157", kUuid);
  Sysfs sysfs(host.root()); // no fake kernel: the mdev stays
  MdevBus bus(sysfs);
  expect_errc([&] { bus.remove(kUuid); }, Errc::KernelError, "still there");
}

TEST_F(MdevTest, CreatingAnExistingUuidIsRefused) {
  Sysfs sysfs(host.root());
  sysfs.set_write_hook(host.kernel());
  MdevBus bus(sysfs);
  bus.create(kVf0, "nvidia-1157", kUuid);
  expect_errc([&] { bus.create(kVf1, "nvidia-1157", kUuid); }, Errc::AlreadyExists);
  EXPECT_EQ(host.writes().size(), 1u);
}

TEST_F(MdevTest, UnknownParentOrTypeIsRefusedWithoutWriting) {
  Sysfs sysfs(host.root());
  sysfs.set_write_hook(host.kernel());
  MdevBus bus(sysfs);
  expect_errc([&] { bus.create("0000:a2:07.0", "nvidia-1157", kUuid); }, Errc::DeviceNotFound);
  expect_errc([&] { bus.create(kVf0, "nvidia-9999", kUuid); }, Errc::ProfileUnavailable);
  EXPECT_TRUE(host.writes().empty());
}

TEST_F(MdevTest, RemoveOfAnAbsentUuidIsNotFound) {
  Sysfs sysfs(host.root());
  sysfs.set_write_hook(host.kernel());
  MdevBus bus(sysfs);
  expect_errc([&] { bus.remove(kUuid); }, Errc::NotFound, kUuid);
  EXPECT_TRUE(host.writes().empty());
}

TEST_F(MdevTest, InvalidUuidIsRefusedBeforeAnyWrite) {
  Sysfs sysfs(host.root());
  sysfs.set_write_hook(host.kernel());
  MdevBus bus(sysfs);
  for (const char *bad : {"", "not-a-uuid", "6f1c7c2e-3a52-4f0b-9d1e-2b8f1a7c9e0", "6f1c7c2e3a524f0b9d1e2b8f1a7c9e01",
                          "../../../../etc/passwd", "6f1c7c2e-3a52-4f0b-9d1e-2b8f1a7c9e0g"}) {
    SCOPED_TRACE(bad);
    expect_errc([&] { bus.create(kVf0, "nvidia-1157", bad); }, Errc::InvalidArgument);
    expect_errc([&] { bus.remove(bad); }, Errc::InvalidArgument);
    expect_errc([&] { (void)bus.find(bad); }, Errc::InvalidArgument);
  }
  EXPECT_TRUE(host.writes().empty());
  EXPECT_EQ(available(bus, kVf0, "nvidia-1157"), 1u);
}

TEST_F(MdevTest, PathEscapesAreRefusedBeforeAnyIo) {
  FakeHost empty; // a root with nothing in it: any I/O before validation would report "not found" instead
  Sysfs sysfs(empty.root());
  sysfs.set_write_hook(empty.kernel());
  MdevBus bus(sysfs);
  const std::pair<const char *, const char *> cases[] = {
      {"../../etc", "nvidia-1157"},      {"..", "nvidia-1157"}, {"a/b", "nvidia-1157"},     {"", "nvidia-1157"},
      {kVf0.c_str(), "../../../../etc"}, {kVf0.c_str(), "."},   {kVf0.c_str(), "x/create"},
  };
  for (const auto &[parent, type] : cases) {
    SCOPED_TRACE(std::string(parent) + " / " + type);
    expect_errc([&] { bus.create(parent, type, kUuid); }, Errc::InvalidArgument);
  }
  EXPECT_TRUE(empty.writes().empty());
  EXPECT_EQ(bus.metadata_reads(), 0u);
}

TEST_F(MdevTest, ListSkipsNonUuidsAndReadsTheKernelShape) {
  host.add_mdev(kVf0, "nvidia-1157", kUuid2);
  host.add_mdev(kVf1, "nvidia-1157", kUuid);
  host.write_file("sys/bus/mdev/devices/not-a-uuid", "");
  host.symlink("sys/bus/mdev/devices/garbage", "../../../devices/pci0000:00/" + kVf0);
  Sysfs sysfs(host.root());
  MdevBus bus(sysfs);
  // The kernel's link: mdev_type -> ../mdev_supported_types/<id>
  EXPECT_EQ(sysfs.readlink("sys/bus/mdev/devices/" + std::string(kUuid) + "/mdev_type"),
            "../mdev_supported_types/nvidia-1157");
  auto mdevs = bus.list();
  ASSERT_EQ(mdevs.size(), 2u);
  EXPECT_EQ(mdevs[0].uuid, kUuid2); // sorted by uuid
  EXPECT_EQ(mdevs[0].parent, kVf0);
  EXPECT_EQ(mdevs[1].uuid, kUuid);
  EXPECT_EQ(mdevs[1].parent, kVf1);
  EXPECT_EQ(mdevs[1].profile_name, "NVIDIA L40S-4Q");
  ASSERT_TRUE(mdevs[0].iommu_group && mdevs[1].iommu_group);
  EXPECT_NE(*mdevs[0].iommu_group, *mdevs[1].iommu_group);
}

TEST_F(MdevTest, TypeWithoutNameAttributeIsNamedByItsId) {
  host.add_mdev_parent("0000:05:00.0", {{"mtty-2", "Dual port serial", "", 2, "vfio-pci"}});
  host.remove("sys/devices/pci0000:00/0000:05:00.0/mdev_supported_types/mtty-2/name");
  host.write_file("sys/devices/pci0000:00/0000:05:00.0/mdev_supported_types/stray-file", "x\n");
  Sysfs sysfs(host.root());
  MdevBus bus(sysfs);
  auto parents = bus.parents();
  ASSERT_EQ(parents.size(), 3u);
  ASSERT_EQ(parents[0].name, "0000:05:00.0");
  ASSERT_EQ(parents[0].types.size(), 1u);
  EXPECT_EQ(parents[0].types[0].id, "mtty-2");
  EXPECT_EQ(parents[0].types[0].name, "mtty-2");
  EXPECT_EQ(parents[0].types[0].framebuffer_mb, 0u);
  EXPECT_EQ(parents[0].types[0].available, 2u);
  EXPECT_EQ(bus.find_free("mtty-2").parent, "0000:05:00.0");
}

TEST_F(MdevTest, ParentWithoutTypesIsNotCached) {
  host.symlink("sys/class/mdev_bus/0000:06:00.0", "../../devices/pci0000:00/0000:06:00.0");
  host.write_file("sys/devices/pci0000:00/0000:06:00.0/vendor", "0x10de\n");
  Sysfs sysfs(host.root());
  MdevBus bus(sysfs);
  auto parents = bus.parents();
  ASSERT_EQ(parents.size(), 3u);
  EXPECT_TRUE(parents[0].types.empty());
  // The driver registers its types a moment later: seen without a rescan.
  host.add_mdev_parent("0000:06:00.0", {{"nvidia-1157", "NVIDIA L40S-4Q", "framebuffer=4096M", 1}});
  EXPECT_EQ(bus.parents()[0].types.size(), 1u);
}

} // namespace
