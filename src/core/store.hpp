// The state of hostdev on disk: registered devices, instances, mdevs hostdev created, and an intent journal.
// One JSON file per object, replaced atomically (temp file, fsync, rename, fsync dir). A corrupt file is moved
// aside into <dir>/corrupt/ with a warning and never crashes the load.
#pragma once

#include "core/records.hpp"

#include <map>
#include <string>
#include <vector>

namespace hostdev::core {

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

private:
  std::string dir_;
  std::map<std::string, DeviceRecord> devices_;
  std::map<std::string, InstanceRecord> instances_;
  std::map<std::string, MdevRecord> mdevs_;
  std::map<std::string, Intent> intents_;
};

} // namespace hostdev::core
