// The state of hostdev on disk: registered devices, instances, mdevs hostdev created, and an intent journal.
// One JSON file per object, replaced atomically (temp file, fsync, rename, fsync dir). A corrupt file is moved
// aside into <dir>/corrupt/ with a warning and never crashes the load.
#pragma once

#include "core/records.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace hostdev::core {

class Store {
public:
  // Creates <dir> (mode 0700) and its folders when missing: devices, instances, mdevs, journal, and for vendor-VFIO
  // vGPUs and SR-IOV vgpus (assignments hostdev made), vgpu-types (the type catalogue), vf-health, sriov.
  explicit Store(std::string dir);

  // Reads every file. Returns warnings (corrupt files moved aside, stray temp files removed).
  std::vector<std::string> load();

  const std::string &dir() const noexcept { return dir_; }
  // Bumped by every change (load included): equal revisions, equal records.
  std::uint64_t revision() const noexcept { return revision_; }

  const std::map<std::string, DeviceRecord> &devices() const noexcept { return devices_; }
  const std::map<std::string, InstanceRecord> &instances() const noexcept { return instances_; }
  const std::map<std::string, MdevRecord> &mdevs() const noexcept { return mdevs_; }
  const std::map<std::string, Intent> &intents() const noexcept { return intents_; }
  const std::map<std::string, VgpuRecord> &vgpus() const noexcept { return vgpus_; }
  const std::map<std::string, VgpuTypeRecord> &vgpu_types() const noexcept { return vgpu_types_; }
  const std::map<std::string, VfHealthRecord> &vf_health() const noexcept { return vf_health_; }
  const std::map<std::string, SriovRecord> &sriov() const noexcept { return sriov_; }
  // The kernel's boot id when the store was last brought up to date with the host (<dir>/boot-id); nullopt when
  // never recorded or unreadable (load() warns).
  const std::optional<std::string> &boot_id() const noexcept { return boot_id_; }

  const DeviceRecord *find_device(const std::string &id_or_name) const; // by id, else by name
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
  void put_vgpu(const VgpuRecord &record);
  void remove_vgpu(const std::string &vf);
  void put_vgpu_type(const VgpuTypeRecord &record);
  void put_vf_health(const VfHealthRecord &record);
  void remove_vf_health(const std::string &vf);
  void put_sriov(const SriovRecord &record);
  void remove_sriov(const std::string &pf);
  void set_boot_id(const std::string &boot_id); // InvalidArgument unless a UUID

private:
  std::string dir_;
  std::uint64_t revision_ = 0;
  std::map<std::string, DeviceRecord> devices_;
  std::map<std::string, InstanceRecord> instances_;
  std::map<std::string, MdevRecord> mdevs_;
  std::map<std::string, Intent> intents_;
  std::map<std::string, VgpuRecord> vgpus_;
  std::map<std::string, VgpuTypeRecord> vgpu_types_;
  std::map<std::string, VfHealthRecord> vf_health_;
  std::map<std::string, SriovRecord> sriov_;
  std::optional<std::string> boot_id_;
};

} // namespace hostdev::core
