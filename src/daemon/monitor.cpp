#include "daemon/monitor.hpp"

#include "core/uevent.hpp"

#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

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

UeventMonitor::~UeventMonitor() {
  if (fd_ >= 0)
    ::close(fd_);
}

UeventMonitor::Batch UeventMonitor::drain() {
  Batch batch;
  static thread_local char buf[64 * 1024];
  for (;;) {
    sockaddr_nl from{};
    iovec iov{buf, sizeof buf};
    msghdr msg{};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    const ssize_t n = ::recvmsg(fd_, &msg, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == ENOBUFS) {
        batch.overrun = true;
        continue;
      }
      return batch; // EAGAIN: nothing more
    }
    // Only the kernel (port id 0) speaks on this group; anything else is not to be believed.
    if (from.nl_pid != 0)
      continue;
    ++batch.received;
    if ((msg.msg_flags & MSG_TRUNC) != 0) {
      batch.overrun = true; // a datagram larger than any uevent: read the host again rather than guess
      continue;
    }
    if (auto ev = core::parse_uevent(std::string_view(buf, static_cast<std::size_t>(n))))
      if (core::uevent_concerns_host_model(*ev))
        ++batch.relevant;
  }
}

} // namespace hostdev::daemon
