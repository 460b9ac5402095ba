// The one description of host objects as JSON: `hostdevctl inspect --json` prints it, and hostdevd's
// ListAvailable entries carry the same keys (converted to D-Bus values by the daemon).
#pragma once

#include "core/mdev.hpp"
#include "core/vendor_vgpu.hpp"
#include "core/pci.hpp"

#include <nlohmann/json.hpp>

#include <vector>

namespace hostdev::core {

// One PCI function: ids, names, class, IOMMU group and members, driver and override, NUMA node, reset method,
// SR-IOV facts. Absent facts are null.
nlohmann::json device_json(const PciFunction &fn);
// The host report, the functions given, every mdev parent with its profiles and every vendor-VFIO VF with its
// current and creatable types.
nlohmann::json inspect_json(const HostReport &report, const std::vector<PciFunction> &devices,
                            const std::vector<MdevParent> &parents, const std::vector<VendorVf> &vendor_vfs = {});

} // namespace hostdev::core
