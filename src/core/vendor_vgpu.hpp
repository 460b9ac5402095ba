// NVIDIA's vendor-specific VFIO framework (vGPU 17 and later, no mdev bus): each SR-IOV VF of a GPU stays on the
// vendor driver, which registers a VFIO device on it, and a vGPU is made by writing a type id to
// <VF>/nvidia/current_vgpu_type. The files, as the driver makes them:
//   nvidia/creatable_vgpu_types  (read-only) "ID    : vGPU Name" then "%-5d : %s" per type that can be created on
//                                this VF now; the list shrinks as the GPU fills, down to the bare header
//   nvidia/current_vgpu_type     (read-write) "0" = none; writing an id creates (EPERM when one exists), writing 0
//                                releases (EPERM when none; refused while the VMM has the device open)
//   nvidia/gpu_instance_id, placement_id, vgpu_params   newer drivers only: reported where present
// Everything read here is untrusted input: malformed lines are skipped, names made valid UTF-8 on one line.
#pragma once

#include "core/pci.hpp"
#include "core/sysfs.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace hostdev::core {

struct VgpuType {
  std::uint32_t id = 0;
  std::string name;            // "NVIDIA L40S-4Q", as the driver gives it
  unsigned framebuffer_mb = 0; // from the name (framebuffer_from_profile_name)

  bool operator==(const VgpuType &) const = default;
};

// The lines of creatable_vgpu_types after the header; lines that are not "<id> : <name>" are skipped, as is id 0.
std::vector<VgpuType> parse_creatable_vgpu_types(const std::string &text);

// The framebuffer a profile name states, in MB: "NVIDIA L40S-4Q" -> 4096, "L40S-48Q" -> 49152, "H200X-1-18C" (a MIG
// profile: 1 slice, 18 GB) -> 18432, "M60-0B" -> 512. 0 when the name states none.
unsigned framebuffer_from_profile_name(const std::string &name);

// The name without a leading vendor word: "NVIDIA L40S-1Q" -> "L40S-1Q", "GRID M60-0B" -> "M60-0B"; else the name.
std::string short_profile_name(const std::string &name);

// Whether `ref` (as a user writes it: "NVIDIA L40S-1Q", "L40S-1Q" or a type id "1147" / "nvidia-1147") names the
// type with `name` and `type_id`.
bool profile_matches(const std::string &ref, const std::string &name, const std::string &type_id);

struct VendorVf {
  std::string address;            // the VF
  std::string gpu;                // its PF (physfn), or the address itself when it has none
  std::uint32_t current_type = 0; // 0: no vGPU
  std::vector<VgpuType> creatable;
  std::optional<int> iommu_group;
  std::optional<std::string> gpu_instance_id, placement_id, vgpu_params; // newer drivers

  bool operator==(const VendorVf &) const = default;
};

class VendorVgpu {
public:
  explicit VendorVgpu(const Sysfs &sysfs) : sysfs_(sysfs) {}

  // Whether the function has the framework's files (nvidia/current_vgpu_type).
  bool is_vendor_vf(const std::string &address) const;
  // Every function of `functions` that is a vendor-VFIO VF, in their order.
  std::vector<VendorVf> list(const std::vector<PciFunction> &functions) const;
  std::optional<VendorVf> find(const std::string &address) const;
  std::uint32_t current_type(const std::string &address) const; // 0 when none (or unreadable)

  // Writes `type_id` to current_vgpu_type and reads it back. KernelError (with the kernel's reason) when refused,
  // AlreadyExists when the VF has a vGPU already, Timeout as Sysfs::write.
  void assign(const std::string &address, std::uint32_t type_id, std::chrono::milliseconds deadline) const;
  // Writes 0 and reads it back; done when there is nothing to release. While the driver refuses because the
  // device is still open (EBUSY/EPERM with a type set) it retries until `deadline` has passed (a VMM closes its
  // device a moment after it exits), then throws InUse.
  void release(const std::string &address, std::chrono::milliseconds deadline) const;

private:
  const Sysfs &sysfs_;
};

} // namespace hostdev::core
