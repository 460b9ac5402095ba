// The records of hostdev's store and their JSON form (one document per record, format version 1). Parsing
// checks the shape of a document: every field present with its type; the store checks the rest.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace hostdev::core {

struct DeviceRecord {
  std::string id;   // 32 hex
  std::string name; // unique
  std::string type; // "gpu" | "pci"
  std::string pci_address;
  std::string vendor_id; // "10de"
  std::string device_id; // "26b9"
  std::optional<int> iommu_group;
  std::uint64_t created_at = 0;           // µs since epoch
  std::string attached_to;                // instance id, "" when free
  std::optional<std::string> host_driver; // the driver before hostdev bound it to vfio-pci, when known
  // Added later (absent in older files): the subsystem ids, for the identity check before a restore touches the
  // address again ("" = unknown), and whether hostdev keeps it on vfio-pci (BindVfio, or attached).
  std::string subsystem_vendor_id;
  std::string subsystem_device_id;
  bool on_vfio = false;

  bool operator==(const DeviceRecord &) const = default;
};

struct InstanceRecord {
  std::string id;
  std::string name;
  std::string image;
  std::vector<std::string> devices; // device ids
  std::string gpu_profile;          // "" when none
  std::string mdev_uuid;            // "" when none
  std::string mdev_parent;
  std::uint32_t owner_uid = 0;
  std::uint64_t created_at = 0;
  // A vendor-VFIO vGPU (NVIDIA's framework without mdevs): the VF holding it, its type, and the UUID the VM is
  // started with (the vGPU manager wants it on QEMU's command line). Empty / 0 otherwise; absent in older files.
  std::string vgpu_vf;
  std::uint32_t vgpu_type = 0;
  std::string uuid;
  // After a reboot: "active" (everything it owns exists), "degraded" (some of it could not be restored:
  // state_reason says what and why), "restoring". A non-persistent instance is dropped at the next boot.
  std::string state = "active";
  std::string state_reason;
  bool persistent = true;
  // Read from a file a newer hostdev wrote (a later format version): only its id and name are known. It is shown
  // degraded, and nothing of this version touches it or what is recorded for it. Never written.
  bool from_newer_version = false;
  // A lease: the instance belongs to a bus connection (its unique name, the process behind it and that process's
  // start time, so that a reused name or pid is never taken for the owner); when it goes, the instance is deleted.
  // Leased instances are never persistent. Empty / 0 without a lease; absent in older files.
  std::string lease_owner;
  std::uint32_t lease_pid = 0;
  std::uint64_t lease_start = 0;
  // Device nodes ("/dev/vfio/12") whose ACL gives granted_uid access (OpenVfio): recorded before the grant, revoked
  // when the instance goes. Empty when none; absent in older files.
  std::vector<std::string> granted_nodes;
  std::uint32_t granted_uid = 0;
  // Instance.RaiseMemlock: the process of the lease's tree whose RLIMIT_MEMLOCK hostdevd raised, and to what; counted
  // against the owner's per-user maximum while the instance lasts.
  std::uint32_t memlock_pid = 0;
  std::uint64_t memlock_bytes = 0;

  bool operator==(const InstanceRecord &) const = default;
};

// An mdev hostdev created (recorded *before* the create write, removed after the remove succeeded): the only
// mdevs reconcile may destroy.
struct MdevRecord {
  std::string uuid;
  std::string parent;
  std::string type_id;
  std::string instance_id; // the instance it is (to be) owned by
  std::uint64_t created_at = 0;
};

// An operation in flight: written before its first kernel write, updated after each, dropped when the result is
// committed. What a crash leaves here is rolled back by reconcile.
struct Intent {
  std::string id;
  std::string op;                         // "create-instance", "delete-instance"
  std::string instance_id;                // "" when not about an instance
  std::vector<std::string> bound_devices; // device ids this operation bound to vfio-pci so far
  std::string mdev_uuid;                  // mdev this operation created (or is about to create)
  std::uint64_t started_at = 0;
  std::string vgpu_vf; // the VF whose vendor vGPU this operation assigned (or is about to); absent in older files
};

// A vendor-VFIO vGPU hostdev assigned (recorded *before* the write of the type id, removed after the release):
// the only assignments reconcile may release. Key: the VF's address.
struct VgpuRecord {
  std::string vf;
  std::uint32_t type_id = 0;
  std::string instance_id;
  std::string uuid;
  std::uint64_t created_at = 0;
};

// The vendor-VFIO type catalogue: a type as seen while it was creatable (creatable_vgpu_types forgets a type once
// the GPU is full, so the name and framebuffer of an assigned type may be visible nowhere else). Key: the id.
struct VgpuTypeRecord {
  std::string id; // decimal
  std::string name;
  unsigned framebuffer_mb = 0;
  std::uint64_t learnt_at = 0;
};

// The health of one VF as guests report it: after failed guest driver starts on two distinct instances the VF is
// quarantined (placement skips it) until an administrator lifts it; a success clears the failures. Key: address.
struct VfHealthRecord {
  std::string vf;
  std::vector<std::string> failed_instances; // distinct instance ids
  bool quarantined = false;
  std::uint64_t changed_at = 0;
};

// An SR-IOV VF count hostdev set (for the restore after a reboot). Key: the PF's address.
struct SriovRecord {
  std::string pf;
  unsigned num_vfs = 0;
  std::uint64_t set_at = 0;
  std::string vendor_id, device_id; // of the PF, for the identity check before a restore ("" in older files)
};

using RecordJson = nlohmann::ordered_json;

// A document that is not a record of the expected kind.
struct BadRecord : std::runtime_error {
  using std::runtime_error::runtime_error;
};

RecordJson to_json(const DeviceRecord &record);
RecordJson to_json(const InstanceRecord &record);
RecordJson to_json(const MdevRecord &record);
RecordJson to_json(const Intent &record);
RecordJson to_json(const VgpuRecord &record);
RecordJson to_json(const VgpuTypeRecord &record);
RecordJson to_json(const VfHealthRecord &record);
RecordJson to_json(const SriovRecord &record);

// Each throws BadRecord (naming the field) unless `j` is a record of this version and kind.
DeviceRecord device_from_json(const RecordJson &j);
InstanceRecord instance_from_json(const RecordJson &j);
MdevRecord mdev_from_json(const RecordJson &j);
Intent intent_from_json(const RecordJson &j);
VgpuRecord vgpu_from_json(const RecordJson &j);
VgpuTypeRecord vgpu_type_from_json(const RecordJson &j);
VfHealthRecord vf_health_from_json(const RecordJson &j);
SriovRecord sriov_from_json(const RecordJson &j);

// The key a record is stored under: its id (the UUID for mdevs, the PCI address for VF and PF records).
inline const std::string &key_of(const DeviceRecord &r) { return r.id; }
inline const std::string &key_of(const InstanceRecord &r) { return r.id; }
inline const std::string &key_of(const MdevRecord &r) { return r.uuid; }
inline const std::string &key_of(const Intent &r) { return r.id; }
inline const std::string &key_of(const VgpuRecord &r) { return r.vf; }
inline const std::string &key_of(const VgpuTypeRecord &r) { return r.id; }
inline const std::string &key_of(const VfHealthRecord &r) { return r.vf; }
inline const std::string &key_of(const SriovRecord &r) { return r.pf; }

// A decimal vGPU type id as the catalogue keys it: 1 to 4294967295, no leading zeros.
bool is_type_key(const std::string &key) noexcept;

} // namespace hostdev::core
