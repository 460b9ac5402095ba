// PCI discovery: every function under sys/bus/pci/devices with ids, names, IOMMU group, driver and SR-IOV facts,
// and the host report (IOMMU, vfio modules, hugepages, GPU mode, problems with hints).
#pragma once

#include "core/sysfs.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace hostdev::core {

inline constexpr std::uint16_t kNvidiaVendor = 0x10de;

// Vendor and device names. The real one asks sd-hwdb; with no hwdb, names are empty and ids speak for themselves.
class PciNames {
public:
  virtual ~PciNames() = default;
  virtual std::string vendor(std::uint16_t vendor_id) const = 0;
  virtual std::string device(std::uint16_t vendor_id, std::uint16_t device_id) const = 0;
};

// sd-hwdb (hwdb.bin of udev). Never throws; an absent hwdb answers empty names.
std::unique_ptr<PciNames> make_hwdb_names();
// Empty names; for tests and callers that want ids only.
std::unique_ptr<PciNames> make_no_names();

struct PciFunction {
  std::string address; // "0000:a2:00.0"
  std::uint16_t vendor_id = 0;
  std::uint16_t device_id = 0;
  std::uint16_t subsystem_vendor_id = 0;
  std::uint16_t subsystem_device_id = 0;
  std::uint32_t class_code = 0; // 24 bits: 0x030000
  std::uint8_t revision = 0;
  std::string vendor_name;
  std::string device_name;
  std::optional<int> iommu_group;
  std::vector<std::string> group_members; // addresses of every function in the group, this one included
  std::optional<std::string> driver;
  std::optional<std::string> driver_override;
  int numa_node = -1;
  std::string reset_method; // "flr bus", "" when the kernel has none or no such attribute
  // SR-IOV: the physical function side
  std::optional<unsigned> sriov_totalvfs;
  std::optional<unsigned> sriov_numvfs;
  std::vector<std::string> virtfns; // VF addresses, in virtfn index order
  // SR-IOV: the virtual function side
  std::optional<std::string> physfn;

  bool is_gpu() const noexcept;     // class 0x0300 / 0x0302, or any NVIDIA function
  bool is_display() const noexcept; // class 0x0300 / 0x0302 only
  bool is_bridge() const noexcept;  // base class 0x06
  bool is_nvidia() const noexcept { return vendor_id == kNvidiaVendor; }
  bool on_vfio() const noexcept; // driver == vfio-pci

  bool operator==(const PciFunction &) const = default;
};

// "10de" — four lower-case hex digits, no 0x.
std::string hex4(std::uint16_t id);
// "0x030000"
std::string class_hex(std::uint32_t class_code);

// sysfs paths of one function, e.g. "sys/bus/pci/devices/0000:a2:00.0". The address must be normalised.
std::string pci_device_path(const std::string &address);

class PciBus {
public:
  PciBus(const Sysfs &sysfs, const PciNames &names) : sysfs_(sysfs), names_(names) {}

  // Every function, sorted by address.
  std::vector<PciFunction> discover() const;
  // Candidates only: GPUs (see is_gpu) unless `all`.
  std::vector<PciFunction> candidates(bool all) const;
  // One function; nullopt when the address does not exist. Throws InvalidPciAddress for a malformed address.
  std::optional<PciFunction> find(const std::string &address) const;
  // One function of a normalised address without its group_members (a model derives them from every function's
  // group: one listing fewer per function); nullopt when it is not there.
  std::optional<PciFunction> read_alone(const std::string &address) const;
  // The addresses under sys/bus/pci/devices, sorted.
  std::vector<std::string> addresses() const;
  // read_alone() of every address under sys/bus/pci/devices, sorted by address, a vanished one skipped. A big host
  // is read by a few threads at once (each function's files are independent): the reading is system calls,
  // and a start-up or a full re-scan waits for all of it.
  std::vector<PciFunction> read_all() const;
  // The current driver of one function (cheap: one readlink).
  std::optional<std::string> driver_of(const std::string &address) const;
  std::optional<int> iommu_group_of(const std::string &address) const;
  std::vector<std::string> iommu_group_members(int group) const;

private:
  std::optional<PciFunction> read_function(const std::string &address, bool members) const;
  const Sysfs &sysfs_;
  const PciNames &names_;
};

struct Problem {
  std::string message;
  std::string hint;

  bool operator==(const Problem &) const = default;
};

enum class GpuMode { None, Passthrough, Vgpu };
const char *gpu_mode_name(GpuMode mode) noexcept; // "none", "passthrough", "vgpu"

struct HostReport {
  bool iommu_enabled = false;
  bool vfio_pci_available = false;      // the vfio-pci driver is registered (module loaded or built in)
  bool vfio_iommu_type1_loaded = false; // the type1 IOMMU backend is there
  bool vfio_available() const noexcept { return vfio_pci_available && vfio_iommu_type1_loaded; }
  unsigned long hugepages_total = 0; // default-size pages
  unsigned long hugepages_free = 0;
  unsigned long hugepage_size_kb = 0;
  unsigned mdev_parent_count = 0;
  unsigned vendor_vf_count = 0; // VFs of NVIDIA's vendor-specific VFIO framework (nvidia/current_vgpu_type)
  unsigned gpu_count = 0;
  GpuMode gpu_mode = GpuMode::None;
  std::vector<Problem> problems;

  // The vGPU frameworks present: "mdev", "vendor-vfio", both (a host with both is reported as such), or none.
  std::vector<std::string> gpu_frameworks() const;
  // "mdev", "vendor-vfio", "mdev+vendor-vfio", "" when the mode is not vgpu.
  std::string gpu_framework() const;

  bool operator==(const HostReport &) const = default;
};

// What the host report needs beyond the functions: a handful of host-wide files.
struct HostFacts {
  bool iommu_enabled = false;
  bool vfio_pci_available = false;
  bool vfio_iommu_type1_loaded = false;
  unsigned long hugepages_total = 0, hugepages_free = 0, hugepage_size_kb = 0;

  bool operator==(const HostFacts &) const = default;
};
HostFacts read_host_facts(const Sysfs &sysfs);

// Every function's group_members from the groups of `functions` (sorted by address).
void fill_group_members(std::vector<PciFunction> &functions);
// The function at `address` in `functions` (sorted by address, as PciBus::read_all and the model give them), or
// null: a binary search.
const PciFunction *find_function(const std::vector<PciFunction> &functions, const std::string &address);

// GPU mode: vgpu when mdev parents or vendor-VFIO VFs exist; passthrough when GPUs exist and IOMMU + vfio make it
// possible; else none.
HostReport check_host(const Sysfs &sysfs, const std::vector<PciFunction> &functions, unsigned mdev_parent_count,
                      unsigned vendor_vf_count = 0);
HostReport check_host(const HostFacts &facts, const std::vector<PciFunction> &functions, unsigned mdev_parent_count,
                      unsigned vendor_vf_count = 0);

} // namespace hostdev::core
