// Kernel uevents (NETLINK_KOBJECT_UEVENT, the kernel's own multicast group): "ACTION@DEVPATH\0KEY=VALUE\0...".
// The daemon learns from them that the host changed under it (a driver bound by hand, a hot-added device, an
// mdev someone else made, a VF count changed). Parsing only: the bytes are untrusted.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace hostdev::core {

struct Uevent {
  std::string action;       // "add", "remove", "bind", "unbind", "change", "move", "online", "offline"
  std::string devpath;      // "/devices/pci0000:00/0000:00:02.0"
  std::string subsystem;    // "pci", "mdev", ...
  std::string driver;       // DRIVER=, "" when absent
  std::string name() const; // the last component of devpath ("0000:00:02.0", an mdev's UUID)
};

// Parses one datagram. nullopt for anything that is not a well-formed kernel uevent (a libudev message, a
// truncated header, a header that disagrees with its ACTION/DEVPATH keys, strings over 4 KiB or not UTF-8).
std::optional<Uevent> parse_uevent(std::string_view datagram);

} // namespace hostdev::core
