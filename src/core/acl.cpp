#include "core/acl.hpp"

#include "core/error.hpp"
#include "core/fd.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>

namespace hostdev::core {
namespace {

// The kernel's xattr form of an access ACL (linux/posix_acl_xattr.h): a version, then entries sorted by tag and id.
constexpr const char *kAclXattr = "system.posix_acl_access";
constexpr std::uint32_t kAclVersion = 2;
enum Tag : std::uint16_t { UserObj = 0x01, User = 0x02, GroupObj = 0x04, Group = 0x08, Mask = 0x10, Other = 0x20 };
constexpr std::uint16_t kRw = 4 | 2; // read, write
constexpr std::uint32_t kUndefinedId = 0xffffffffU;

struct Entry {
  std::uint16_t tag = 0, perm = 0;
  std::uint32_t id = kUndefinedId;
};

std::string proc_path(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

Fd open_node(const Sysfs &sysfs, const std::string &node) {
  Fd fd(sysfs.open_beneath(node, O_PATH | O_NOFOLLOW));
  if (fd.get() < 0)
    fail(Errc::KernelError, "cannot reach " + sysfs.display_path(node) + ": " + std::strerror(errno));
  return fd;
}

std::vector<Entry> read_acl(const Fd &fd) {
  const auto path = proc_path(fd.get());
  std::vector<char> buf(4096);
  ssize_t n = ::getxattr(path.c_str(), kAclXattr, buf.data(), buf.size());
  std::vector<Entry> out;
  if (n < 0) {
    if (errno != ENODATA)
      fail(Errc::KernelError, std::string("cannot read the ACL: ") + std::strerror(errno));
    // No ACL: the mode says it all.
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
      fail(Errc::KernelError, std::string("cannot stat the node: ") + std::strerror(errno));
    out.push_back({UserObj, static_cast<std::uint16_t>((st.st_mode >> 6) & 7), kUndefinedId});
    out.push_back({GroupObj, static_cast<std::uint16_t>((st.st_mode >> 3) & 7), kUndefinedId});
    out.push_back({Other, static_cast<std::uint16_t>(st.st_mode & 7), kUndefinedId});
    return out;
  }
  if (n < 4 || (n - 4) % 8 != 0)
    fail(Errc::KernelError, "the node's ACL is malformed");
  std::uint32_t version = 0;
  std::memcpy(&version, buf.data(), 4);
  if (version != kAclVersion)
    fail(Errc::KernelError, "the node's ACL has version " + std::to_string(version));
  for (ssize_t off = 4; off < n; off += 8) {
    Entry e;
    std::memcpy(&e.tag, buf.data() + off, 2);
    std::memcpy(&e.perm, buf.data() + off + 2, 2);
    std::memcpy(&e.id, buf.data() + off + 4, 4);
    out.push_back(e);
  }
  return out;
}

void write_acl(const Fd &fd, std::vector<Entry> entries) {
  const bool extended =
      std::any_of(entries.begin(), entries.end(), [](const Entry &e) { return e.tag == User || e.tag == Group; });
  const auto path = proc_path(fd.get());
  if (!extended) {
    // Only the mode's entries (and a mask) remain: no ACL at all, as before the grant. While the ACL was there the
    // mode's group bits showed the mask; they get the owning group's own permissions back.
    if (::removexattr(path.c_str(), kAclXattr) != 0 && errno != ENODATA)
      fail(Errc::KernelError, std::string("cannot remove the ACL: ") + std::strerror(errno));
    struct stat st {};
    auto group = std::find_if(entries.begin(), entries.end(), [](const Entry &e) { return e.tag == GroupObj; });
    if (group != entries.end() && ::fstat(fd.get(), &st) == 0) {
      const mode_t mode = (st.st_mode & 07707) | static_cast<mode_t>((group->perm & 7) << 3);
      if (mode != (st.st_mode & 07777) && ::chmod(path.c_str(), mode) != 0)
        fail(Errc::KernelError, std::string("cannot restore the mode: ") + std::strerror(errno));
    }
    return;
  }
  if (std::none_of(entries.begin(), entries.end(), [](const Entry &e) { return e.tag == Mask; }))
    entries.push_back({Mask, kRw, kUndefinedId});
  for (auto &e : entries)
    if (e.tag == Mask)
      e.perm |= kRw;
  std::sort(entries.begin(), entries.end(),
            [](const Entry &a, const Entry &b) { return a.tag != b.tag ? a.tag < b.tag : a.id < b.id; });
  std::vector<char> buf(4 + 8 * entries.size());
  std::memcpy(buf.data(), &kAclVersion, 4);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    std::memcpy(buf.data() + 4 + 8 * i, &entries[i].tag, 2);
    std::memcpy(buf.data() + 6 + 8 * i, &entries[i].perm, 2);
    std::memcpy(buf.data() + 8 + 8 * i, &entries[i].id, 4);
  }
  if (::setxattr(path.c_str(), kAclXattr, buf.data(), buf.size(), 0) != 0)
    fail(Errc::KernelError, std::string("cannot set the ACL: ") + std::strerror(errno));
}

} // namespace

void grant_user_access(const Sysfs &sysfs, const std::string &node, std::uint32_t uid) {
  const auto fd = open_node(sysfs, node);
  try {
    auto entries = read_acl(fd);
    std::erase_if(entries, [&](const Entry &e) { return e.tag == User && e.id == uid; });
    entries.push_back({User, kRw, uid});
    write_acl(fd, std::move(entries));
  } catch (const Error &e) {
    fail(e.code(), sysfs.display_path(node) + ": " + e.what());
  }
}

void revoke_user_access(const Sysfs &sysfs, const std::string &node, std::uint32_t uid) {
  Fd fd(sysfs.open_beneath(node, O_PATH | O_NOFOLLOW));
  if (fd.get() < 0)
    return; // the node went with its device
  try {
    auto entries = read_acl(fd);
    const auto before = entries.size();
    std::erase_if(entries, [&](const Entry &e) { return e.tag == User && e.id == uid; });
    if (entries.size() != before)
      write_acl(fd, std::move(entries));
  } catch (const Error &e) {
    fail(e.code(), sysfs.display_path(node) + ": " + e.what());
  }
}

bool has_user_access(const Sysfs &sysfs, const std::string &node, std::uint32_t uid) {
  Fd fd(sysfs.open_beneath(node, O_PATH | O_NOFOLLOW));
  if (fd.get() < 0)
    return false;
  const auto entries = read_acl(fd);
  return std::any_of(entries.begin(), entries.end(),
                     [&](const Entry &e) { return e.tag == User && e.id == uid && (e.perm & kRw) == kRw; });
}

} // namespace hostdev::core
