// The state of hostdev on disk: registered devices, instances, mdevs hostdev created, and an intent journal.
// One JSON file per object, replaced atomically (temp file, fsync, rename, fsync dir). A corrupt file is moved
// aside into <dir>/corrupt/ with a warning and never crashes the load.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
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
  std::uint64_t created_at = 0;   // µs since epoch
  std::string attached_to;        // instance id, "" when free
  std::optional<std::string> host_driver; // the driver before hostdev bound it to vfio-pci, when known
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
  std::string op;           // "create-instance", "delete-instance", "bind"
  std::string instance_id;  // "" when not about an instance
  std::vector<std::string> bound_devices; // device ids this operation bound to vfio-pci so far
  std::string mdev_uuid;    // mdev this operation created (or is about to create)
  std::uint64_t started_at = 0;
};

class Store {
public:
  // Creates <dir>, <dir>/devices, <dir>/instances, <dir>/mdevs, <dir>/journal (mode 0700 for dir) when missing.
  explicit Store(std::string dir);

  // Reads every file. Returns warnings (corrupt files moved aside, stray temp files removed).
  std::vector<std::string> load();

  const std::string &dir() const noexcept { return dir_; }

  const std::map<std::string, DeviceRecord> &devices() const noexcept { return devices_; }
  const std::map<std::string, InstanceRecord> &instances() const noexcept { return instances_; }
  const std::map<std::string, MdevRecord> &mdevs() const noexcept { return mdevs_; }
  const std::map<std::string, Intent> &intents() const noexcept { return intents_; }

  const DeviceRecord *find_device(const std::string &id_or_name) const;     // by id, else by name
  const DeviceRecord *find_device_by_address(const std::string &address) const;
  const InstanceRecord *find_instance(const std::string &id_or_name) const; // by id, else by name

  // Each writes (or removes) the one file, then updates memory. Throws Error(InvalidArgument) for an id that is
  // not 32 lower-case hex (a UUID for mdevs) before touching any path, Error(NameExists / AlreadyExists) when a
  // put would give two devices one name or address (or two instances one name), Error(KernelError) when the disk
  // refuses; memory is then unchanged. (Should the directory fsync fail after the rename, the new file is on disk
  // while memory is not: the next load() sees it.)
  void put_device(const DeviceRecord &record);
  void remove_device(const std::string &id);
  void put_instance(const InstanceRecord &record);
  void remove_instance(const std::string &id);
  void put_mdev(const MdevRecord &record);
  void remove_mdev(const std::string &uuid);
  void put_intent(const Intent &intent);
  void remove_intent(const std::string &id);

private:
  std::string dir_;
  std::map<std::string, DeviceRecord> devices_;
  std::map<std::string, InstanceRecord> instances_;
  std::map<std::string, MdevRecord> mdevs_;
  std::map<std::string, Intent> intents_;
};

// Writes `content` to `path` atomically: <path>.tmp.XXXXXX in the same directory, fsync, rename, fsync the dir.
// Throws Error(KernelError) and leaves `path` as it was on any failure.
void atomic_write_file(const std::string &path, const std::string &content, unsigned mode = 0600);

} // namespace hostdev::core
