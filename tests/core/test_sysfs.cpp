#include "core/error.hpp"
#include "core/sysfs.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

namespace fs = std::filesystem;
using namespace hostdev::core;
using namespace std::chrono_literals;

namespace {

// Every test runs with both resolvers: openat2 and the user-space walk used where openat2 is refused.
class SysfsTest : public ::testing::TestWithParam<Sysfs::Resolver> {
protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hostdev-sysfs-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    base_ = tmpl;
    root_ = base_ / "root";
    fs::create_directories(root_ / "sys/bus/pci/drivers/e1000e");
    fs::create_directories(root_ / "sys/devices/pci0000:00/0000:00:02.0");
    put("sys/devices/pci0000:00/0000:00:02.0/vendor", "0x8086\n");
    put("sys/devices/pci0000:00/0000:00:02.0/driver_override", "(null)\n");
    fs::create_directories(root_ / "sys/bus/pci/devices");
    fs::create_directory_symlink("../../../devices/pci0000:00/0000:00:02.0",
                                 root_ / "sys/bus/pci/devices/0000:00:02.0");
    fs::create_directory_symlink("../../../bus/pci/drivers/e1000e",
                                 root_ / "sys/devices/pci0000:00/0000:00:02.0/driver");
    // Outside the root: must stay unreachable.
    std::ofstream(base_ / "secret") << "top secret\n";
    fs::create_symlink("../../secret", root_ / "sys/escape");
    fs::create_symlink("/etc/hostname", root_ / "sys/absolute");
  }
  void TearDown() override { fs::remove_all(base_); }
  void put(const std::string &rel, const std::string &content) { std::ofstream(root_ / rel) << content; }
  std::string get(const std::string &rel) {
    std::ifstream in(root_ / rel);
    return {std::istreambuf_iterator<char>(in), {}};
  }
  fs::path base_, root_;
};

} // namespace

TEST_P(SysfsTest, ReadsThroughRelativeSymlinksBeneathTheRoot) {
  Sysfs s(root_.string(), GetParam());
  EXPECT_EQ(s.read("sys/bus/pci/devices/0000:00:02.0/vendor"), "0x8086\n");
  EXPECT_EQ(s.read_trimmed("/sys/bus/pci/devices/0000:00:02.0/vendor"), "0x8086");
  EXPECT_EQ(s.link_name("sys/bus/pci/devices/0000:00:02.0/driver"), "e1000e");
  EXPECT_EQ(s.readlink("sys/bus/pci/devices/0000:00:02.0"), "../../../devices/pci0000:00/0000:00:02.0");
  EXPECT_TRUE(s.is_dir("sys/bus/pci/devices/0000:00:02.0"));
  EXPECT_TRUE(s.exists("sys/bus/pci/devices/0000:00:02.0/vendor"));
  EXPECT_FALSE(s.is_dir("sys/bus/pci/devices/0000:00:02.0/vendor"));
  EXPECT_EQ(s.list("sys/bus/pci/devices"), std::vector<std::string>{"0000:00:02.0"});
  EXPECT_TRUE(s.list("sys/nope").empty());
  EXPECT_EQ(s.read("sys/nope"), std::nullopt);
}

TEST_P(SysfsTest, NothingEscapesTheRoot) {
  Sysfs s(root_.string(), GetParam());
  EXPECT_EQ(s.read("../secret"), std::nullopt);
  EXPECT_EQ(s.read("sys/../../secret"), std::nullopt);
  EXPECT_EQ(s.read("sys/escape"), std::nullopt);   // relative link leaving the root
  EXPECT_EQ(s.read("sys/absolute"), std::nullopt); // absolute link
  EXPECT_FALSE(s.exists("sys/escape"));
  EXPECT_TRUE(s.list("..").empty());
  EXPECT_EQ(s.readlink("../secret"), std::nullopt);
  EXPECT_THROW(s.write("../secret", "x"), Error);
  EXPECT_THROW(s.write("sys/escape", "x"), Error);
  std::ifstream in(base_ / "secret");
  std::string content{std::istreambuf_iterator<char>(in), {}};
  EXPECT_EQ(content, "top secret\n");
}

TEST_P(SysfsTest, WritesReplaceTheValueAndCallTheHook) {
  Sysfs s(root_.string(), GetParam());
  std::vector<std::string> seen;
  s.set_write_hook([&](const std::string &path, std::string_view value) {
    seen.push_back(path + "=" + std::string(value));
    return 0;
  });
  s.write("sys/bus/pci/devices/0000:00:02.0/driver_override", "vfio-pci");
  EXPECT_EQ(get("sys/devices/pci0000:00/0000:00:02.0/driver_override"), "vfio-pci");
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], "sys/bus/pci/devices/0000:00:02.0/driver_override=vfio-pci");
}

TEST_P(SysfsTest, WriteErrorsCarryTheKernelsReason) {
  Sysfs s(root_.string(), GetParam());
  s.set_write_hook([](const std::string &, std::string_view) { return EBUSY; });
  try {
    s.write("sys/bus/pci/devices/0000:00:02.0/driver_override", "vfio-pci");
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(e.code(), Errc::KernelError);
    EXPECT_NE(std::string(e.what()).find("busy"), std::string::npos) << e.what();
  }
  try {
    s.write("sys/bus/pci/devices/0000:00:02.0/absent", "1");
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(e.code(), Errc::KernelError);
  }
  EXPECT_FALSE(fs::exists(root_ / "sys/devices/pci0000:00/0000:00:02.0/absent")); // never created
}

TEST_P(SysfsTest, AWriteThatHangsBecomesTimeout) {
  Sysfs s(root_.string(), GetParam());
  auto release = std::make_shared<std::atomic<bool>>(false); // outlives the test: the writer is detached
  s.set_write_hook([release](const std::string &, std::string_view) {
    while (!*release)
      std::this_thread::sleep_for(1ms);
    return 0;
  });
  try {
    s.write("sys/bus/pci/devices/0000:00:02.0/driver_override", "vfio-pci", 50ms);
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(e.code(), Errc::Timeout);
    EXPECT_NE(std::string(e.what()).find("50 ms"), std::string::npos) << e.what();
  }
  *release = true;
  std::this_thread::sleep_for(20ms); // let the detached writer finish
}

TEST_P(SysfsTest, DisplayPath) {
  Sysfs s(root_.string(), GetParam());
  EXPECT_EQ(s.display_path("sys/bus/pci"), root_.string() + "/sys/bus/pci");
  Sysfs real("/");
  EXPECT_EQ(real.display_path("sys/bus/pci"), "/sys/bus/pci");
}

TEST_P(SysfsTest, ResolvesWithTheResolverAsked) {
  Sysfs s(root_.string(), GetParam());
  EXPECT_EQ(s.resolver(), GetParam());
}

TEST_P(SysfsTest, DotDotNeverClimbsAboveTheRoot) {
  Sysfs s(root_.string(), GetParam());
  fs::create_directories(root_ / "a/b");
  fs::create_directory_symlink("../../..", root_ / "a/b/up3");
  fs::create_directory_symlink("../..", root_ / "a/b/up2");
  std::ofstream(root_ / "top") << "at the root\n";
  EXPECT_EQ(s.read("a/b/up2/top"), "at the root\n");
  EXPECT_EQ(s.read("a/b/up3/secret"), std::nullopt);
  EXPECT_EQ(s.read("a/b/up3/root/top"), std::nullopt);
  EXPECT_FALSE(s.exists("a/b/up3"));
}

TEST_P(SysfsTest, WriteNeverFollowsALinkAtTheEnd) {
  Sysfs s(root_.string(), GetParam());
  fs::create_symlink("devices/pci0000:00/0000:00:02.0/driver_override", root_ / "sys/link");
  EXPECT_THROW(s.write("sys/link", "x"), Error);
  EXPECT_EQ(get("sys/devices/pci0000:00/0000:00:02.0/driver_override"), "(null)\n");
}

TEST_P(SysfsTest, ADirectoryHandleReadsItsEntriesAndNothingElse) {
  Sysfs sysfs(root_.string(), GetParam());
  const auto dir = sysfs.open_dir("sys/bus/pci/devices/0000:00:02.0"); // through the link, beneath the root
  ASSERT_TRUE(dir);
  EXPECT_EQ(dir->read_trimmed("vendor"), "0x8086");
  EXPECT_EQ(dir->link_name("driver"), "e1000e");
  EXPECT_EQ(dir->list(), (std::vector<std::string>{"driver", "driver_override", "vendor"}));
  EXPECT_FALSE(dir->read_trimmed("../../../../secret"));
  EXPECT_FALSE(dir->read_trimmed("driver/bind")) << "one entry only";
  EXPECT_FALSE(dir->read_trimmed(".."));
  EXPECT_FALSE(dir->read_trimmed("driver")) << "a link is never followed";
  EXPECT_FALSE(sysfs.open_dir("sys/escape")) << "not beneath the root";
  EXPECT_FALSE(sysfs.open_dir("sys/bus/pci/devices/0000:00:02.0/vendor")) << "not a directory";
}

TEST_P(SysfsTest, ConcurrentRenamesElsewhereNeverMakeAPathVanish) {
  // openat2(RESOLVE_BENEATH) answers EAGAIN when any rename on the system races a ".." step of the lookup (the
  // fixture's links are "../../../devices/..."); the store renames a file for every write. A path that exists
  // must still be found.
  Sysfs sysfs(root_.string(), GetParam());
  std::atomic<bool> stop{false}, started{false};
  std::thread renamer([&] {
    const auto a = base_ / "a", b = base_ / "b";
    std::ofstream(a) << "x";
    started = true;
    while (!stop) {
      fs::rename(a, b);
      fs::rename(b, a);
    }
  });
  while (!started)
    std::this_thread::yield();
  int missed = 0, reads = 0;
  for (const auto end = std::chrono::steady_clock::now() + 1s; std::chrono::steady_clock::now() < end; ++reads)
    if (!sysfs.read_trimmed("sys/bus/pci/devices/0000:00:02.0/vendor"))
      ++missed;
  stop = true;
  renamer.join();
  EXPECT_EQ(missed, 0) << "of " << reads << " reads";
}

TEST(SysfsRoot, AutoPicksTheKernelResolverWhereOpenat2Works) {
  Sysfs s("/");
  EXPECT_EQ(s.resolver(), Sysfs::Resolver::Kernel) << "this kernel has openat2";
}

INSTANTIATE_TEST_SUITE_P(Resolvers, SysfsTest, ::testing::Values(Sysfs::Resolver::Kernel, Sysfs::Resolver::Userspace),
                         [](const auto &param_info) {
                           return param_info.param == Sysfs::Resolver::Kernel ? std::string("Kernel")
                                                                              : std::string("Userspace");
                         });

TEST(SysfsRoot, MissingRootIsInvalidArgument) {
  try {
    Sysfs s("/nonexistent/hostdev/root");
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(e.code(), Errc::InvalidArgument);
  }
}
