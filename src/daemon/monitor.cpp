#include "daemon/monitor.hpp"

#include "core/uevent.hpp"

#include <linux/netlink.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include <cerrno>
#include <string_view>
#include <system_error>

namespace hostdev::daemon {
namespace {

constexpr unsigned kKernelGroup = 1; // NETLINK_KOBJECT_UEVENT multicast group of the kernel (udev's is 2)
constexpr int kReceiveBuffer = 4 << 20;

} // namespace

UeventMonitor::UeventMonitor() {
  fd_ = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_KOBJECT_UEVENT);
  if (fd_ < 0)
    throw std::system_error(errno, std::system_category(), "uevent socket");
  // A burst (VFs enabled by the dozen) must not overflow the default buffer; as root the limit can be passed.
  if (::setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &kReceiveBuffer, sizeof kReceiveBuffer) != 0)
    (void)::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &kReceiveBuffer, sizeof kReceiveBuffer);
  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  addr.nl_groups = kKernelGroup;
  if (::bind(fd_, reinterpret_cast<const sockaddr *>(&addr), sizeof addr) != 0) {
    const int e = errno;
    ::close(fd_);
    throw std::system_error(e, std::system_category(), "binding the uevent socket");
  }
}

UeventMonitor::UeventMonitor(const std::string &socket_path) : netlink_(false) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof addr.sun_path)
    throw std::system_error(ENAMETOOLONG, std::system_category(), "uevent socket path");
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0)
    throw std::system_error(errno, std::system_category(), "uevent socket");
  const int on = 1;
  (void)::setsockopt(fd_, SOL_SOCKET, SO_PASSCRED, &on, sizeof on);
  (void)::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &kReceiveBuffer, sizeof kReceiveBuffer);
  (void)::unlink(socket_path.c_str()); // a socket left by an earlier daemon
  const mode_t old = ::umask(0177);
  const int rc = ::bind(fd_, reinterpret_cast<const sockaddr *>(&addr), sizeof addr);
  ::umask(old);
  if (rc != 0) {
    const int e = errno;
    ::close(fd_);
    throw std::system_error(e, std::system_category(), "binding " + socket_path);
  }
  socket_path_ = socket_path;
}

UeventMonitor::~UeventMonitor() {
  if (fd_ >= 0)
    ::close(fd_);
  if (!socket_path_.empty())
    (void)::unlink(socket_path_.c_str());
}

bool UeventMonitor::believe(const msghdr &msg) const {
  if (netlink_) // only the kernel (port id 0) speaks on this group; anything else is not to be believed
    return static_cast<const sockaddr_nl *>(msg.msg_name)->nl_pid == 0;
  for (auto *c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(const_cast<msghdr *>(&msg), c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
      ucred cred{};
      std::memcpy(&cred, CMSG_DATA(c), sizeof cred);
      return cred.uid == 0 || cred.uid == ::geteuid();
    }
  return false;
}

UeventMonitor::Batch UeventMonitor::drain() {
  Batch batch;
  for (;;) {
    sockaddr_storage from{};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
    iovec iov{buf_.get(), kBufSize};
    msghdr msg{};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    const ssize_t n = ::recvmsg(fd_, &msg, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == ENOBUFS) {
        batch.overrun = true;
        continue;
      }
      break; // EAGAIN: nothing more
    }
    if (!believe(msg))
      continue;
    ++batch.received;
    if ((msg.msg_flags & MSG_TRUNC) != 0) {
      batch.overrun = true; // a datagram larger than any uevent: read the host again rather than guess
      continue;
    }
    if (auto ev = core::parse_uevent(std::string_view(buf_.get(), static_cast<std::size_t>(n)))) {
      auto change = core::change_of(*ev);
      if (!change.empty()) {
        ++batch.relevant;
        batch.change.merge(change);
      }
    }
  }
  if (batch.overrun)
    batch.change.everything = true;
  return batch;
}

} // namespace hostdev::daemon
