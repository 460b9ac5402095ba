// libFuzzer: path resolution beneath the sysfs root. Both resolvers (openat2 and the user-space walk) must
// give the same answer for every path, and nothing outside the root is ever read.
#include "core/sysfs.hpp"

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include <unistd.h>

namespace fs = std::filesystem;
using hostdev::core::Sysfs;

namespace {

struct Tree {
  fs::path base;
  std::unique_ptr<Sysfs> kernel, user;
  Tree() {
    char tmpl[] = "/dev/shm/hostdev-fuzz-sysfs-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr)
      std::abort();
    base = tmpl;
    const auto root = base / "root";
    fs::create_directories(root / "sys/devices/pci0000:00/0000:00:02.0");
    fs::create_directories(root / "sys/bus/pci/devices");
    fs::create_directories(root / "sys/bus/pci/drivers/e1000e");
    std::ofstream(root / "sys/devices/pci0000:00/0000:00:02.0/vendor") << "0x8086\n";
    fs::create_directory_symlink("../../../devices/pci0000:00/0000:00:02.0", root / "sys/bus/pci/devices/0000:00:02.0");
    fs::create_directory_symlink("../../../bus/pci/drivers/e1000e",
                                 root / "sys/devices/pci0000:00/0000:00:02.0/driver");
    std::ofstream(base / "secret") << "SECRET\n";
    fs::create_symlink("../../secret", root / "sys/escape");
    fs::create_symlink("/etc/hostname", root / "sys/absolute");
    fs::create_symlink("loop", root / "sys/loop");
    kernel = std::make_unique<Sysfs>(root.string(), Sysfs::Resolver::Kernel);
    user = std::make_unique<Sysfs>(root.string(), Sysfs::Resolver::Userspace);
  }
  // libFuzzer ends a timed run with exit(): the tree does not outlive it in /dev/shm.
  ~Tree() {
    kernel.reset();
    user.reset();
    std::error_code ec;
    fs::remove_all(base, ec);
  }
  Tree(const Tree &) = delete;
  Tree &operator=(const Tree &) = delete;
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  static Tree tree;
  if (size > 512)
    return 0;
  const std::string path(reinterpret_cast<const char *>(data), size);
  const auto a = tree.kernel->read(path), b = tree.user->read(path);
  if (a != b)
    std::abort(); // the resolvers disagree
  if (a && a->find("SECRET") != std::string::npos)
    std::abort(); // escaped the root
  if (tree.kernel->exists(path) != tree.user->exists(path) || tree.kernel->is_dir(path) != tree.user->is_dir(path))
    std::abort();
  if (tree.kernel->link_name(path) != tree.user->link_name(path))
    std::abort();
  return 0;
}
