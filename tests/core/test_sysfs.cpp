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

class SysfsTest : public ::testing::Test {
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
    fs::create_directory_symlink("../../../devices/pci0000:00/0000:00:02.0", root_ / "sys/bus/pci/devices/0000:00:02.0");
    fs::create_directory_symlink("../../../bus/pci/drivers/e1000e", root_ / "sys/devices/pci0000:00/0000:00:02.0/driver");
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

TEST_F(SysfsTest, ReadsThroughRelativeSymlinksBeneathTheRoot) {
  Sysfs s(root_.string());
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

TEST_F(SysfsTest, NothingEscapesTheRoot) {
  Sysfs s(root_.string());
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

TEST_F(SysfsTest, WritesReplaceTheValueAndCallTheHook) {
  Sysfs s(root_.string());
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

TEST_F(SysfsTest, WriteErrorsCarryTheKernelsReason) {
  Sysfs s(root_.string());
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

TEST_F(SysfsTest, AWriteThatHangsBecomesTimeout) {
  Sysfs s(root_.string());
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

TEST_F(SysfsTest, DisplayPath) {
  Sysfs s(root_.string());
  EXPECT_EQ(s.display_path("sys/bus/pci"), root_.string() + "/sys/bus/pci");
  Sysfs real("/");
  EXPECT_EQ(real.display_path("sys/bus/pci"), "/sys/bus/pci");
}

TEST(SysfsRoot, MissingRootIsInvalidArgument) {
  try {
    Sysfs s("/nonexistent/hostdev/root");
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(e.code(), Errc::InvalidArgument);
  }
}
