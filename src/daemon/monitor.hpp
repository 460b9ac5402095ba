// Kernel uevents for the bus thread's loop: a NETLINK_KOBJECT_UEVENT socket on the kernel's own multicast
// group (not udev's: the lab and minimal hosts run no udevd, and hostdev needs no udev rules to have run). It
// tells the daemon that the host changed under it; the daemon then reads the host again (see daemon.cpp).
#pragma once

namespace hostdev::daemon {

class UeventMonitor {
public:
  // Opens and binds the socket (a 4 MiB receive buffer when allowed). Throws std::system_error.
  UeventMonitor();
  ~UeventMonitor();
  UeventMonitor(const UeventMonitor &) = delete;
  UeventMonitor &operator=(const UeventMonitor &) = delete;

  int fd() const noexcept { return fd_; }

  struct Batch {
    unsigned received = 0; // datagrams from the kernel
    unsigned relevant = 0; // of those, about PCI functions, mdevs and their parents
    bool overrun = false;  // the kernel dropped some (ENOBUFS): what changed is unknown
  };
  // Reads every datagram pending, without blocking. Datagrams not sent by the kernel are ignored.
  Batch drain();

private:
  int fd_ = -1;
};

} // namespace hostdev::daemon
