#include "core/store.hpp"

#include "core/error.hpp"
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

using Json = nlohmann::ordered_json;

constexpr int kFormatVersion = 1;
constexpr const char *kDevices = "devices";
constexpr const char *kInstances = "instances";
constexpr const char *kMdevs = "mdevs";
constexpr const char *kJournal = "journal";
constexpr const char *kCorrupt = "corrupt";

std::string errno_text(int e) { return std::system_category().message(e); }

[[noreturn]] void kernel_fail(const std::string &what, const std::string &path, int e) {
  fail(Errc::KernelError, what + " " + path + ": " + errno_text(e));
}

std::string parent_of(const std::string &path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos)
    return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

void ensure_dir(const std::string &path) {
  if (::mkdir(path.c_str(), 0700) == 0)
    return;
  int e = errno;
  struct stat st {};
  if (e == EEXIST && ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    return;
  kernel_fail("cannot create directory", path, e == EEXIST ? ENOTDIR : e);
}

void fsync_dir(const std::string &dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    kernel_fail("cannot open directory", dir, errno);
  if (::fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    kernel_fail("cannot fsync directory", dir, e);
  }
  ::close(fd);
}

bool is_lower_uuid(const std::string &s) {
  return is_uuid(s) && std::none_of(s.begin(), s.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

// The key of a file in `folder`: what may become "<folder>/<key>.json".
bool is_valid_key(const std::string &folder, const std::string &key) {
  return folder == kMdevs ? is_lower_uuid(key) : is_object_id(key);
}

void check_key(const std::string &folder, const std::string &key) {
  if (!is_valid_key(folder, key))
    fail(Errc::InvalidArgument, (folder == kMdevs ? "invalid mdev UUID '" : "invalid id '") + key +
                                    "' (not a valid file name in " + folder + "/)");
}

bool ends_with(const std::string &s, const std::string &suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// ---- JSON <-> records ----------------------------------------------------------------------------------------

struct BadRecord : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const Json &field(const Json &j, const char *key) {
  auto it = j.find(key);
  if (it == j.end())
    throw BadRecord(std::string("missing field '") + key + "'");
  return *it;
}

[[noreturn]] void wrong_type(const char *key, const char *expected) {
  throw BadRecord(std::string("field '") + key + "' is not " + expected);
}

std::string get_string(const Json &j, const char *key) {
  const Json &v = field(j, key);
  if (!v.is_string())
    wrong_type(key, "a string");
  return v.get<std::string>();
}

std::optional<std::string> get_optional_string(const Json &j, const char *key) {
  const Json &v = field(j, key);
  if (v.is_null())
    return std::nullopt;
  if (!v.is_string())
    wrong_type(key, "a string or null");
  return v.get<std::string>();
}

std::uint64_t get_u64(const Json &j, const char *key) {
  const Json &v = field(j, key);
  if (!v.is_number_unsigned())
    wrong_type(key, "a non-negative integer");
  return v.get<std::uint64_t>();
}

std::uint32_t get_u32(const Json &j, const char *key) {
  std::uint64_t v = get_u64(j, key);
  if (v > UINT32_MAX)
    wrong_type(key, "a 32-bit unsigned integer");
  return static_cast<std::uint32_t>(v);
}

std::optional<int> get_optional_int(const Json &j, const char *key) {
  const Json &v = field(j, key);
  if (v.is_null())
    return std::nullopt;
  if (v.is_number_unsigned() && v.get<std::uint64_t>() <= INT_MAX)
    return static_cast<int>(v.get<std::uint64_t>());
  if (v.is_number_integer() && !v.is_number_unsigned() && v.get<std::int64_t>() >= INT_MIN)
    return static_cast<int>(v.get<std::int64_t>());
  wrong_type(key, "an integer or null");
}

std::vector<std::string> get_string_array(const Json &j, const char *key) {
  const Json &v = field(j, key);
  if (!v.is_array())
    wrong_type(key, "an array of strings");
  std::vector<std::string> out;
  for (const auto &item : v) {
    if (!item.is_string())
      wrong_type(key, "an array of strings");
    out.push_back(item.get<std::string>());
  }
  return out;
}

void check_version(const Json &j) {
  if (!j.is_object())
    throw BadRecord("not a JSON object");
  const Json &v = field(j, "version");
  if (!v.is_number_integer() || v.get<std::int64_t>() != kFormatVersion)
    throw BadRecord("unsupported version " + v.dump());
}

Json to_json(const DeviceRecord &r) {
  Json j = {{"version", kFormatVersion}, {"id", r.id},           {"name", r.name},
            {"type", r.type},            {"pci_address", r.pci_address}, {"vendor_id", r.vendor_id},
            {"device_id", r.device_id}};
  j["iommu_group"] = r.iommu_group ? Json(*r.iommu_group) : Json(nullptr);
  j["created_at"] = r.created_at;
  j["attached_to"] = r.attached_to;
  j["host_driver"] = r.host_driver ? Json(*r.host_driver) : Json(nullptr);
  return j;
}

Json to_json(const InstanceRecord &r) {
  return {{"version", kFormatVersion}, {"id", r.id},
          {"name", r.name},            {"image", r.image},
          {"devices", r.devices},      {"gpu_profile", r.gpu_profile},
          {"mdev_uuid", r.mdev_uuid},  {"mdev_parent", r.mdev_parent},
          {"owner_uid", r.owner_uid},  {"created_at", r.created_at}};
}

Json to_json(const MdevRecord &r) {
  return {{"version", kFormatVersion}, {"uuid", r.uuid},         {"parent", r.parent},
          {"type_id", r.type_id},      {"instance_id", r.instance_id}, {"created_at", r.created_at}};
}

Json to_json(const Intent &r) {
  return {{"version", kFormatVersion},         {"id", r.id},
          {"op", r.op},                        {"instance_id", r.instance_id},
          {"bound_devices", r.bound_devices}, {"mdev_uuid", r.mdev_uuid},
          {"started_at", r.started_at}};
}

DeviceRecord device_from_json(const Json &j) {
  DeviceRecord r;
  r.id = get_string(j, "id");
  r.name = get_string(j, "name");
  r.type = get_string(j, "type");
  r.pci_address = get_string(j, "pci_address");
  r.vendor_id = get_string(j, "vendor_id");
  r.device_id = get_string(j, "device_id");
  r.iommu_group = get_optional_int(j, "iommu_group");
  r.created_at = get_u64(j, "created_at");
  r.attached_to = get_string(j, "attached_to");
  r.host_driver = get_optional_string(j, "host_driver");
  return r;
}

InstanceRecord instance_from_json(const Json &j) {
  InstanceRecord r;
  r.id = get_string(j, "id");
  r.name = get_string(j, "name");
  r.image = get_string(j, "image");
  r.devices = get_string_array(j, "devices");
  r.gpu_profile = get_string(j, "gpu_profile");
  r.mdev_uuid = get_string(j, "mdev_uuid");
  r.mdev_parent = get_string(j, "mdev_parent");
  r.owner_uid = get_u32(j, "owner_uid");
  r.created_at = get_u64(j, "created_at");
  return r;
}

MdevRecord mdev_from_json(const Json &j) {
  MdevRecord r;
  r.uuid = get_string(j, "uuid");
  r.parent = get_string(j, "parent");
  r.type_id = get_string(j, "type_id");
  r.instance_id = get_string(j, "instance_id");
  r.created_at = get_u64(j, "created_at");
  return r;
}

Intent intent_from_json(const Json &j) {
  Intent r;
  r.id = get_string(j, "id");
  r.op = get_string(j, "op");
  r.instance_id = get_string(j, "instance_id");
  r.bound_devices = get_string_array(j, "bound_devices");
  r.mdev_uuid = get_string(j, "mdev_uuid");
  r.started_at = get_u64(j, "started_at");
  return r;
}

const std::string &key_of(const DeviceRecord &r) { return r.id; }
const std::string &key_of(const InstanceRecord &r) { return r.id; }
const std::string &key_of(const MdevRecord &r) { return r.uuid; }
const std::string &key_of(const Intent &r) { return r.id; }

// ---- files -----------------------------------------------------------------------------------------------------

// Reads a whole regular file. Returns false (with errno set) on failure.
bool read_whole_file(const std::string &path, std::string &out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return false;
  out.clear();
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      errno = e;
      return false;
    }
    if (n == 0)
      break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return true;
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
          warnings.push_back("cannot remove stale temporary file " + file + ": " + errno_text(errno));
        continue;
      }
      if (!ends_with(name, ".json"))
        continue;
      struct stat st {};
      if (::lstat(file.c_str(), &st) != 0) {
        warnings.push_back("cannot stat " + file + ": " + errno_text(errno) + "; ignored");
        continue;
      }
      if (!S_ISREG(st.st_mode)) {
        move_aside(folder, name, "not a regular file");
        continue;
      }
      std::string text;
      if (!read_whole_file(file, text)) {
        warnings.push_back("cannot read " + file + ": " + errno_text(errno) + "; ignored");
        continue;
      }
      try {
        Json j = Json::parse(text);
        check_version(j);
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
      kernel_fail("cannot read directory", path, errno);
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
      kernel_fail("cannot read directory", path, e);
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
        kernel_fail("cannot move aside", from, errno);
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
void put_one(const std::string &dir, const char *folder, Map &map, const Record &record) {
  const std::string &key = key_of(record);
  check_key(folder, key);
  atomic_write_file(file_path(dir, folder, key), to_json(record).dump(2) + "\n");
  map.insert_or_assign(key, record);
}

template <class Map> void remove_one(const std::string &dir, const char *folder, Map &map, const std::string &key) {
  check_key(folder, key);
  auto it = map.find(key);
  if (it == map.end())
    return;
  const std::string path = file_path(dir, folder, key);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    kernel_fail("cannot remove", path, errno);
  fsync_dir(dir + "/" + folder);
  map.erase(it);
}

} // namespace

// ---- atomic_write_file ---------------------------------------------------------------------------------------

void atomic_write_file(const std::string &path, const std::string &content, unsigned mode) {
  std::string tmp = path + ".tmp.XXXXXX";
  int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0)
    kernel_fail("cannot create a temporary file for", path, errno);

  auto give_up = [&](const char *what, int e) {
    if (fd >= 0)
      ::close(fd);
    ::unlink(tmp.c_str());
    kernel_fail(what, path, e);
  };

  if (::fchmod(fd, static_cast<mode_t>(mode)) != 0)
    give_up("cannot set the mode of the temporary file for", errno);
  std::size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      give_up("cannot write", errno);
    if (n == 0)
      give_up("cannot write", EIO);
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0)
    give_up("cannot fsync", errno);
  int closed = ::close(fd);
  fd = -1;
  if (closed != 0)
    give_up("cannot close", errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    give_up("cannot rename the temporary file onto", errno);
  fsync_dir(parent_of(path));
}

// ---- Store -----------------------------------------------------------------------------------------------------

Store::Store(std::string dir) : dir_(std::move(dir)) {
  ensure_dir(dir_);
  for (const char *folder : {kDevices, kInstances, kMdevs, kJournal})
    ensure_dir(dir_ + "/" + folder);
}

std::vector<std::string> Store::load() {
  devices_.clear();
  instances_.clear();
  mdevs_.clear();
  intents_.clear();

  ensure_dir(dir_);
  for (const char *folder : {kDevices, kInstances, kMdevs, kJournal})
    ensure_dir(dir_ + "/" + folder);

  Loader loader(dir_);
  auto devices = loader.read_folder<DeviceRecord>(kDevices, device_from_json);
  auto instances = loader.read_folder<InstanceRecord>(kInstances, instance_from_json);
  auto mdevs = loader.read_folder<MdevRecord>(kMdevs, mdev_from_json);
  auto intents = loader.read_folder<Intent>(kJournal, intent_from_json);

  using Fields = std::vector<std::pair<std::string, std::string>>;
  devices_ = loader.dedup(kDevices, std::move(devices), [](const DeviceRecord &r) {
    return Fields{{"name", r.name}, {"address", r.pci_address}};
  });
  instances_ = loader.dedup(kInstances, std::move(instances),
                            [](const InstanceRecord &r) { return Fields{{"name", r.name}}; });
  mdevs_ = loader.to_map(std::move(mdevs));
  intents_ = loader.to_map(std::move(intents));
  return std::move(loader.warnings);
}

const DeviceRecord *Store::find_device(const std::string &id_or_name) const {
  if (auto it = devices_.find(id_or_name); it != devices_.end())
    return &it->second;
  for (const auto &[id, record] : devices_)
    if (record.name == id_or_name)
      return &record;
  return nullptr;
}

const DeviceRecord *Store::find_device_by_address(const std::string &address) const {
  for (const auto &[id, record] : devices_)
    if (record.pci_address == address)
      return &record;
  return nullptr;
}

const InstanceRecord *Store::find_instance(const std::string &id_or_name) const {
  if (auto it = instances_.find(id_or_name); it != instances_.end())
    return &it->second;
  for (const auto &[id, record] : instances_)
    if (record.name == id_or_name)
      return &record;
  return nullptr;
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
  put_one(dir_, kDevices, devices_, record);
}

void Store::remove_device(const std::string &id) { remove_one(dir_, kDevices, devices_, id); }

void Store::put_instance(const InstanceRecord &record) {
  for (const auto &[id, other] : instances_)
    if (id != record.id && other.name == record.name)
      fail(Errc::NameExists, "an instance named '" + record.name + "' already exists");
  put_one(dir_, kInstances, instances_, record);
}

void Store::remove_instance(const std::string &id) { remove_one(dir_, kInstances, instances_, id); }

void Store::put_mdev(const MdevRecord &record) { put_one(dir_, kMdevs, mdevs_, record); }

void Store::remove_mdev(const std::string &uuid) { remove_one(dir_, kMdevs, mdevs_, uuid); }

void Store::put_intent(const Intent &intent) { put_one(dir_, kJournal, intents_, intent); }

void Store::remove_intent(const std::string &id) { remove_one(dir_, kJournal, intents_, id); }

} // namespace hostdev::core
