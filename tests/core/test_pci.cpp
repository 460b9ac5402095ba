#include "core/error.hpp"
#include "core/pci.hpp"

#include "core/describe.hpp"
#include "fixtures/fake_host.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>

using namespace hostdev;
using namespace hostdev::core;
using hostdev::test::FakeHost;

namespace {

template <class F> void expect_errc(F &&f, Errc code) {
  try {
    f();
    ADD_FAILURE() << "expected Error(" << errc_name(code) << "), nothing was thrown";
  } catch (const Error &e) {
    EXPECT_EQ(errc_name(e.code()), errc_name(code)) << e.what();
  }
}

const PciFunction &by_address(const std::vector<PciFunction> &fns, const std::string &address) {
  auto it = std::find_if(fns.begin(), fns.end(), [&](const PciFunction &f) { return f.address == address; });
  if (it == fns.end())
    throw std::runtime_error("no function " + address);
  return *it;
}

bool has_problem(const HostReport &r, const std::string &message_part, const std::string &hint_part) {
  return std::any_of(r.problems.begin(), r.problems.end(), [&](const Problem &p) {
    return p.message.find(message_part) != std::string::npos && p.hint.find(hint_part) != std::string::npos;
  });
}

std::string dump(const HostReport &r) {
  std::string out;
  for (const auto &p : r.problems)
    out += "[" + p.message + " | " + p.hint + "] ";
  return out;
}

class FakeNames final : public PciNames {
public:
  std::string vendor(std::uint16_t v) const override {
    return v == 0x10de ? "NVIDIA Corporation" : "vendor-" + hex4(v);
  }
  std::string device(std::uint16_t v, std::uint16_t d) const override {
    return v == 0x10de && d == 0x27b8 ? "AD104GL [L4]" : "device-" + hex4(v) + ":" + hex4(d);
  }
};

class PciTest : public ::testing::Test {
protected:
  std::vector<PciFunction> discover() {
    Sysfs sysfs(host.root());
    return PciBus(sysfs, *names).discover();
  }
  FakeHost host;
  std::unique_ptr<PciNames> names = make_no_names();
};

// ---- discovery ----------------------------------------------------------------------------------------------

TEST_F(PciTest, DiscoversEveryFunctionSortedByAddress) {
  test::make_passthrough_host(host);
  auto fns = discover();
  std::vector<std::string> addresses;
  for (const auto &f : fns)
    addresses.push_back(f.address);
  EXPECT_EQ(addresses, (std::vector<std::string>{test::kBridgeAddr, test::kGpuAddr, test::kAudioAddr, test::kNicAddr,
                                                 test::kBareAddr}));
}

// A big host is read by several threads (PciBus::read_all): the result must be what reading each function in
// turn gives, in address order, whatever thread read it; with real names from hwdb, which is shared by them.
TEST_F(PciTest, ReadAllOfABigHostIsEachFunctionReadInTurn) {
  test::make_many_functions_host(host, 1500); // several threads' worth
  Sysfs sysfs(host.root());
  auto hwdb = make_hwdb_names();
  PciBus bus(sysfs, *hwdb);
  const auto all = bus.read_all();
  const auto addresses = bus.addresses();
  ASSERT_EQ(all.size(), 1500u);
  ASSERT_EQ(addresses.size(), 1500u);
  for (std::size_t i = 0; i < all.size(); ++i) {
    auto one = bus.read_alone(addresses[i]);
    ASSERT_TRUE(one);
    EXPECT_EQ(all[i], *one) << addresses[i];
  }
  // And discover() adds the group members to the same functions.
  auto found = bus.discover();
  ASSERT_EQ(found.size(), all.size());
  for (std::size_t i = 0; i < all.size(); ++i)
    EXPECT_EQ(found[i].address, all[i].address);
}

TEST_F(PciTest, ReadsEveryFieldOfTheGpu) {
  test::make_passthrough_host(host);
  const auto fns = discover();
  const auto &gpu = by_address(fns, test::kGpuAddr);
  EXPECT_EQ(gpu.vendor_id, 0x10de);
  EXPECT_EQ(gpu.device_id, 0x27b8);
  EXPECT_EQ(gpu.subsystem_vendor_id, 0x10de);
  EXPECT_EQ(gpu.subsystem_device_id, 0x16ca);
  EXPECT_EQ(gpu.class_code, 0x030200u);
  EXPECT_EQ(gpu.revision, 0xa1);
  EXPECT_EQ(gpu.vendor_name, "");
  EXPECT_EQ(gpu.device_name, "");
  EXPECT_EQ(gpu.iommu_group, 1);
  EXPECT_EQ(gpu.group_members, (std::vector<std::string>{test::kBridgeAddr, test::kGpuAddr, test::kAudioAddr}));
  EXPECT_EQ(gpu.driver, "nvidia");
  EXPECT_EQ(gpu.driver_override, std::nullopt);
  EXPECT_EQ(gpu.numa_node, 0);
  EXPECT_EQ(gpu.reset_method, "flr bus");
  EXPECT_EQ(gpu.sriov_totalvfs, std::nullopt);
  EXPECT_EQ(gpu.sriov_numvfs, std::nullopt);
  EXPECT_TRUE(gpu.virtfns.empty());
  EXPECT_EQ(gpu.physfn, std::nullopt);
  EXPECT_TRUE(gpu.is_gpu());
  EXPECT_TRUE(gpu.is_display());
  EXPECT_FALSE(gpu.is_bridge());
  EXPECT_FALSE(gpu.on_vfio());
}

TEST_F(PciTest, ReadsTheOtherFunctions) {
  test::make_passthrough_host(host);
  const auto fns = discover();

  const auto &bridge = by_address(fns, test::kBridgeAddr);
  EXPECT_EQ(bridge.class_code, 0x060400u);
  EXPECT_EQ(bridge.driver, "pcieport");
  EXPECT_EQ(bridge.reset_method, ""); // no reset_method attribute
  EXPECT_EQ(bridge.revision, 0x01);
  EXPECT_TRUE(bridge.is_bridge());
  EXPECT_FALSE(bridge.is_gpu());

  const auto &audio = by_address(fns, test::kAudioAddr);
  EXPECT_EQ(audio.device_id, 0x22bc);
  EXPECT_EQ(audio.class_code, 0x040300u);
  EXPECT_EQ(audio.driver, "snd_hda_intel");
  EXPECT_EQ(audio.reset_method, "bus");
  EXPECT_TRUE(audio.is_gpu()); // any NVIDIA function counts
  EXPECT_FALSE(audio.is_display());

  const auto &nic = by_address(fns, test::kNicAddr);
  EXPECT_EQ(nic.vendor_id, 0x8086);
  EXPECT_EQ(nic.device_id, 0x1533);
  EXPECT_EQ(nic.subsystem_vendor_id, 0x8086);
  EXPECT_EQ(nic.subsystem_device_id, 0x0001);
  EXPECT_EQ(nic.revision, 0x03);
  EXPECT_EQ(nic.numa_node, -1);
  EXPECT_EQ(nic.iommu_group, 2);
  EXPECT_EQ(nic.group_members, std::vector<std::string>{test::kNicAddr});
  EXPECT_FALSE(nic.is_gpu());

  const auto &bare = by_address(fns, test::kBareAddr);
  EXPECT_EQ(bare.vendor_id, 0x1234);
  EXPECT_EQ(bare.device_id, 0x11e8);
  EXPECT_EQ(bare.class_code, 0x00ff00u);
  EXPECT_EQ(bare.driver, std::nullopt);
  EXPECT_EQ(bare.iommu_group, 3);
}

TEST_F(PciTest, DriverOverrideAndVfioDriverAreSeen) {
  test::make_passthrough_host(host);
  host.write_file("sys/devices/pci0000:00/0000:03:00.0/driver_override", "vfio-pci\n");
  host.symlink("sys/devices/pci0000:00/0000:03:00.0/driver", "../../../bus/pci/drivers/vfio-pci");
  const auto fns = discover();
  const auto &bare = by_address(fns, test::kBareAddr);
  EXPECT_EQ(bare.driver_override, "vfio-pci");
  EXPECT_EQ(bare.driver, "vfio-pci");
  EXPECT_TRUE(bare.on_vfio());
  // "(null)" and an empty override both mean none.
  host.write_file("sys/devices/pci0000:00/0000:03:00.0/driver_override", "\n");
  EXPECT_EQ(by_address(discover(), test::kBareAddr).driver_override, std::nullopt);
}

TEST_F(PciTest, StringsThatAreNotUtf8AreEscaped) {
  test::make_passthrough_host(host);
  host.write_file("sys/devices/pci0000:00/0000:03:00.0/driver_override", "\xff\xfe\n");
  host.write_file("sys/bus/pci/drivers/drv\xff/bind", "");
  host.remove("sys/devices/pci0000:00/0000:02:00.0/driver");
  host.symlink("sys/devices/pci0000:00/0000:02:00.0/driver", "../../../bus/pci/drivers/drv\xff");
  const auto fns = discover();
  EXPECT_EQ(by_address(fns, test::kBareAddr).driver_override, "\\xff\\xfe");
  EXPECT_EQ(by_address(fns, test::kNicAddr).driver, "drv\\xff");
  EXPECT_NO_THROW(device_json(by_address(fns, test::kNicAddr)).dump()) << "JSON takes UTF-8 only";
}

TEST_F(PciTest, CandidatesAreGpusUnlessAll) {
  test::make_passthrough_host(host);
  Sysfs sysfs(host.root());
  PciBus bus(sysfs, *names);
  auto gpus = bus.candidates(false);
  ASSERT_EQ(gpus.size(), 2u);
  EXPECT_EQ(gpus[0].address, test::kGpuAddr);
  EXPECT_EQ(gpus[1].address, test::kAudioAddr);
  EXPECT_EQ(bus.candidates(true).size(), 5u);
}

TEST_F(PciTest, GroupMembersAndCheapLookups) {
  test::make_passthrough_host(host);
  Sysfs sysfs(host.root());
  PciBus bus(sysfs, *names);
  EXPECT_EQ(bus.iommu_group_members(1),
            (std::vector<std::string>{test::kBridgeAddr, test::kGpuAddr, test::kAudioAddr}));
  EXPECT_EQ(bus.iommu_group_members(3), std::vector<std::string>{test::kBareAddr});
  EXPECT_TRUE(bus.iommu_group_members(99).empty());
  EXPECT_TRUE(bus.iommu_group_members(-1).empty());
  EXPECT_EQ(bus.driver_of(test::kNicAddr), "igb");
  EXPECT_EQ(bus.driver_of(test::kBareAddr), std::nullopt);
  EXPECT_EQ(bus.driver_of("0000:09:00.0"), std::nullopt);
  EXPECT_EQ(bus.iommu_group_of(test::kAudioAddr), 1);
  EXPECT_EQ(bus.iommu_group_of("0000:09:00.0"), std::nullopt);
}

TEST_F(PciTest, FindFunctionSearchesTheSortedList) {
  test::make_passthrough_host(host);
  Sysfs sysfs(host.root());
  PciBus bus(sysfs, *names);
  const auto functions = bus.read_all();
  ASSERT_GE(functions.size(), 2u);
  for (const auto &fn : functions)
    EXPECT_EQ(find_function(functions, fn.address), &fn) << fn.address;
  EXPECT_EQ(find_function(functions, "0000:00:00.0"), nullptr) << "before the first";
  EXPECT_EQ(find_function(functions, "ffff:ff:1f.7"), nullptr) << "after the last";
  EXPECT_EQ(find_function(functions, functions.front().address + "0"), nullptr) << "between two";
  EXPECT_EQ(find_function({}, test::kNicAddr), nullptr);
}

TEST_F(PciTest, FindNormalisesAndReportsAbsence) {
  test::make_passthrough_host(host);
  host.add_function(test::make_fn("0000:a2:00.0", 0x10de, 0x26b9, 0x030200, std::nullopt, 7));
  Sysfs sysfs(host.root());
  PciBus bus(sysfs, *names);
  auto gpu = bus.find(test::kGpuAddr);
  ASSERT_TRUE(gpu);
  EXPECT_EQ(gpu->device_id, 0x27b8);
  auto upper = bus.find("0000:A2:00.0");
  ASSERT_TRUE(upper);
  EXPECT_EQ(upper->address, "0000:a2:00.0");
  EXPECT_EQ(upper->iommu_group, 7);
  EXPECT_EQ(bus.find("0000:09:00.0"), std::nullopt);
}

TEST_F(PciTest, MalformedAddressesThrowInvalidPciAddress) {
  test::make_passthrough_host(host);
  Sysfs sysfs(host.root());
  PciBus bus(sysfs, *names);
  for (const char *bad : {"", "01:00.0", "0000:01:00.8", "0000:01:00", "../../etc/pa", "0000:01:00.0/..",
                          "0000-01-00.0", "zzzz:01:00.0"}) {
    SCOPED_TRACE(bad);
    expect_errc([&] { (void)bus.find(bad); }, Errc::InvalidPciAddress);
    expect_errc([&] { (void)bus.driver_of(bad); }, Errc::InvalidPciAddress);
    expect_errc([&] { (void)bus.iommu_group_of(bad); }, Errc::InvalidPciAddress);
  }
}

TEST_F(PciTest, SriovFactsOfPfsAndVfs) {
  test::make_vgpu_host(host);
  const auto fns = discover();
  EXPECT_EQ(fns.size(), 66u);
  const auto &pf = by_address(fns, test::kPf0Addr);
  EXPECT_EQ(pf.sriov_totalvfs, 32u);
  EXPECT_EQ(pf.sriov_numvfs, 32u);
  ASSERT_EQ(pf.virtfns.size(), 32u);
  // virtfn index order, not name order (virtfn10 sorts before virtfn2 as text)
  EXPECT_EQ(pf.virtfns[0], "0000:a2:00.4");
  EXPECT_EQ(pf.virtfns[2], "0000:a2:00.6");
  EXPECT_EQ(pf.virtfns[4], "0000:a2:01.0");
  EXPECT_EQ(pf.virtfns[10], "0000:a2:01.6");
  EXPECT_EQ(pf.virtfns[31], "0000:a2:04.3");
  for (unsigned i = 0; i < 32; ++i)
    EXPECT_EQ(pf.virtfns[i], test::vf_address(test::kPf0Addr, i));
  EXPECT_EQ(pf.physfn, std::nullopt);
  EXPECT_EQ(pf.iommu_group, 10);

  const auto &vf = by_address(fns, "0000:a2:01.6");
  EXPECT_EQ(vf.physfn, test::kPf0Addr);
  EXPECT_EQ(vf.driver, std::nullopt);
  EXPECT_EQ(vf.iommu_group, 110);
  EXPECT_EQ(vf.group_members, std::vector<std::string>{"0000:a2:01.6"});
  EXPECT_EQ(vf.sriov_totalvfs, std::nullopt);
  EXPECT_TRUE(vf.virtfns.empty());

  const auto &pf1 = by_address(fns, test::kPf1Addr);
  EXPECT_EQ(pf1.numa_node, 1);
  EXPECT_EQ(pf1.virtfns.front(), "0000:c1:00.4");
}

TEST_F(PciTest, OddContentNeverThrows) {
  const std::string d = "sys/devices/pci0000:00/0000:05:00.0/";
  host.symlink("sys/bus/pci/devices/0000:05:00.0", "../../../devices/pci0000:00/0000:05:00.0");
  host.write_file(d + "vendor", "garbage\n");
  host.write_file(d + "device", "0x123456\n"); // too wide for 16 bits
  host.write_file(d + "subsystem_vendor", "0x\n");
  host.write_file(d + "subsystem_device", "");
  host.write_file(d + "class", "0xzz0000\n");
  host.write_file(d + "revision", "0x1ff\n");
  host.write_file(d + "numa_node", "abc\n");
  host.write_file(d + "driver_override", "(null)\n");
  host.write_file(d + "sriov_totalvfs", "lots\n");
  host.write_file(d + "sriov_numvfs", "-1\n");
  host.symlink(d + "iommu_group", "../../../kernel/iommu_groups/notanumber");
  host.symlink(d + "virtfnX", "../0000:05:00.1");
  host.symlink(d + "virtfn0", "../not-an-address");
  host.symlink(d + "virtfn1", "../0000:05:00.2");
  host.symlink(d + "physfn", "../nonsense");
  // Entries that are not functions, and one whose device vanished.
  host.write_file("sys/bus/pci/devices/garbage", "x");
  host.symlink("sys/bus/pci/devices/pci0000:00", "../../../devices/pci0000:00");
  host.symlink("sys/bus/pci/devices/0000:06:00.0", "../../../devices/pci0000:00/0000:06:00.0");

  std::vector<PciFunction> fns;
  ASSERT_NO_THROW(fns = discover());
  ASSERT_EQ(fns.size(), 1u);
  const auto &f = fns[0];
  EXPECT_EQ(f.address, "0000:05:00.0");
  EXPECT_EQ(f.vendor_id, 0);
  EXPECT_EQ(f.device_id, 0);
  EXPECT_EQ(f.subsystem_vendor_id, 0);
  EXPECT_EQ(f.subsystem_device_id, 0);
  EXPECT_EQ(f.class_code, 0u);
  EXPECT_EQ(f.revision, 0);
  EXPECT_EQ(f.numa_node, -1);
  EXPECT_EQ(f.driver_override, std::nullopt);
  EXPECT_EQ(f.iommu_group, std::nullopt);
  EXPECT_TRUE(f.group_members.empty());
  EXPECT_EQ(f.sriov_totalvfs, std::nullopt);
  EXPECT_EQ(f.sriov_numvfs, std::nullopt);
  EXPECT_EQ(f.virtfns, std::vector<std::string>{"0000:05:00.2"});
  EXPECT_EQ(f.physfn, std::nullopt);
  EXPECT_EQ(f.reset_method, "");
}

TEST_F(PciTest, NamesComeFromThePciNames) {
  test::make_passthrough_host(host);
  names = std::make_unique<FakeNames>();
  const auto fns = discover();
  EXPECT_EQ(by_address(fns, test::kGpuAddr).vendor_name, "NVIDIA Corporation");
  EXPECT_EQ(by_address(fns, test::kGpuAddr).device_name, "AD104GL [L4]");
  EXPECT_EQ(by_address(fns, test::kNicAddr).vendor_name, "vendor-8086");
  EXPECT_EQ(by_address(fns, test::kNicAddr).device_name, "device-8086:1533");
}

TEST(PciNamesTest, NoNamesAreEmpty) {
  auto n = make_no_names();
  EXPECT_EQ(n->vendor(0x8086), "");
  EXPECT_EQ(n->device(0x8086, 0x1533), "");
}

TEST(PciNamesTest, HwdbKnowsWellKnownIds) {
  if (!std::filesystem::exists("/usr/lib/udev/hwdb.bin") && !std::filesystem::exists("/etc/udev/hwdb.bin"))
    GTEST_SKIP() << "no udev hwdb.bin on this machine (install udev / run systemd-hwdb update)";
  auto n = make_hwdb_names();
  EXPECT_NE(n->vendor(0x8086).find("Intel"), std::string::npos) << n->vendor(0x8086);
  EXPECT_NE(n->vendor(0x10de).find("NVIDIA"), std::string::npos) << n->vendor(0x10de);
  EXPECT_NE(n->device(0x8086, 0x1533).find("I210"), std::string::npos) << n->device(0x8086, 0x1533);
  // Unknown ids answer empty names, never throw.
  EXPECT_EQ(n->device(0x10de, 0xfffe), "");
  EXPECT_EQ(n->vendor(0x0002), "");
}

// ---- helpers ------------------------------------------------------------------------------------------------

TEST(PciFormat, HexAndPaths) {
  EXPECT_EQ(hex4(0x10de), "10de");
  EXPECT_EQ(hex4(0x0001), "0001");
  EXPECT_EQ(hex4(0xABCD), "abcd");
  EXPECT_EQ(class_hex(0x030000), "0x030000");
  EXPECT_EQ(class_hex(0x0c0330), "0x0c0330");
  EXPECT_EQ(pci_device_path("0000:a2:00.0"), "sys/bus/pci/devices/0000:a2:00.0");
  EXPECT_STREQ(gpu_mode_name(GpuMode::None), "none");
  EXPECT_STREQ(gpu_mode_name(GpuMode::Passthrough), "passthrough");
  EXPECT_STREQ(gpu_mode_name(GpuMode::Vgpu), "vgpu");
}

TEST(PciPredicates, ClassesAndVendors) {
  struct Case {
    std::uint16_t vendor;
    std::uint32_t class_code;
    std::optional<std::string> driver;
    bool gpu, display, bridge, vfio;
  };
  const Case cases[] = {
      {0x1002, 0x030000, "amdgpu", true, true, false, false},       // VGA
      {0x8086, 0x030200, std::nullopt, true, true, false, false},   // 3D controller
      {0x1af4, 0x030100, std::nullopt, false, false, false, false}, // XGA is not a GPU here
      {0x10de, 0x040300, "vfio-pci", true, false, false, true},     // NVIDIA audio
      {0x8086, 0x060400, "pcieport", false, false, true, false},
      {0x8086, 0x060000, std::nullopt, false, false, true, false},
      {0x8086, 0x020000, "vfio-pci-core", false, false, false, false},
  };
  for (const auto &c : cases) {
    PciFunction f;
    f.vendor_id = c.vendor;
    f.class_code = c.class_code;
    f.driver = c.driver;
    SCOPED_TRACE(hex4(c.vendor) + " " + class_hex(c.class_code));
    EXPECT_EQ(f.is_gpu(), c.gpu);
    EXPECT_EQ(f.is_display(), c.display);
    EXPECT_EQ(f.is_bridge(), c.bridge);
    EXPECT_EQ(f.on_vfio(), c.vfio);
  }
}

// ---- check_host ---------------------------------------------------------------------------------------------

TEST_F(PciTest, CheckPassthroughHost) {
  test::make_passthrough_host(host);
  Sysfs sysfs(host.root());
  auto r = check_host(sysfs, PciBus(sysfs, *names).discover(), 0);
  EXPECT_TRUE(r.iommu_enabled);
  EXPECT_TRUE(r.vfio_pci_available);
  EXPECT_TRUE(r.vfio_iommu_type1_loaded);
  EXPECT_TRUE(r.vfio_available());
  EXPECT_EQ(r.hugepages_total, 0u);
  EXPECT_EQ(r.hugepages_free, 0u);
  EXPECT_EQ(r.hugepage_size_kb, 2048u);
  EXPECT_EQ(r.mdev_parent_count, 0u);
  EXPECT_EQ(r.gpu_count, 2u); // the L4 and its audio function
  EXPECT_EQ(r.gpu_mode, GpuMode::Passthrough);
  // Only the hugepage warning: the bridge and the audio function in the GPU's group are no conflict.
  ASSERT_EQ(r.problems.size(), 1u) << dump(r);
  EXPECT_TRUE(has_problem(r, "hugepages", "vm.nr_hugepages")) << dump(r);
}

TEST_F(PciTest, CheckVgpuHost) {
  test::make_vgpu_host(host);
  Sysfs sysfs(host.root());
  auto parents = sysfs.list("sys/class/mdev_bus").size(); // what MdevBus::parent_names() counts
  ASSERT_EQ(parents, 64u);
  auto r = check_host(sysfs, PciBus(sysfs, *names).discover(), static_cast<unsigned>(parents));
  EXPECT_TRUE(r.iommu_enabled);
  EXPECT_TRUE(r.vfio_available());
  EXPECT_EQ(r.hugepages_total, 1024u);
  EXPECT_EQ(r.hugepages_free, 1024u);
  EXPECT_EQ(r.mdev_parent_count, 64u);
  EXPECT_EQ(r.gpu_count, 66u); // 2 PFs + 64 VFs, all NVIDIA display functions
  EXPECT_EQ(r.gpu_mode, GpuMode::Vgpu);
  EXPECT_TRUE(r.problems.empty()) << dump(r);
}

TEST_F(PciTest, CheckNoIommuHost) {
  test::make_no_iommu_host(host);
  Sysfs sysfs(host.root());
  auto r = check_host(sysfs, PciBus(sysfs, *names).discover(), 0);
  EXPECT_FALSE(r.iommu_enabled);
  EXPECT_FALSE(r.vfio_pci_available);
  EXPECT_FALSE(r.vfio_iommu_type1_loaded);
  EXPECT_FALSE(r.vfio_available());
  EXPECT_EQ(r.hugepages_total, 0u);
  EXPECT_EQ(r.hugepage_size_kb, 0u); // no hugepages directory at all
  EXPECT_EQ(r.gpu_count, 1u);
  EXPECT_EQ(r.gpu_mode, GpuMode::None);
  EXPECT_TRUE(has_problem(r, "IOMMU", "intel_iommu=on or amd_iommu=on")) << dump(r);
  EXPECT_TRUE(has_problem(r, "IOMMU", "VT-d/AMD-Vi")) << dump(r);
  EXPECT_TRUE(has_problem(r, "vfio-pci", "modprobe vfio-pci; add it to /etc/modules-load.d/hostdev.conf")) << dump(r);
  EXPECT_TRUE(has_problem(r, "vfio_iommu_type1", "modprobe vfio_iommu_type1")) << dump(r);
  EXPECT_TRUE(has_problem(r, "hugepages", "vm.nr_hugepages")) << dump(r);
  EXPECT_TRUE(has_problem(r, "none can be handed", "")) << dump(r);
  EXPECT_EQ(r.problems.size(), 5u) << dump(r);
  for (const auto &p : r.problems)
    EXPECT_FALSE(p.hint.empty()) << p.message;
}

TEST_F(PciTest, IommuIsSeenThroughEitherDirectory) {
  host.vfio(true).hugepages(8, 8);
  host.add_function(test::make_fn(test::kGpuAddr, 0x1002, 0x744c, 0x030000, "amdgpu"));
  Sysfs sysfs(host.root());
  EXPECT_FALSE(check_host(sysfs, {}, 0).iommu_enabled);
  host.write_file("sys/kernel/iommu_groups/4/devices/.keep", "");
  EXPECT_TRUE(check_host(sysfs, {}, 0).iommu_enabled);
  host.remove("sys/kernel/iommu_groups/4");
  host.iommu(true); // sys/class/iommu/dmar0 only
  auto fns = PciBus(sysfs, *names).discover();
  auto r = check_host(sysfs, fns, 0);
  EXPECT_TRUE(r.iommu_enabled);
  EXPECT_EQ(r.gpu_count, 1u);
  EXPECT_EQ(r.gpu_mode, GpuMode::Passthrough);
  // ...but the GPU itself is in no group.
  EXPECT_TRUE(has_problem(r, "in no IOMMU group", "")) << dump(r);
}

TEST_F(PciTest, MissingType1IsAProblemButNotForTheMode) {
  test::make_passthrough_host(host);
  host.vfio(true, false);
  Sysfs sysfs(host.root());
  auto r = check_host(sysfs, PciBus(sysfs, *names).discover(), 0);
  EXPECT_TRUE(r.vfio_pci_available);
  EXPECT_FALSE(r.vfio_iommu_type1_loaded);
  EXPECT_FALSE(r.vfio_available());
  EXPECT_EQ(r.gpu_mode, GpuMode::Passthrough);
  EXPECT_TRUE(has_problem(r, "vfio_iommu_type1", "modprobe vfio_iommu_type1")) << dump(r);
  EXPECT_FALSE(has_problem(r, "vfio-pci", "")) << dump(r);
}

TEST_F(PciTest, DefaultHugepageSizePrefers2M) {
  host.hugepages(4, 2, 1048576).hugepages(512, 100, 2048);
  Sysfs sysfs(host.root());
  auto r = check_host(sysfs, {}, 0);
  EXPECT_EQ(r.hugepage_size_kb, 2048u);
  EXPECT_EQ(r.hugepages_total, 512u);
  EXPECT_EQ(r.hugepages_free, 100u);
  EXPECT_FALSE(has_problem(r, "hugepages", "")) << dump(r);

  host.remove("sys/kernel/mm/hugepages/hugepages-2048kB");
  r = check_host(sysfs, {}, 0);
  EXPECT_EQ(r.hugepage_size_kb, 1048576u);
  EXPECT_EQ(r.hugepages_total, 4u);
  EXPECT_EQ(r.hugepages_free, 2u);
}

TEST_F(PciTest, NoGpuMeansModeNone) {
  host.iommu(true).vfio(true).hugepages(16, 16);
  host.add_function(test::make_fn(test::kNicAddr, 0x8086, 0x1533, 0x020000, "igb", 2));
  Sysfs sysfs(host.root());
  auto r = check_host(sysfs, PciBus(sysfs, *names).discover(), 0);
  EXPECT_EQ(r.gpu_count, 0u);
  EXPECT_EQ(r.gpu_mode, GpuMode::None);
  ASSERT_EQ(r.problems.size(), 1u) << dump(r);
  EXPECT_TRUE(has_problem(r, "no GPU", "lspci")) << dump(r);
}

TEST_F(PciTest, GpuSharingItsGroupWithAnotherDeviceIsReported) {
  test::make_passthrough_host(host);
  host.add_function(test::make_fn("0000:04:00.0", 0x144d, 0xa808, 0x010802, "nvme", 1));
  Sysfs sysfs(host.root());
  auto r = check_host(sysfs, PciBus(sysfs, *names).discover(), 0);
  EXPECT_TRUE(has_problem(r, "shares IOMMU group 1 with 0000:04:00.0", "ACS")) << dump(r);
  EXPECT_FALSE(has_problem(r, test::kAudioAddr, "")) << dump(r);
}

// ---- the fake kernel (the fixture other suites rely on) ----------------------------------------------------------

TEST_F(PciTest, FakeKernelRebindsThroughOverrideAndProbe) {
  test::make_passthrough_host(host);
  Sysfs sysfs(host.root());
  sysfs.set_write_hook(host.kernel());
  PciBus bus(sysfs, *names);
  const std::string dev = pci_device_path(test::kNicAddr);
  sysfs.write(dev + "/driver_override", "vfio-pci");
  sysfs.write(dev + "/driver/unbind", test::kNicAddr);
  EXPECT_EQ(bus.driver_of(test::kNicAddr), std::nullopt);
  sysfs.write("sys/bus/pci/drivers_probe", test::kNicAddr);
  EXPECT_EQ(bus.driver_of(test::kNicAddr), "vfio-pci");
  EXPECT_TRUE(sysfs.exists("dev/vfio/2"));
  EXPECT_EQ(bus.find(test::kNicAddr)->driver_override, "vfio-pci");
  // back to the host driver
  sysfs.write("sys/bus/pci/drivers/vfio-pci/unbind", test::kNicAddr);
  EXPECT_FALSE(sysfs.exists("dev/vfio/2"));
  sysfs.write(dev + "/driver_override", "\n");
  sysfs.write("sys/bus/pci/drivers_probe", test::kNicAddr);
  EXPECT_EQ(bus.driver_of(test::kNicAddr), "igb");
  EXPECT_EQ(bus.find(test::kNicAddr)->driver_override, std::nullopt);
  EXPECT_EQ(host.writes().front(), dev + "/driver_override=vfio-pci");
  EXPECT_EQ(host.writes().size(), 6u);
}

TEST_F(PciTest, FakeKernelFailureKnobs) {
  test::make_passthrough_host(host);
  host.fail_writes("driver_override", EBUSY).delay_writes("drivers_probe", std::chrono::milliseconds(300));
  Sysfs sysfs(host.root());
  sysfs.set_write_hook(host.kernel());
  PciBus bus(sysfs, *names);
  expect_errc([&] { sysfs.write(pci_device_path(test::kBareAddr) + "/driver_override", "vfio-pci"); },
              Errc::KernelError);
  EXPECT_EQ(bus.find(test::kBareAddr)->driver_override, std::nullopt); // restored
  expect_errc([&] { sysfs.write("sys/bus/pci/drivers_probe", test::kBareAddr, std::chrono::milliseconds(20)); },
              Errc::Timeout);
}

TEST_F(PciTest, FakeKernelChangesSriovNumvfs) {
  host.iommu(true).vfio(true).driver("nvidia");
  auto pf = test::make_fn(test::kPf0Addr, 0x10de, 0x26b9, 0x030200, "nvidia", 10);
  pf.sriov_totalvfs = 16;
  host.add_function(pf);
  Sysfs sysfs(host.root());
  sysfs.set_write_hook(host.kernel());
  PciBus bus(sysfs, *names);
  sysfs.write(pci_device_path(test::kPf0Addr) + "/sriov_numvfs", "4");
  auto f = bus.find(test::kPf0Addr);
  EXPECT_EQ(f->sriov_numvfs, 4u);
  EXPECT_EQ(f->virtfns, (std::vector<std::string>{"0000:a2:00.4", "0000:a2:00.5", "0000:a2:00.6", "0000:a2:00.7"}));
  EXPECT_EQ(bus.find("0000:a2:00.7")->physfn, test::kPf0Addr);
  expect_errc([&] { sysfs.write(pci_device_path(test::kPf0Addr) + "/sriov_numvfs", "2"); }, Errc::KernelError);
  expect_errc([&] { sysfs.write(pci_device_path(test::kPf0Addr) + "/sriov_numvfs", "0x"); }, Errc::KernelError);
  EXPECT_EQ(bus.find(test::kPf0Addr)->sriov_numvfs, 4u);
  sysfs.write(pci_device_path(test::kPf0Addr) + "/sriov_numvfs", "0");
  EXPECT_EQ(bus.find(test::kPf0Addr)->sriov_numvfs, 0u);
  EXPECT_EQ(bus.discover().size(), 1u);
}

} // namespace
