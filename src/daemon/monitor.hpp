// Kernel uevents for the bus thread's loop. On the real /sys: a NETLINK_KOBJECT_UEVENT socket on the kernel's own
// multicast group (not udev's: the lab and minimal hosts run no udevd, and hostdev needs no udev rules to have
// run), only datagrams from the kernel believed. Over a fixture tree (tests): an AF_UNIX datagram socket where the
// tests, playing the kernel, send uevents in the kernel's format, only from the daemon's own uid or root. Either
// way each relevant event becomes a core::ModelChange: what the model must read again (see core/model.hpp).
#pragma once

#include "core/model.hpp"

#include <sys/socket.h>

#include <memory>
#include <string>

namespace hostdev::daemon {

class UeventMonitor {
public:
  // The kernel's uevents (a 4 MiB receive buffer when allowed). Throws std::system_error.
  UeventMonitor();
  // Uevents sent to an AF_UNIX datagram socket made at `socket_path` (mode 0600). Throws std::system_error.
  explicit UeventMonitor(const std::string &socket_path);
  ~UeventMonitor();
  UeventMonitor(const UeventMonitor &) = delete;
  UeventMonitor &operator=(const UeventMonitor &) = delete;

  int fd() const noexcept { return fd_; }

  struct Batch {
    unsigned received = 0; // datagrams believed
    unsigned relevant = 0; // of those, about PCI functions, mdevs and their parents
    bool overrun = false;  // some were dropped (ENOBUFS, a truncated datagram): what changed is unknown
    core::ModelChange change;
  };
  // Reads every datagram pending, without blocking.
  Batch drain();

private:
  bool believe(const ::msghdr &msg) const;
  int fd_ = -1;
  bool netlink_ = true;
  std::string socket_path_; // unlinked when the monitor goes
  // One datagram at a time. On the heap, not in thread-local storage: a thread_local array of the executable is
  // static TLS, which glibc allocates and zeroes on every thread's stack (64 KiB resident in each of the workers).
  static constexpr std::size_t kBufSize = 64 * 1024;
  std::unique_ptr<char[]> buf_{new char[kBufSize]};
};

} // namespace hostdev::daemon
