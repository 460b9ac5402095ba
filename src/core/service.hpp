// The use cases of hostdev over sysfs and the store: what the daemon's methods and the CLI call.
// No D-Bus here. Every method validates its arguments first and throws core::Error with a typed Errc.
// Not thread-safe: the daemon runs every mutation on one worker thread.
#pragma once

#include "core/error.hpp"
#include "core/mdev.hpp"
#include "core/pci.hpp"
#include "core/store.hpp"
#include "core/sysfs.hpp"
#include "core/vfio.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace hostdev::core {

struct InstanceSpec {
  std::vector<std::string> devices; // device ids or names
  std::string gpu_profile;          // "" = none
  std::string image;                // free text, e.g. an image name; "" = none
};

struct ReconcileStats {
  unsigned destroyed = 0;
  unsigned skipped_not_ours = 0;
  unsigned skipped_in_use = 0;
  unsigned cleared_attachments = 0;
  std::vector<std::string> errors;
};

struct AvailableDevice {
  PciFunction function;
  std::string registered_id; // "" when not registered

  bool operator==(const AvailableDevice &) const = default;
};

struct GpuResources {
  GpuMode mode = GpuMode::None;
  unsigned total_slots = 0;
  unsigned used_slots = 0;
  std::vector<ProfileSummary> profiles;
  struct PassthroughDevice {
    std::string name; // registered name, else the device name from hwdb, else the address
    std::string pci_address;
    bool available = false; // has an IOMMU group, not attached, not held open

    bool operator==(const PassthroughDevice &) const = default;
  };
  std::vector<PassthroughDevice> devices;
  // vGPU mode: the slots of each GPU (a PF and the VFs that are its mdev parents; a parent that is no PCI
  // function, such as mtty, stands for itself).
  struct Gpu {
    std::string pci_address; // the PF's address, or the parent's name
    std::string name;        // the device name from hwdb, else the address
    unsigned total_slots = 0;
    unsigned used_slots = 0;

    bool operator==(const Gpu &) const = default;
  };
  std::vector<Gpu> gpus;

  bool operator==(const GpuResources &) const = default;
};

struct InstancePaths {
  std::vector<std::string> device_paths; // "/sys/bus/pci/devices/<addr>/", "/sys/bus/mdev/devices/<uuid>/"
  std::vector<std::string> qemu_args;    // "-device", "vfio-pci,host=<addr>", "-device", "vfio-pci,sysfsdev=..."
  std::vector<std::string> cloud_hypervisor_args; // "--device", "path=<dir>", ...

  bool operator==(const InstancePaths &) const = default;
};

// What happened to mdevs, for the daemon's signals (device and instance changes need no event: the daemon
// compares its views before and after). Every callback runs on the calling thread.
class Events {
public:
  virtual ~Events() = default;
  virtual void mdev_created(const std::string & /*uuid*/, const std::string & /*profile*/,
                            const std::string & /*parent*/, const std::string & /*instance_id*/) {}
  virtual void mdev_destroyed(const std::string & /*uuid*/, const std::string & /*instance_id*/) {}
  virtual void reconciled(const ReconcileStats &) {}
};

// One reading of the host (every PCI function, every mdev parent with its types, every mdev) and what the reads
// are answered from, derived from that one reading.
struct HostView {
  std::vector<PciFunction> functions; // sorted by address
  std::vector<MdevParent> parents;
  std::vector<Mdev> mdevs;
  HostReport report;
  std::vector<AvailableDevice> available; // every function, registered ones marked (ListAvailable all=true)
  GpuResources resources;
};

struct ServiceOptions {
  std::chrono::milliseconds deadline = Sysfs::kDefaultDeadline; // per kernel write
};

class Service {
public:
  using Options = ServiceOptions;

  Service(const Sysfs &sysfs, Store &store, const PciNames &names, UnitControl *units = nullptr,
          Events *events = nullptr, Options options = {});

  // Reads. host_view() reads the host once for all of them; the others each read what they need.
  HostView host_view() const;
  std::vector<AvailableDevice> list_available(bool all) const;
  HostReport host_report() const;
  GpuResources gpu_resources() const;
  const DeviceRecord &get_device(const std::string &id_or_name) const;     // NotFound
  const InstanceRecord &get_instance(const std::string &id_or_name) const; // NotFound
  std::vector<DeviceRecord> list_devices() const;
  std::vector<InstanceRecord> list_instances() const;
  InstancePaths instance_paths(const InstanceRecord &instance) const;

  // Devices
  const DeviceRecord &register_device(const std::string &name, const std::string &pci_address);
  void unregister_device(const std::string &id_or_name);
  const DeviceRecord &bind_device(const std::string &id_or_name);    // AlreadyBound, InUse when attached
  const DeviceRecord &unbind_device(const std::string &id_or_name);  // NotBound, InUse when attached
  const DeviceRecord &restore_device(const std::string &id_or_name); // InUse when attached

  // Instances
  const InstanceRecord &create_instance(const std::string &name, const InstanceSpec &spec, std::uint32_t owner_uid);
  void delete_instance(const std::string &id_or_name);

  ReconcileStats reconcile();

  // Devices whose kernel write timed out; refused with InUse until restore succeeds.
  bool is_busy(const std::string &pci_address) const { return busy_.count(pci_address) != 0; }
  bool has_busy() const noexcept { return !busy_.empty(); }

  const MdevBus &mdevs() const noexcept { return mdev_; }
  const PciBus &pci() const noexcept { return pci_; }
  const Store &store() const noexcept { return store_; }

private:
  std::vector<AvailableDevice> available(std::vector<PciFunction> functions) const;
  GpuResources resources(GpuMode mode, const std::vector<PciFunction> &functions,
                         const std::vector<MdevParent> &parents, const std::vector<Mdev> &mdevs) const;
  void guard_not_busy(const DeviceRecord &device) const;
  // Runs f(); a Timeout from it marks `address` busy.
  template <class F> auto track_timeout(const std::string &address, F &&f) -> decltype(f()) {
    try {
      return f();
    } catch (const Error &e) {
      if (e.code() == Errc::Timeout)
        busy_.insert(address);
      throw;
    }
  }

  const Sysfs &sysfs_;
  Store &store_;
  const PciNames &names_;
  PciBus pci_;
  MdevBus mdev_;
  Vfio vfio_;
  Events *events_;
  Events no_events_;
  Options options_;
  std::set<std::string> busy_;       // PCI addresses with a kernel write that did not return
  std::set<std::string> busy_mdevs_; // mdevs whose create write did not return
};

// Fault injection for the crash tests of the lab: when the environment variable HOSTDEV_TEST_CRASH_AT equals
// `point`, the process kills itself with SIGKILL right there.
void crash_point(const char *point);

} // namespace hostdev::core
