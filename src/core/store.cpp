#include "core/store.hpp"

#include "core/error.hpp"
#include "core/files.hpp"
#include "core/lookup.hpp"
#include "core/validate.hpp"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <ctime>
#include <set>
#include <stdexcept>
#include <system_error>
#include <utility>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

namespace hostdev::core {

namespace {

using Json = RecordJson;
constexpr const char *kDevices = "devices";
constexpr const char *kInstances = "instances";
constexpr const char *kMdevs = "mdevs";
constexpr const char *kJournal = "journal";
constexpr const char *kVgpus = "vgpus";
constexpr const char *kVgpuTypes = "vgpu-types";
constexpr const char *kVfHealth = "vf-health";
constexpr const char *kSriov = "sriov";
constexpr const char *kCorrupt = "corrupt";
constexpr const char *kBootId = "boot-id";
constexpr const char *kFolders[] = {kDevices, kInstances, kMdevs, kJournal, kVgpus, kVgpuTypes, kVfHealth, kSriov};

bool is_address_key(const std::string &key) { return is_pci_address(key) && normalize_pci_address(key) == key; }
// The largest record the API can produce is a few KiB (an image of 4096 bytes, a few dozen device ids).
constexpr long kMaxRecordBytes = 64 * 1024;

// The key of a file in `folder`: what may become "<folder>/<key>.json".
bool is_valid_key(const std::string &folder, const std::string &key) {
  if (folder == kMdevs)
    return is_normalized_uuid(key);
  if (folder == kVgpus || folder == kVfHealth || folder == kSriov)
    return is_address_key(key);
  if (folder == kVgpuTypes)
    return is_type_key(key);
  return is_object_id(key);
}

void check_key(const std::string &folder, const std::string &key) {
  if (!is_valid_key(folder, key))
    fail(Errc::InvalidArgument, "invalid key '" + key.substr(0, 80) + "' (not a valid file name in " + folder + "/)");
}

bool ends_with(const std::string &s, const std::string &suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

class Loader {
public:
  explicit Loader(const std::string &dir) : dir_(dir) {}

  std::vector<std::string> warnings;

  // Parses every <folder>/*.json; bad files are moved aside. Returns (file name, record) pairs.
  template <class Record, class Parse>
  std::vector<std::pair<std::string, Record>> read_folder(const char *folder, Parse parse) {
    std::vector<std::pair<std::string, Record>> out;
    const std::string path = dir_ + "/" + folder;
    for (const std::string &name : list(path)) {
      const std::string file = path + "/" + name;
      if (name.find(".tmp.") != std::string::npos) {
        if (::unlink(file.c_str()) == 0 || errno == ENOENT)
          warnings.push_back("removed stale temporary file " + std::string(folder) + "/" + name);
        else
          warnings.push_back("cannot remove stale temporary file " + file + ": " +
                             std::system_category().message(errno));
        continue;
      }
      if (!ends_with(name, ".json"))
        continue;
      struct stat st {};
      if (::lstat(file.c_str(), &st) != 0) {
        warnings.push_back("cannot stat " + file + ": " + std::system_category().message(errno) + "; ignored");
        continue;
      }
      if (!S_ISREG(st.st_mode)) {
        move_aside(folder, name, "not a regular file");
        continue;
      }
      if (st.st_size > kMaxRecordBytes) {
        move_aside(folder, name,
                   "too large (" + std::to_string(st.st_size) + " bytes; a record has at most " +
                       std::to_string(kMaxRecordBytes) + ")");
        continue;
      }
      std::string text;
      if (!read_whole_file(file, text)) {
        warnings.push_back("cannot read " + file + ": " + std::system_category().message(errno) + "; ignored");
        continue;
      }
      try {
        Json j = Json::parse(text);
        Record record = parse(j);
        const std::string key = name.substr(0, name.size() - 5);
        if (!is_valid_key(folder, key_of(record)))
          throw BadRecord("invalid key '" + key_of(record) + "'");
        if (key_of(record) != key)
          throw BadRecord("key '" + key_of(record) + "' does not match the file name");
        out.emplace_back(name, std::move(record));
      } catch (const Json::exception &e) {
        move_aside(folder, name, std::string("invalid JSON: ") + e.what());
      } catch (const BadRecord &e) {
        move_aside(folder, name, e.what());
      }
    }
    return out;
  }

  // Keeps the oldest record (by created_at, then id) for every unique value `fields` returns as (label, value);
  // moves the later ones aside.
  template <class Record, class Fields>
  std::map<std::string, Record> dedup(const char *folder, std::vector<std::pair<std::string, Record>> items,
                                      Fields fields) {
    std::stable_sort(items.begin(), items.end(), [](const auto &a, const auto &b) {
      return std::tie(a.second.created_at, a.second.id) < std::tie(b.second.created_at, b.second.id);
    });
    std::map<std::string, Record> out;
    std::set<std::pair<std::string, std::string>> seen;
    for (auto &[file, record] : items) {
      const std::vector<std::pair<std::string, std::string>> values = fields(record);
      auto clash = std::find_if(values.begin(), values.end(), [&](const auto &v) { return seen.count(v) != 0; });
      if (clash != values.end()) {
        move_aside(folder, file, "duplicate " + clash->first + " '" + clash->second + "' (an older record keeps it)");
        continue;
      }
      seen.insert(values.begin(), values.end());
      std::string key = record.id;
      out.emplace(std::move(key), std::move(record));
    }
    return out;
  }

  template <class Record> std::map<std::string, Record> to_map(std::vector<std::pair<std::string, Record>> items) {
    std::map<std::string, Record> out;
    for (auto &item : items) {
      std::string key = key_of(item.second);
      out.emplace(std::move(key), std::move(item.second));
    }
    return out;
  }

private:
  std::vector<std::string> list(const std::string &path) {
    DIR *d = ::opendir(path.c_str());
    if (d == nullptr)
      file_fail("cannot read directory", path, errno);
    std::vector<std::string> names;
    errno = 0;
    while (const dirent *entry = ::readdir(d)) {
      std::string name = entry->d_name;
      if (name != "." && name != "..")
        names.push_back(std::move(name));
    }
    int e = errno;
    ::closedir(d);
    if (e != 0)
      file_fail("cannot read directory", path, e);
    std::sort(names.begin(), names.end());
    return names;
  }

  void move_aside(const char *folder, const std::string &name, const std::string &reason) {
    const std::string from = dir_ + "/" + folder + "/" + name;
    std::string target = std::string(kCorrupt) + "/" + folder + "-" + name + "." + std::to_string(::time(nullptr));
    try {
      ensure_dir(dir_ + "/" + kCorrupt);
      struct stat st {};
      std::string candidate = target;
      for (int n = 1; ::lstat((dir_ + "/" + candidate).c_str(), &st) == 0; ++n)
        candidate = target + "." + std::to_string(n);
      target = candidate;
      if (::rename(from.c_str(), (dir_ + "/" + target).c_str()) != 0)
        file_fail("cannot move aside", from, errno);
      fsync_dir(dir_ + "/" + kCorrupt);
      fsync_dir(dir_ + "/" + folder);
    } catch (const Error &e) {
      warnings.push_back("ignored corrupt file " + std::string(folder) + "/" + name + " (" + reason +
                         "), could not move it aside: " + e.what());
      return;
    }
    warnings.push_back("moved corrupt file " + std::string(folder) + "/" + name + " aside to " + target + ": " +
                       reason);
  }

  const std::string &dir_;
};

std::string file_path(const std::string &dir, const char *folder, const std::string &key) {
  return dir + "/" + folder + "/" + key + ".json";
}

template <class Map, class Record>
void put_one(std::uint64_t &revision, const std::string &dir, const char *folder, Map &map, const Record &record) {
  const std::string &key = key_of(record);
  check_key(folder, key);
  atomic_write_file(file_path(dir, folder, key), to_json(record).dump(2) + "\n");
  map.insert_or_assign(key, record);
  ++revision;
}

template <class Map>
void remove_one(std::uint64_t &revision, const std::string &dir, const char *folder, Map &map, const std::string &key) {
  check_key(folder, key);
  auto it = map.find(key);
  if (it == map.end())
    return;
  remove_file(file_path(dir, folder, key));
  map.erase(it);
  ++revision;
}

} // namespace

// ---- Store -----------------------------------------------------------------------------------------------------

Store::Store(std::string dir) : dir_(std::move(dir)) {
  ensure_dir(dir_, true); // the state directory itself may be a link an administrator made
  for (const char *folder : kFolders)
    ensure_dir(dir_ + "/" + folder);
}

std::vector<std::string> Store::load() {
  ++revision_;
  devices_.clear();
  instances_.clear();
  mdevs_.clear();
  intents_.clear();
  vgpus_.clear();
  vgpu_types_.clear();
  vf_health_.clear();
  sriov_.clear();

  ensure_dir(dir_, true);
  for (const char *folder : kFolders)
    ensure_dir(dir_ + "/" + folder);

  Loader loader(dir_);
  auto devices = loader.read_folder<DeviceRecord>(kDevices, device_from_json);
  auto instances = loader.read_folder<InstanceRecord>(kInstances, instance_from_json);
  auto mdevs = loader.read_folder<MdevRecord>(kMdevs, mdev_from_json);
  auto intents = loader.read_folder<Intent>(kJournal, intent_from_json);
  vgpus_ = loader.to_map(loader.read_folder<VgpuRecord>(kVgpus, vgpu_from_json));
  vgpu_types_ = loader.to_map(loader.read_folder<VgpuTypeRecord>(kVgpuTypes, vgpu_type_from_json));
  vf_health_ = loader.to_map(loader.read_folder<VfHealthRecord>(kVfHealth, vf_health_from_json));
  sriov_ = loader.to_map(loader.read_folder<SriovRecord>(kSriov, sriov_from_json));
  boot_id_.reset();
  std::string text;
  const std::string boot_file = dir_ + "/" + kBootId;
  struct stat st {};
  if (::lstat(boot_file.c_str(), &st) == 0) {
    if (S_ISREG(st.st_mode) && st.st_size <= 64 && read_whole_file(boot_file, text)) {
      while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
        text.pop_back();
      if (is_normalized_uuid(text))
        boot_id_ = text;
    }
    if (!boot_id_)
      loader.warnings.push_back("ignored " + std::string(kBootId) +
                                ": not a boot id (the next start counts as a new "
                                "boot only if the kernel's id differs)");
  }

  using Fields = std::vector<std::pair<std::string, std::string>>;
  devices_ = loader.dedup(kDevices, std::move(devices), [](const DeviceRecord &r) {
    return Fields{{"name", r.name}, {"address", r.pci_address}};
  });
  instances_ = loader.dedup(kInstances, std::move(instances), [](const InstanceRecord &r) {
    return Fields{{"name", r.name}};
  });
  mdevs_ = loader.to_map(std::move(mdevs));
  intents_ = loader.to_map(std::move(intents));
  return std::move(loader.warnings);
}

const DeviceRecord *Store::find_device(const std::string &id_or_name) const {
  return lookup_by_id_or_name(devices_, id_or_name,
                              [](const DeviceRecord &r) -> const std::string & { return r.name; });
}

const DeviceRecord *Store::find_device_by_address(const std::string &address) const {
  for (const auto &[id, record] : devices_)
    if (record.pci_address == address)
      return &record;
  return nullptr;
}

const InstanceRecord *Store::find_instance(const std::string &id_or_name) const {
  return lookup_by_id_or_name(instances_, id_or_name,
                              [](const InstanceRecord &r) -> const std::string & { return r.name; });
}

void Store::put_device(const DeviceRecord &record) {
  for (const auto &[id, other] : devices_) {
    if (id == record.id)
      continue;
    if (other.name == record.name)
      fail(Errc::NameExists, "a device named '" + record.name + "' already exists");
    if (other.pci_address == record.pci_address)
      fail(Errc::AlreadyExists, "device " + record.pci_address + " is already registered");
  }
  put_one(revision_, dir_, kDevices, devices_, record);
}

void Store::remove_device(const std::string &id) { remove_one(revision_, dir_, kDevices, devices_, id); }

void Store::put_instance(const InstanceRecord &record) {
  if (auto it = instances_.find(record.id);
      record.from_newer_version || (it != instances_.end() && it->second.from_newer_version))
    fail(Errc::InvalidArgument, "instance '" + record.name + "' was written by a newer hostdev: left untouched");
  for (const auto &[id, other] : instances_)
    if (id != record.id && other.name == record.name)
      fail(Errc::NameExists, "an instance named '" + record.name + "' already exists");
  put_one(revision_, dir_, kInstances, instances_, record);
}

void Store::remove_instance(const std::string &id) {
  if (auto it = instances_.find(id); it != instances_.end() && it->second.from_newer_version)
    fail(Errc::InvalidArgument, "instance '" + it->second.name + "' was written by a newer hostdev: left untouched");
  remove_one(revision_, dir_, kInstances, instances_, id);
}

void Store::put_mdev(const MdevRecord &record) { put_one(revision_, dir_, kMdevs, mdevs_, record); }

void Store::remove_mdev(const std::string &uuid) { remove_one(revision_, dir_, kMdevs, mdevs_, uuid); }

void Store::put_intent(const Intent &intent) { put_one(revision_, dir_, kJournal, intents_, intent); }

void Store::remove_intent(const std::string &id) { remove_one(revision_, dir_, kJournal, intents_, id); }

void Store::put_vgpu(const VgpuRecord &record) { put_one(revision_, dir_, kVgpus, vgpus_, record); }

void Store::remove_vgpu(const std::string &vf) { remove_one(revision_, dir_, kVgpus, vgpus_, vf); }

void Store::put_vgpu_type(const VgpuTypeRecord &record) { put_one(revision_, dir_, kVgpuTypes, vgpu_types_, record); }

void Store::put_vf_health(const VfHealthRecord &record) { put_one(revision_, dir_, kVfHealth, vf_health_, record); }

void Store::remove_vf_health(const std::string &vf) { remove_one(revision_, dir_, kVfHealth, vf_health_, vf); }

void Store::put_sriov(const SriovRecord &record) { put_one(revision_, dir_, kSriov, sriov_, record); }

void Store::remove_sriov(const std::string &pf) { remove_one(revision_, dir_, kSriov, sriov_, pf); }

void Store::set_boot_id(const std::string &boot_id) {
  if (!is_normalized_uuid(boot_id))
    fail(Errc::InvalidArgument, "invalid boot id '" + boot_id.substr(0, 40) + "'");
  atomic_write_file(dir_ + "/" + kBootId, boot_id + "\n");
  boot_id_ = boot_id;
  ++revision_;
}

} // namespace hostdev::core
