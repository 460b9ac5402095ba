// The use cases of hostdev over sysfs and the store: what the daemon's methods and the CLI call.
// No D-Bus here. Every method validates its arguments first and throws core::Error with a typed Errc.
// Not thread-safe: the daemon runs every mutation on one worker thread.
#pragma once

#include "core/error.hpp"
#include "core/fd.hpp"
#include "core/mdev.hpp"
#include "core/model.hpp"
#include "core/pci.hpp"
#include "core/store.hpp"
#include "core/sysfs.hpp"
#include "core/vendor_vgpu.hpp"
#include "core/vfio.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace hostdev::core {

class Undo;

struct InstanceSpec {
  std::vector<std::string> devices; // device ids or names
  std::string gpu_profile;          // "" = none
  std::string image;                // free text, e.g. an image name; "" = none
  bool persistent = true;           // restored after a reboot; false: dropped (devices given back) at the next boot
  // A lease (the daemon fills these from the caller's connection): the instance ends with that connection.
  std::string lease_owner = {};
  std::uint32_t lease_pid = 0;
  std::uint64_t lease_start = 0;
};

struct ReconcileStats {
  unsigned destroyed = 0;
  unsigned skipped_not_ours = 0;
  unsigned skipped_in_use = 0;
  unsigned cleared_attachments = 0;
  std::vector<std::string> errors;
};

// What the start-up did: a new boot restores, the same boot reconciles.
struct StartUpReport {
  bool new_boot = false;
  std::optional<std::string> boot_id; // the kernel's; nullopt when unreadable
  std::vector<std::string> notes;     // one line each for the journal: what was restored, dropped, or why not
  unsigned active = 0, degraded = 0, dropped = 0;
  ReconcileStats reconcile;
};

struct AvailableDevice {
  PciFunction function;
  std::string registered_id; // "" when not registered

  bool operator==(const AvailableDevice &) const = default;
};

struct GpuResources {
  GpuMode mode = GpuMode::None;
  std::vector<std::string> frameworks; // vgpu mode: "mdev", "vendor-vfio" or both
  unsigned total_slots = 0;
  unsigned used_slots = 0;
  unsigned quarantined_slots = 0; // VFs placement skips (VF health), not in total_slots
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
    std::string framework;   // "mdev" | "vendor-vfio"
    unsigned total_slots = 0;
    unsigned used_slots = 0;
    unsigned quarantined_slots = 0;
    unsigned framebuffer_used_mb = 0; // of the vGPUs on it, as their types state (the type catalogue)

    bool operator==(const Gpu &) const = default;
  };
  std::vector<Gpu> gpus;

  bool operator==(const GpuResources &) const = default;
};

struct InstancePaths {
  std::vector<std::string> device_paths; // "/sys/bus/pci/devices/<addr>/", "/sys/bus/mdev/devices/<uuid>/"
  std::vector<std::string> qemu_args;    // "-device", "vfio-pci,host=<addr>", "-device", "vfio-pci,sysfsdev=..."
  // Vendor-VFIO vGPU: "-device vfio-pci,host=<VF>" plus "-uuid <uuid>" in qemu_args. Cloud Hypervisor cannot start
  // such a VM upstream (NVIDIA's vGPU manager needs the VM's UUID and CH passes none): these still name the VF.
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
  // A VF was quarantined after guests failed to start on it (`instances`: the distinct instances that failed).
  virtual void vf_quarantined(const std::string & /*vf*/, const std::vector<std::string> & /*instances*/) {}
  virtual void instance_state_changed(const std::string & /*instance_id*/, const std::string & /*state*/,
                                      const std::string & /*reason*/) {}
};

struct HostView;
// The GPU an mdev parent belongs to: the PF of a parent that is a VF, else the parent itself (mtty).
std::string gpu_of_parent(const HostView &view, const std::string &parent);

// One place a vGPU could go, as create tries them: least-loaded GPU first.
struct VgpuCandidate {
  std::string framework; // "mdev" | "vendor-vfio"
  std::string gpu;       // the PF's address (the parent's name for a parent that is no PCI function)
  std::string target;    // the mdev parent, or the VF
  std::string type_id;   // the mdev type ("nvidia-1157", "mtty-2"), or the vendor type id ("1150")
  std::string profile;   // the type's name
  unsigned framebuffer_mb = 0;

  bool operator==(const VgpuCandidate &) const = default;
};

struct SriovResult {
  std::string pf;
  unsigned num_vfs = 0;
  bool drivers_autoprobe = true; // the PF's sriov_drivers_autoprobe: VFs get a driver only when true
  std::vector<std::string> vfs;  // the virtfnN links, in order
};

// One reading of the host (every PCI function, every mdev parent with its types, every mdev) and what the reads
// are answered from, derived from that one reading.
struct HostView {
  // Sorted by address; shared with the model's own list of the same revision (never null).
  std::shared_ptr<const std::vector<PciFunction>> functions = std::make_shared<const std::vector<PciFunction>>();
  // Shared with the model's own list of the same revision (never null).
  std::shared_ptr<const std::vector<MdevParent>> parents = std::make_shared<const std::vector<MdevParent>>();
  std::vector<Mdev> mdevs;
  std::vector<VendorVf> vendor_vfs;
  HostReport report;
  std::vector<AvailableDevice> available; // every function, registered ones marked (ListAvailable all=true)
  GpuResources resources;
};

struct ServiceOptions {
  std::chrono::milliseconds deadline = Sysfs::kDefaultDeadline; // per kernel write
  // At a new boot: how long to wait for a missing mdev parent or VF (a driver still loading) before an instance
  // that needs it is degraded.
  std::chrono::milliseconds restore_wait{10000};
  // Instance.RaiseMemlock: the most locked memory all of one user's leased VMMs may be given together, in bytes.
  std::uint64_t memlock_max_per_user = 0;
};

class Service {
public:
  using Options = ServiceOptions;

  Service(const Sysfs &sysfs, Store &store, const PciNames &names, UnitControl *units = nullptr,
          Events *events = nullptr, Options options = {});

  // Reads. host_view() reads the host once for all of them; the others each read what they need.
  HostView host_view() const;
  // The live model (core/model.hpp), kept by the daemon: update_model re-reads what a change names (a model never
  // read reads everything); model_view() derives a HostView from it without reading sysfs.
  void update_model(const ModelChange &change);
  HostView model_view() const;
  // What a mutation plans from: the live model when there is one (kept true by uevents and by hostdev's own
  // writes: a mutation pays for what it touches), else a fresh reading.
  HostView current_view() const;
  const HostModel &model() const noexcept { return model_; }
  std::vector<AvailableDevice> list_available(bool all) const;
  HostReport host_report() const;
  GpuResources gpu_resources() const;
  const DeviceRecord &get_device(const std::string &id_or_name) const;     // NotFound
  const InstanceRecord &get_instance(const std::string &id_or_name) const; // NotFound
  std::vector<DeviceRecord> list_devices() const;
  std::vector<InstanceRecord> list_instances() const;
  InstancePaths instance_paths(const InstanceRecord &instance) const;
  // The VFIO devices of an instance, in the order of its QemuArgs: its PCI devices, its mdev, its vendor vGPU's VF.
  struct VfioObject {
    std::string name; // PCI address or mdev UUID
    bool mdev = false;
    std::string dir; // "/sys/bus/pci/devices/<address>/", "/sys/bus/mdev/devices/<uuid>/"
  };
  std::vector<VfioObject> vfio_objects(const InstanceRecord &instance) const;

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

  // At every start: reads the kernel's boot id (proc/sys/kernel/random/boot_id beneath the sysfs root); a boot id
  // other than the recorded one means a reboot: non-persistent instances are dropped, the others restored (SR-IOV
  // VF counts, vfio-pci bindings, mdevs with the same UUID, type and parent, vendor-VFIO types on the same VF,
  // each after an identity check of the address). Then reconcile, and the boot id is recorded.
  StartUpReport start_up();
  // Restores what one instance owns that is missing; sets its state (active or degraded with the reasons).
  const InstanceRecord &restore_instance(const std::string &id_or_name);

  // A lease's owner is gone: waits up to `wait` until no process holds the instance's devices (a VMM that just
  // died may take a moment to close them), then deletes it. InUse, naming the holders, when they stay.
  void end_lease(const std::string &id_or_name, std::chrono::milliseconds wait);
  // The processes holding any of the instance's VFIO objects (devices, mdev, vendor VF).
  std::vector<Holder> instance_holders(const InstanceRecord &instance) const;

  // Lets `uid` open the instance's VFIO objects without root: on kernels without VFIO cdevs and iommufd (hostdevd
  // cannot hand over a group fd that QEMU would take), a POSIX ACL user:<uid>:rw on /dev/vfio/vfio and on each
  // /dev/vfio/<group> of the instance, revoked when the instance goes. InUse while another process holds any of
  // them. Returns the nodes.
  // What a VMM needs to use the instance without root. mode "cdev" (kernels with VFIO device cdevs and iommufd):
  // fds holds an open /dev/iommu, then one unbound VFIO cdev per object, in that order; nodes and objects say what
  // each fd is ("iommufd", then the PCI address or mdev UUID); qemu_args use them with the number of fd i being
  // kFdBase + i, as `hostdevctl run` places them. mode "acl": nodes are the group nodes the uid may now open
  // (granted_nodes), no fd; qemu_args are the instance's QemuArgs.
  static constexpr int kFdBase = 3;
  struct VfioAccess {
    std::string mode = "acl";
    std::vector<std::string> nodes;
    std::vector<std::string> objects;
    std::vector<Fd> fds;
    std::vector<std::string> qemu_args;
  };
  // Raises RLIMIT_MEMLOCK of the process `pidfd` names to `bytes` (VFIO pins guest RAM against it), for the VMM of a
  // leased instance: only the lease's own connection (`sender`) may ask, only for a process of uid `uid` in the
  // process tree of the lease's owner, and all of the uid's grants together stay within memlock_max_per_user
  // (NoCapacity). One process per instance: asking again for another is InUse. Recorded before the kernel is
  // asked. Returns the process's soft limit now.
  std::uint64_t raise_memlock(const std::string &id_or_name, int pidfd, std::uint64_t bytes, std::uint32_t uid,
                              const std::string &sender);
  // `mode`: "auto" (cdev where the kernel has it for every object, else acl), "cdev" (VfioUnavailable without)
  // or "acl".
  VfioAccess open_vfio(const std::string &id_or_name, std::uint32_t uid, const std::string &mode = "auto");

  // vGPU placement: every place `profile` could go now, least-loaded GPU first (framebuffer in use, then vGPUs),
  // quarantined VFs left out. Throws ProfileUnavailable / NoCapacity.
  std::vector<VgpuCandidate> vgpu_candidates(const std::string &profile, const HostView &view) const;
  // The load of each GPU (by PF address, or the parent's name): the framebuffer its vGPUs' types state, and how
  // many there are. What placement sorts by and the resources show.
  struct GpuLoad {
    unsigned framebuffer_mb = 0;
    unsigned vgpus = 0;
  };
  std::map<std::string, GpuLoad> gpu_loads(const HostView &view) const;
  // Remembers the vendor-VFIO types the view shows that the catalogue lacks. Returns how many were new.
  unsigned learn_vgpu_types(const HostView &view);
  // The name and framebuffer of a vendor type: the catalogue, else what a VF lists now; nullopt when unknown.
  std::optional<VgpuType> vgpu_type(std::uint32_t id, const HostView *view = nullptr) const;

  // SR-IOV: sets the PF's VF count (0 first when changing a non-zero count), verified by the virtfnN links;
  // refused while any VF is attached, has a vGPU or is held. The count is recorded (for the restore at boot).
  SriovResult configure_sriov(const std::string &pf_address, unsigned num_vfs);

  // VF health. `ok`: the guest driver came up on the instance's vGPU. Returns whether the VF is quarantined now.
  bool report_guest_init(const std::string &instance_id_or_name, bool ok);
  void unquarantine(const std::string &vf_address); // NotFound when the VF is not quarantined
  bool is_quarantined(const std::string &address) const;
  // The VF (or the mdev parent that is a VF) holding the instance's vGPU; "" when it has none.
  std::string vgpu_vf_of(const InstanceRecord &instance) const;

  // Devices whose kernel write timed out; refused with InUse until restore succeeds.
  bool is_busy(const std::string &pci_address) const { return busy_.count(pci_address) != 0; }
  bool has_busy() const noexcept { return !busy_.empty(); }

  const MdevBus &mdevs() const noexcept { return mdev_; }
  const VendorVgpu &vendor_vgpu() const noexcept { return vendor_; }
  const PciBus &pci() const noexcept { return pci_; }
  const Store &store() const noexcept { return store_; }

private:
  std::vector<AvailableDevice> available(const std::vector<PciFunction> &functions) const;
  GpuResources resources(const HostView &view) const;
  HostView view_of(const HostModel &model) const;
  void add_vendor_resources(const HostView &view, GpuResources &res) const;
  void release_vendor_vgpu(InstanceRecord &inst, bool emit);
  // One place of create's vGPU: true when placed, false when refused (recorded in `refusals`); throws when the
  // whole create must stop (a timeout, a vGPU made that the undo list must take back).
  bool try_mdev_slot(const VgpuCandidate &slot, InstanceRecord &inst, Intent &intent, Undo &undo,
                     std::string &refusals);
  bool try_vendor_slot(const VgpuCandidate &slot, InstanceRecord &inst, Intent &intent, Undo &undo,
                       std::string &refusals);
  std::vector<Holder> vf_holders(const std::string &vf) const;
  VfioAccess open_vfio_cdevs(const InstanceRecord &inst, const std::vector<VfioObject> &objects);
  std::optional<std::string> vfio_cdev_of(const VfioObject &object) const; // "vfio3" of <dir>/vfio-dev/, if one
  void revoke_vfio(InstanceRecord &inst); // the ACLs open_vfio granted; KernelError naming the nodes it could not
  // get_instance for a change: refuses (InvalidArgument) an instance a newer hostdev wrote.
  const InstanceRecord &instance_to_change(const std::string &id_or_name) const;
  // After a reboot: puts a recorded device back on vfio-pci (after its identity check). "" when done or already
  // there, else why not.
  std::string rebind(const DeviceRecord &dev, const std::vector<std::string> &companions);
  // "" when the function at `address` is what the record says (vendor, device, subsystem ids), else why not.
  std::string identity_mismatch(const DeviceRecord &rec) const;
  void set_state(InstanceRecord &inst, const std::string &state, const std::string &reason);
  void wait_for(const std::function<bool()> &present) const;
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
  VendorVgpu vendor_;
  HostModel model_;
  Vfio vfio_;
  Events *events_;
  Events no_events_;
  Options options_;
  std::set<std::string> busy_;       // PCI addresses with a kernel write that did not return
  std::set<std::string> busy_mdevs_; // mdevs whose create write did not return
};

// QEMU's -uuid for an instance with a vendor-VFIO vGPU (its VF and QemuArgs in either OpenVfio mode need it).
void append_vm_uuid(const InstanceRecord &instance, std::vector<std::string> &qemu_args);

// Fault injection for the crash tests of the lab: when the environment variable HOSTDEV_TEST_CRASH_AT equals
// `point`, the process kills itself with SIGKILL right there.
void crash_point(const char *point);

} // namespace hostdev::core
