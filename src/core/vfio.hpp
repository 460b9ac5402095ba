// vfio-pci binding: bind, unbind, the gpu-reset recovery path, IOMMU group viability and who holds a device.
#pragma once

#include "core/pci.hpp"
#include "core/sysfs.hpp"

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace hostdev::core {

// A process holding a device node open.
struct Holder {
  int pid = 0;
  std::string command; // comm
  std::string path;    // "/dev/vfio/12", "/dev/nvidia0"
};

// Scans proc/<pid>/fd beneath the Sysfs root for links to any of `paths` (exact) or, for entries ending in '*',
// any path with that prefix ("/dev/nvidia*"). Fails closed: a process whose open files cannot be read (an LSM
// denial, missing privileges) is reported as a holder with path "(unreadable: <reason>)", since it may be a VM.
std::vector<Holder> find_holders(const Sysfs &sysfs, const std::vector<std::string> &paths);

// The device nodes through which a VM holds a VFIO device: "/dev/vfio/<group>" and, on kernels with VFIO device
// cdevs, "/dev/vfio/devices/vfioN" for each entry of <device_dir>/vfio-dev ("sys/bus/pci/devices/<addr>",
// "sys/bus/mdev/devices/<uuid>").
std::vector<std::string> vfio_device_nodes(const Sysfs &sysfs, const std::string &device_dir, std::optional<int> group);
// "1234 (qemu-system-x86), 99 (nvidia-smi)"; "" for none.
std::string describe_holders(const std::vector<Holder> &holders);

// systemd units as seen from the core (implemented over systemd's D-Bus API outside the core; faked in tests).
class UnitControl {
public:
  virtual ~UnitControl() = default;
  virtual bool exists(const std::string &unit) = 0;    // a unit file is known to systemd
  virtual bool is_active(const std::string &unit) = 0; // false when the unit does not exist
  virtual void stop(const std::string &unit) = 0;
  virtual void start(const std::string &unit) = 0;
};

struct GroupCheck {
  std::optional<int> group;
  std::vector<std::string> members; // every member, the device included
  std::vector<std::string>
      blockers; // "0000:00:1f.3 (snd_hda_intel)": members neither bridges, on vfio-pci nor driverless
};

class Vfio {
public:
  Vfio(const Sysfs &sysfs, const PciBus &bus, UnitControl *units = nullptr,
       std::chrono::milliseconds deadline = Sysfs::kDefaultDeadline)
      : sysfs_(sysfs), bus_(bus), units_(units), deadline_(deadline) {}

  bool vfio_pci_available() const;
  // `companions`: other functions being bound in the same operation (a GPU and its audio function); they do not
  // block each other.
  GroupCheck check_group(const std::string &address, const std::vector<std::string> &companions = {}) const;

  // driver_override = vfio-pci, unbind the current driver, drivers_probe, verify. Throws DeviceNotFound,
  // IommuUnavailable, VfioUnavailable, AlreadyBound, IommuGroupConflict (naming the blockers), Timeout, KernelError
  // (naming holders of the device's nodes). On failure after the first write, the override is cleared and the
  // device re-probed. Around an NVIDIA function nvidia-persistenced is stopped and started again, also on failure.
  // Returns the driver the device had before (nullopt for none).
  std::optional<std::string> bind(const std::string &address, const std::vector<std::string> &companions = {}) const;

  // The device must be on vfio-pci (else NotBound): clear the override, unbind from vfio-pci, drivers_probe.
  // When `expected_driver` is given, checks it came back (KernelError otherwise). Returns the driver now bound.
  std::optional<std::string> unbind(const std::string &address,
                                    const std::optional<std::string> &expected_driver = std::nullopt) const;

  // gpu-reset: whatever the state, unbind from vfio-pci if bound, clear the override, re-probe, restart
  // nvidia-persistenced for NVIDIA functions. Returns the driver now bound.
  std::optional<std::string> restore(const std::string &address) const;

  // Processes holding the device's VFIO nodes (and, for NVIDIA functions, /dev/nvidia*).
  std::vector<Holder> holders_of(const std::string &address) const;

private:
  void write(const std::string &path, const std::string &value) const;
  const Sysfs &sysfs_;
  const PciBus &bus_;
  UnitControl *units_;
  std::chrono::milliseconds deadline_;
};

} // namespace hostdev::core
