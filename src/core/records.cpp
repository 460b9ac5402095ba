#include "core/records.hpp"

#include "core/error.hpp"
#include "core/validate.hpp"

#include <algorithm>

#include <climits>

namespace hostdev::core {
namespace {

constexpr int kFormatVersion = 1;

const RecordJson &field(const RecordJson &j, const char *key) {
  auto it = j.find(key);
  if (it == j.end())
    throw BadRecord(std::string("missing field '") + key + "'");
  return *it;
}

[[noreturn]] void wrong_type(const char *key, const char *expected) {
  throw BadRecord(std::string("field '") + key + "' is not " + expected);
}

std::string get_string(const RecordJson &j, const char *key) {
  const RecordJson &v = field(j, key);
  if (!v.is_string())
    wrong_type(key, "a string");
  return v.get<std::string>();
}

std::optional<std::string> get_optional_string(const RecordJson &j, const char *key) {
  const RecordJson &v = field(j, key);
  if (v.is_null())
    return std::nullopt;
  if (!v.is_string())
    wrong_type(key, "a string or null");
  return v.get<std::string>();
}

std::uint64_t get_u64(const RecordJson &j, const char *key) {
  const RecordJson &v = field(j, key);
  if (!v.is_number_unsigned())
    wrong_type(key, "a non-negative integer");
  return v.get<std::uint64_t>();
}

std::uint32_t get_u32(const RecordJson &j, const char *key) {
  std::uint64_t v = get_u64(j, key);
  if (v > UINT32_MAX)
    wrong_type(key, "a 32-bit unsigned integer");
  return static_cast<std::uint32_t>(v);
}

std::optional<int> get_optional_int(const RecordJson &j, const char *key) {
  const RecordJson &v = field(j, key);
  if (v.is_null())
    return std::nullopt;
  if (v.is_number_unsigned() && v.get<std::uint64_t>() <= INT_MAX)
    return static_cast<int>(v.get<std::uint64_t>());
  if (v.is_number_integer() && !v.is_number_unsigned() && v.get<std::int64_t>() >= INT_MIN)
    return static_cast<int>(v.get<std::int64_t>());
  wrong_type(key, "an integer or null");
}

std::vector<std::string> get_string_array(const RecordJson &j, const char *key) {
  const RecordJson &v = field(j, key);
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

// Fields added after version 1 was first written: absent in older files, so a default stands in.
std::string get_string_or(const RecordJson &j, const char *key, const std::string &fallback) {
  return j.contains(key) ? get_string(j, key) : fallback;
}

std::uint32_t get_u32_or(const RecordJson &j, const char *key, std::uint32_t fallback) {
  return j.contains(key) ? get_u32(j, key) : fallback;
}

bool get_bool(const RecordJson &j, const char *key) {
  const RecordJson &v = field(j, key);
  if (!v.is_boolean())
    wrong_type(key, "true or false");
  return v.get<bool>();
}

bool get_bool_or(const RecordJson &j, const char *key, bool fallback) {
  return j.contains(key) ? get_bool(j, key) : fallback;
}

// ":1.42": what the bus driver assigns; never reused while the bus runs.
bool is_unique_bus_name(const std::string &s) {
  if (s.size() < 4 || s.size() > 64 || s[0] != ':')
    return false;
  const auto dot = s.find('.');
  if (dot == std::string::npos || dot == 1 || dot + 1 == s.size())
    return false;
  return std::all_of(s.begin() + 1, s.end(), [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
}

bool is_address(const std::string &s) { return is_pci_address(s) && normalize_pci_address(s) == s; }

void check_version(const RecordJson &j) {
  if (!j.is_object())
    throw BadRecord("not a JSON object");
  const RecordJson &v = field(j, "version");
  if (!v.is_number_integer() || v.get<std::int64_t>() != kFormatVersion)
    throw BadRecord("unsupported version " + v.dump());
}

// Content: what the API would have accepted. A record is untrusted input like any other (a hand edit, a bug of
// another version, an attacker with write access to a backup): its strings become paths, polkit details and
// D-Bus values.
[[noreturn]] void bad_content(const char *key, const std::string &why) {
  throw BadRecord(std::string("field '") + key + "' " + why);
}

void check(bool ok, const char *key, const char *what) {
  if (!ok)
    bad_content(key, std::string("is not ") + what);
}

bool is_lower_hex4(const std::string &s) {
  return s.size() == 4 &&
         std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// Runs one of the API's validators; its complaint becomes the record's.
template <class F> void validated(const char *key, F f) {
  try {
    f();
  } catch (const Error &e) {
    bad_content(key, std::string("is invalid: ") + e.what());
  }
}

void check_content(const DeviceRecord &r) {
  validated("name", [&] { validate_name(r.name, "device name"); });
  check(r.type == "gpu" || r.type == "pci", "type", "\"gpu\" or \"pci\"");
  check(is_pci_address(r.pci_address) && normalize_pci_address(r.pci_address) == r.pci_address, "pci_address",
        "a normalized PCI address");
  check(is_lower_hex4(r.vendor_id), "vendor_id", "four lower-case hex digits");
  check(is_lower_hex4(r.device_id), "device_id", "four lower-case hex digits");
  check(!r.iommu_group || *r.iommu_group >= 0, "iommu_group", "a group number");
  check(r.attached_to.empty() || is_object_id(r.attached_to), "attached_to", "empty or an instance id");
  check(!r.host_driver || is_safe_component(*r.host_driver), "host_driver", "a driver name");
  check(r.subsystem_vendor_id.empty() || is_lower_hex4(r.subsystem_vendor_id), "subsystem_vendor_id",
        "empty or four lower-case hex digits");
  check(r.subsystem_device_id.empty() || is_lower_hex4(r.subsystem_device_id), "subsystem_device_id",
        "empty or four lower-case hex digits");
}

void check_content(const InstanceRecord &r) {
  validated("name", [&] { validate_name(r.name, "instance name"); });
  validated("image", [&] { validate_image(r.image); });
  for (const auto &id : r.devices)
    check(is_object_id(id), "devices", "a list of device ids");
  validated("gpu_profile", [&] { validate_profile(r.gpu_profile); });
  check(r.mdev_uuid.empty() || is_normalized_uuid(r.mdev_uuid), "mdev_uuid", "empty or a lower-case UUID");
  check(r.mdev_parent.empty() || is_safe_component(r.mdev_parent), "mdev_parent", "empty or a device name");
  check(r.vgpu_vf.empty() || is_address(r.vgpu_vf), "vgpu_vf", "empty or a normalized PCI address");
  check(r.vgpu_vf.empty() == (r.vgpu_type == 0), "vgpu_type", "set exactly when vgpu_vf is");
  check(r.uuid.empty() || is_normalized_uuid(r.uuid), "uuid", "empty or a lower-case UUID");
  check(r.mdev_uuid.empty() || r.vgpu_vf.empty(), "vgpu_vf", "empty when the instance has an mdev");
  check(r.state == "active" || r.state == "degraded" || r.state == "restoring", "state",
        "\"active\", \"degraded\" or \"restoring\"");
  check(r.state_reason.size() <= 4096 && to_valid_utf8(r.state_reason) == r.state_reason, "state_reason",
        "a text of at most 4096 bytes");
  check(r.lease_owner.empty() || is_unique_bus_name(r.lease_owner), "lease_owner", "empty or a unique bus name");
  check(r.lease_owner.empty() || !r.persistent, "persistent", "false for a leased instance");
  check(r.granted_nodes.size() <= 64, "granted_nodes", "a short list");
  for (const auto &node : r.granted_nodes)
    check(node.rfind("/dev/vfio/", 0) == 0 && is_safe_component(node.substr(10)), "granted_nodes",
          "a list of /dev/vfio/ nodes");
}

void check_content(const VgpuRecord &r) {
  check(is_address(r.vf), "vf", "a normalized PCI address");
  check(r.type_id != 0, "type_id", "a vGPU type id");
  check(r.instance_id.empty() || is_object_id(r.instance_id), "instance_id", "empty or an instance id");
  check(r.uuid.empty() || is_normalized_uuid(r.uuid), "uuid", "empty or a lower-case UUID");
}

void check_content(const VgpuTypeRecord &r) {
  check(is_type_key(r.id), "id", "a decimal vGPU type id");
  check(!r.name.empty() && r.name.size() <= 128 && to_valid_utf8(r.name) == r.name && single_line(r.name) == r.name,
        "name", "a profile name of one line");
}

void check_content(const VfHealthRecord &r) {
  check(is_address(r.vf), "vf", "a normalized PCI address");
  check(r.failed_instances.size() <= 64, "failed_instances", "a short list");
  for (const auto &id : r.failed_instances)
    check(is_object_id(id), "failed_instances", "a list of instance ids");
}

void check_content(const SriovRecord &r) {
  check(is_address(r.pf), "pf", "a normalized PCI address");
  check(r.num_vfs <= 65535, "num_vfs", "a VF count");
  check(r.vendor_id.empty() || is_lower_hex4(r.vendor_id), "vendor_id", "empty or four lower-case hex digits");
  check(r.device_id.empty() || is_lower_hex4(r.device_id), "device_id", "empty or four lower-case hex digits");
}

void check_content(const MdevRecord &r) {
  check(is_safe_component(r.parent), "parent", "a device name");
  check(is_safe_component(r.type_id), "type_id", "a type id");
  check(r.instance_id.empty() || is_object_id(r.instance_id), "instance_id", "empty or an instance id");
}

void check_content(const Intent &r) {
  check(r.op == "create-instance" || r.op == "delete-instance", "op", "a known operation");
  check(r.instance_id.empty() || is_object_id(r.instance_id), "instance_id", "empty or an instance id");
  for (const auto &id : r.bound_devices)
    check(is_object_id(id), "bound_devices", "a list of device ids");
  check(r.mdev_uuid.empty() || is_normalized_uuid(r.mdev_uuid), "mdev_uuid", "empty or a lower-case UUID");
  check(r.vgpu_vf.empty() || is_address(r.vgpu_vf), "vgpu_vf", "empty or a normalized PCI address");
}

} // namespace

bool is_type_key(const std::string &key) noexcept {
  if (key.empty() || key.size() > 10 || key[0] == '0' ||
      !std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  return std::stoull(key) <= UINT32_MAX;
}

RecordJson to_json(const DeviceRecord &r) {
  RecordJson j = {{"version", kFormatVersion},
                  {"id", r.id},
                  {"name", r.name},
                  {"type", r.type},
                  {"pci_address", r.pci_address},
                  {"vendor_id", r.vendor_id},
                  {"device_id", r.device_id}};
  j["iommu_group"] = r.iommu_group ? RecordJson(*r.iommu_group) : RecordJson(nullptr);
  j["created_at"] = r.created_at;
  j["attached_to"] = r.attached_to;
  j["host_driver"] = r.host_driver ? RecordJson(*r.host_driver) : RecordJson(nullptr);
  j["subsystem_vendor_id"] = r.subsystem_vendor_id;
  j["subsystem_device_id"] = r.subsystem_device_id;
  j["on_vfio"] = r.on_vfio;
  return j;
}

RecordJson to_json(const InstanceRecord &r) {
  return {{"version", kFormatVersion},
          {"id", r.id},
          {"name", r.name},
          {"image", r.image},
          {"devices", r.devices},
          {"gpu_profile", r.gpu_profile},
          {"mdev_uuid", r.mdev_uuid},
          {"mdev_parent", r.mdev_parent},
          {"owner_uid", r.owner_uid},
          {"created_at", r.created_at},
          {"vgpu_vf", r.vgpu_vf},
          {"vgpu_type", r.vgpu_type},
          {"uuid", r.uuid},
          {"state", r.state},
          {"state_reason", r.state_reason},
          {"persistent", r.persistent},
          {"lease_owner", r.lease_owner},
          {"lease_pid", r.lease_pid},
          {"lease_start", r.lease_start},
          {"granted_nodes", r.granted_nodes},
          {"granted_uid", r.granted_uid},
          {"memlock_pid", r.memlock_pid},
          {"memlock_bytes", r.memlock_bytes}};
}

RecordJson to_json(const MdevRecord &r) {
  return {{"version", kFormatVersion},    {"uuid", r.uuid},
          {"parent", r.parent},           {"type_id", r.type_id},
          {"instance_id", r.instance_id}, {"created_at", r.created_at}};
}

RecordJson to_json(const Intent &r) {
  return {{"version", kFormatVersion},
          {"id", r.id},
          {"op", r.op},
          {"instance_id", r.instance_id},
          {"bound_devices", r.bound_devices},
          {"mdev_uuid", r.mdev_uuid},
          {"started_at", r.started_at},
          {"vgpu_vf", r.vgpu_vf}};
}

RecordJson to_json(const VgpuRecord &r) {
  return {{"version", kFormatVersion},    {"vf", r.vf},     {"type_id", r.type_id},
          {"instance_id", r.instance_id}, {"uuid", r.uuid}, {"created_at", r.created_at}};
}

RecordJson to_json(const VgpuTypeRecord &r) {
  return {{"version", kFormatVersion},
          {"id", r.id},
          {"name", r.name},
          {"framebuffer_mb", r.framebuffer_mb},
          {"learnt_at", r.learnt_at}};
}

RecordJson to_json(const VfHealthRecord &r) {
  return {{"version", kFormatVersion},
          {"vf", r.vf},
          {"failed_instances", r.failed_instances},
          {"quarantined", r.quarantined},
          {"changed_at", r.changed_at}};
}

RecordJson to_json(const SriovRecord &r) {
  return {{"version", kFormatVersion}, {"pf", r.pf},
          {"num_vfs", r.num_vfs},      {"set_at", r.set_at},
          {"vendor_id", r.vendor_id},  {"device_id", r.device_id}};
}

DeviceRecord device_from_json(const RecordJson &j) {
  check_version(j);
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
  r.subsystem_vendor_id = get_string_or(j, "subsystem_vendor_id", "");
  r.subsystem_device_id = get_string_or(j, "subsystem_device_id", "");
  r.on_vfio = get_bool_or(j, "on_vfio", false);
  check_content(r);
  return r;
}

InstanceRecord instance_from_json(const RecordJson &j) {
  if (j.is_object() && j.contains("version") && j["version"].is_number_unsigned() &&
      j["version"].get<std::uint64_t>() > static_cast<std::uint64_t>(kFormatVersion)) {
    // A downgrade: keep the instance visible and untouched rather than move its file aside.
    InstanceRecord r;
    r.id = get_string(j, "id");
    r.name = get_string(j, "name");
    validated("name", [&] { validate_name(r.name, "instance name"); });
    r.from_newer_version = true;
    r.state = "degraded";
    r.state_reason = "written by a newer hostdev (format " + std::to_string(j["version"].get<std::uint64_t>()) +
                     "; this one reads " + std::to_string(kFormatVersion) +
                     "): left untouched, with everything recorded for it; run the newer hostdev to use it";
    return r;
  }
  check_version(j);
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
  r.vgpu_vf = get_string_or(j, "vgpu_vf", "");
  r.vgpu_type = get_u32_or(j, "vgpu_type", 0);
  r.uuid = get_string_or(j, "uuid", "");
  r.state = get_string_or(j, "state", "active");
  r.state_reason = get_string_or(j, "state_reason", "");
  r.persistent = get_bool_or(j, "persistent", true);
  r.lease_owner = get_string_or(j, "lease_owner", "");
  r.lease_pid = get_u32_or(j, "lease_pid", 0);
  r.lease_start = j.contains("lease_start") ? get_u64(j, "lease_start") : 0;
  r.granted_nodes = j.contains("granted_nodes") ? get_string_array(j, "granted_nodes") : std::vector<std::string>{};
  r.granted_uid = get_u32_or(j, "granted_uid", 0);
  r.memlock_pid = get_u32_or(j, "memlock_pid", 0);
  r.memlock_bytes = j.contains("memlock_bytes") ? get_u64(j, "memlock_bytes") : 0;
  check_content(r);
  return r;
}

MdevRecord mdev_from_json(const RecordJson &j) {
  check_version(j);
  MdevRecord r;
  r.uuid = get_string(j, "uuid");
  r.parent = get_string(j, "parent");
  r.type_id = get_string(j, "type_id");
  r.instance_id = get_string(j, "instance_id");
  r.created_at = get_u64(j, "created_at");
  check_content(r);
  return r;
}

Intent intent_from_json(const RecordJson &j) {
  check_version(j);
  Intent r;
  r.id = get_string(j, "id");
  r.op = get_string(j, "op");
  r.instance_id = get_string(j, "instance_id");
  r.bound_devices = get_string_array(j, "bound_devices");
  r.mdev_uuid = get_string(j, "mdev_uuid");
  r.started_at = get_u64(j, "started_at");
  r.vgpu_vf = get_string_or(j, "vgpu_vf", "");
  check_content(r);
  return r;
}

VgpuRecord vgpu_from_json(const RecordJson &j) {
  check_version(j);
  VgpuRecord r;
  r.vf = get_string(j, "vf");
  r.type_id = get_u32(j, "type_id");
  r.instance_id = get_string(j, "instance_id");
  r.uuid = get_string(j, "uuid");
  r.created_at = get_u64(j, "created_at");
  check_content(r);
  return r;
}

VgpuTypeRecord vgpu_type_from_json(const RecordJson &j) {
  check_version(j);
  VgpuTypeRecord r;
  r.id = get_string(j, "id");
  r.name = get_string(j, "name");
  r.framebuffer_mb = get_u32(j, "framebuffer_mb");
  r.learnt_at = get_u64(j, "learnt_at");
  check_content(r);
  return r;
}

VfHealthRecord vf_health_from_json(const RecordJson &j) {
  check_version(j);
  VfHealthRecord r;
  r.vf = get_string(j, "vf");
  r.failed_instances = get_string_array(j, "failed_instances");
  r.quarantined = get_bool(j, "quarantined");
  r.changed_at = get_u64(j, "changed_at");
  check_content(r);
  return r;
}

SriovRecord sriov_from_json(const RecordJson &j) {
  check_version(j);
  SriovRecord r;
  r.pf = get_string(j, "pf");
  r.num_vfs = get_u32(j, "num_vfs");
  r.set_at = get_u64(j, "set_at");
  r.vendor_id = get_string_or(j, "vendor_id", "");
  r.device_id = get_string_or(j, "device_id", "");
  check_content(r);
  return r;
}

} // namespace hostdev::core
