// Names of things on the host that the core works with: drivers and systemd units. (Bus, interface and polkit
// names are the daemon's and the CLI's: src/names.hpp.)
#pragma once

namespace hostdev::core {

inline constexpr const char *kVfioPciDriver = "vfio-pci";
inline constexpr const char *kPersistencedUnit = "nvidia-persistenced.service";

} // namespace hostdev::core
