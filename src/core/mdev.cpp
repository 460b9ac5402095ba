#include "core/mdev.hpp"

#include "core/error.hpp"
#include "core/vendor_vgpu.hpp"
#include "core/validate.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <limits>
#include <set>

namespace hostdev::core {
namespace {

constexpr const char *kMdevBus = "sys/class/mdev_bus";
constexpr const char *kMdevDevices = "sys/bus/mdev/devices";

std::string types_dir(const std::string &parent) {
  return std::string(kMdevBus) + "/" + parent + "/mdev_supported_types";
}

std::string mdev_path(const std::string &uuid) { return std::string(kMdevDevices) + "/" + uuid; }

unsigned read_unsigned(const Sysfs &sysfs, const std::string &path) {
  auto text = sysfs.read_trimmed(path);
  if (!text || text->empty())
    return 0;
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  return ec == std::errc() && end == text->data() + text->size() ? value : 0;
}

std::optional<int> read_group(const Sysfs &sysfs, const std::string &path) {
  auto name = sysfs.link_name(path);
  if (!name || name->empty())
    return std::nullopt;
  int value = 0;
  auto [end, ec] = std::from_chars(name->data(), name->data() + name->size(), value);
  if (ec != std::errc() || end != name->data() + name->size() || value < 0)
    return std::nullopt;
  return value;
}

} // namespace

unsigned parse_framebuffer_mb(const std::string &description) {
  std::string text(description);
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  static constexpr std::string_view key = "framebuffer";
  for (auto pos = text.find(key); pos != std::string::npos; pos = text.find(key, pos + 1)) {
    // The key must start a word: "framebuffer=", not "max_framebuffer=".
    if (pos > 0 && (std::isalnum(static_cast<unsigned char>(text[pos - 1])) || text[pos - 1] == '_'))
      continue;
    auto i = pos + key.size();
    while (i < text.size() && text[i] == ' ')
      ++i;
    if (i >= text.size() || (text[i] != '=' && text[i] != ':'))
      continue;
    ++i;
    while (i < text.size() && text[i] == ' ')
      ++i;
    unsigned long long value = 0;
    auto [end, ec] = std::from_chars(text.data() + i, text.data() + text.size(), value);
    if (ec != std::errc())
      continue;
    char unit = end < text.data() + text.size() ? *end : 'm';
    unsigned long long mb = value;
    if (unit == 'g') {
      mb = value > std::numeric_limits<unsigned>::max() / 1024ULL ? 0 : value * 1024ULL;
    } else if (unit == 'k') {
      mb = value / 1024ULL;
    } else if (unit == 't') {
      mb = value > std::numeric_limits<unsigned>::max() / (1024ULL * 1024ULL) ? 0 : value * 1024ULL * 1024ULL;
    }
    return mb > std::numeric_limits<unsigned>::max() ? 0 : static_cast<unsigned>(mb);
  }
  return 0;
}

std::vector<std::string> MdevBus::parent_names() const {
  auto names = sysfs_.list(kMdevBus);
  std::erase_if(names, [](const std::string &n) { return !is_safe_component(n); });
  return names;
}

const std::vector<MdevType> &MdevBus::types_of(const std::string &parent) const {
  if (auto it = cache_.find(parent); it != cache_.end())
    return *it->second;
  std::vector<MdevType> types;
  const auto dir = types_dir(parent);
  for (const auto &id : sysfs_.list(dir)) {
    if (!is_safe_component(id))
      continue;
    if (!sysfs_.is_dir(dir + "/" + id))
      continue;
    const auto base = dir + "/" + id + "/";
    MdevType t;
    t.id = id;
    t.name = single_line(sysfs_.read_trimmed(base + "name").value_or(""));
    if (t.name.empty())
      t.name = id;
    SharedText description(single_line(sysfs_.read_trimmed(base + "description").value_or("")));
    if (texts_.size() >= kTextsKept) // bounded, whatever the (untrusted) host offers
      texts_.clear();
    t.description = *texts_.insert(std::move(description)).first;
    t.device_api = single_line(sysfs_.read_trimmed(base + "device_api").value_or(""));
    t.framebuffer_mb = parse_framebuffer_mb(t.description.str());
    ++metadata_reads_;
    types.push_back(std::move(t));
  }
  if (types.empty()) {
    // Not cached: a parent whose types are not (yet) there should be looked at again next time.
    static const std::vector<MdevType> none;
    return none;
  }
  // The same list as another parent's (ids, names, descriptions: availability is not part of it): shared.
  std::erase_if(distinct_, [](const auto &list) { return list.use_count() == 1; }); // no parent uses it any more
  for (const auto &list : distinct_)
    if (*list == types)
      return *cache_.emplace(parent, list).first->second;
  auto list = std::make_shared<const std::vector<MdevType>>(std::move(types));
  if (distinct_.size() < kDistinctKept) // bounded, whatever the (untrusted) host offers: past it, not shared
    distinct_.push_back(list);
  return *cache_.emplace(parent, std::move(list)).first->second;
}

std::vector<MdevParent> MdevBus::parents() const {
  std::vector<MdevParent> out;
  for (const auto &name : parent_names())
    if (auto p = parent(name))
      out.push_back(std::move(*p));
  return out;
}

std::optional<MdevParent> MdevBus::parent(const std::string &name) const {
  if (!is_safe_component(name) || !sysfs_.exists(std::string(kMdevBus) + "/" + name))
    return std::nullopt;
  MdevParent parent;
  parent.name = name;
  parent.types = types_of(name);
  for (auto &t : parent.types)
    t.available = read_unsigned(sysfs_, types_dir(name) + "/" + t.id + "/available_instances");
  return parent;
}

namespace {

// The parent's name from the mdev's link: sys/bus/mdev/devices/<uuid> -> ../../../devices/.../<parent>/<uuid>.
std::optional<std::string> parent_from_target(const std::string &target) {
  std::string t = target;
  while (!t.empty() && t.back() == '/')
    t.pop_back();
  auto last = t.rfind('/');
  if (last == std::string::npos || last == 0)
    return std::nullopt;
  auto prev = t.rfind('/', last - 1);
  auto parent = t.substr(prev == std::string::npos ? 0 : prev + 1, last - (prev == std::string::npos ? 0 : prev + 1));
  if (!is_safe_component(parent))
    return std::nullopt;
  return parent;
}

} // namespace

std::vector<Mdev> MdevBus::list() const {
  std::vector<Mdev> out;
  for (const auto &name : sysfs_.list(kMdevDevices)) {
    if (!is_uuid(name))
      continue;
    if (auto m = find(name))
      out.push_back(std::move(*m));
  }
  return out;
}

std::optional<Mdev> MdevBus::find(const std::string &uuid) const {
  auto id = normalize_uuid(uuid);
  const auto dir = mdev_path(id);
  auto target = sysfs_.readlink(dir);
  if (!target)
    return std::nullopt;
  Mdev m;
  m.uuid = id;
  m.parent = parent_from_target(*target).value_or("");
  m.type_id = sysfs_.link_name(dir + "/mdev_type").value_or("");
  if (!is_safe_component(m.type_id))
    m.type_id.clear();
  m.profile_name = m.type_id;
  if (!m.parent.empty() && !m.type_id.empty()) {
    for (const auto &t : types_of(m.parent))
      if (t.id == m.type_id)
        m.profile_name = t.name;
  }
  m.iommu_group = read_group(sysfs_, dir + "/iommu_group");
  return m;
}

std::vector<ProfileSummary> MdevBus::profiles() const { return summarize_profiles(parents()); }

std::vector<ProfileSummary> summarize_profiles(const std::vector<MdevParent> &parents) {
  std::map<std::string, ProfileSummary> by_name;
  for (const auto &parent : parents) {
    for (const auto &t : parent.types) {
      auto [it, inserted] = by_name.try_emplace(t.name);
      if (inserted) {
        it->second.name = t.name;
        it->second.type_id = t.id;
        it->second.framebuffer_mb = t.framebuffer_mb;
      }
      it->second.available += t.available;
    }
  }
  std::vector<ProfileSummary> out;
  for (auto &[name, summary] : by_name)
    out.push_back(std::move(summary));
  return out;
}

void fail_profile_unavailable(const std::string &ref, const std::vector<std::string> &names) {
  std::set<std::string> unique(names.begin(), names.end());
  const std::string shown = ref.size() > 80 ? ref.substr(0, 80) + "..." : ref;
  fail(Errc::ProfileUnavailable,
       "no parent offers profile '" + shown + "'; available profiles: " +
           (unique.empty() ? std::string("none") : join(std::vector<std::string>(unique.begin(), unique.end()))));
}

const ProfileSummary &resolve_profile(const std::vector<ProfileSummary> &profiles, const std::string &ref) {
  for (const auto &p : profiles)
    if (p.name == ref)
      return p;
  for (const auto &p : profiles)
    if (profile_matches(ref, p.name, p.type_id))
      return p;
  std::vector<std::string> names;
  for (const auto &p : profiles)
    names.push_back(p.name);
  fail_profile_unavailable(ref, names);
}

MdevBus::Slot MdevBus::find_free(const std::string &profile) const { return free_slots(profile).front(); }

std::vector<MdevBus::Slot> MdevBus::free_slots(const std::string &profile) const {
  bool known = false;
  unsigned offering = 0;
  std::set<std::string> names;
  std::string shown; // the profile as name and type id
  std::vector<Slot> out;
  for (const auto &parent : parents()) {
    for (const auto &t : parent.types) {
      names.insert(t.name);
      if (!profile_matches(profile, t.name, t.id))
        continue;
      known = true;
      ++offering;
      shown = "'" + t.name + "'" + (t.name == t.id ? "" : " (type " + t.id + ")");
      if (t.available > 0)
        out.push_back(Slot{parent.name, t});
    }
  }
  if (!out.empty())
    return out;
  if (!known)
    fail_profile_unavailable(profile, std::vector<std::string>(names.begin(), names.end()));
  fail(Errc::NoCapacity, "profile " + shown + " has no free instance: all " + std::to_string(offering) +
                             " parent(s) offering it are in use; remove an mdev or choose a smaller profile");
}

void MdevBus::create(const std::string &parent, const std::string &type_id, const std::string &uuid,
                     std::chrono::milliseconds deadline) const {
  validate_component(parent, "mdev parent");
  validate_component(type_id, "mdev type");
  auto id = normalize_uuid(uuid);
  const auto type_dir = types_dir(parent) + "/" + type_id;
  if (!sysfs_.is_dir(std::string(kMdevBus) + "/" + parent))
    fail(Errc::DeviceNotFound, "no mdev parent '" + parent + "'");
  if (!sysfs_.is_dir(type_dir))
    fail(Errc::ProfileUnavailable, "mdev parent '" + parent + "' has no type '" + type_id + "'");
  if (sysfs_.exists(mdev_path(id)))
    fail(Errc::AlreadyExists, "an mdev " + id + " exists already");
  sysfs_.write(type_dir + "/create", id, deadline);
  if (!sysfs_.exists(mdev_path(id)))
    fail(Errc::KernelError, "the kernel accepted mdev " + id + " on " + parent + " but it did not appear in " +
                                sysfs_.display_path(kMdevDevices));
}

void MdevBus::remove(const std::string &uuid, std::chrono::milliseconds deadline) const {
  auto id = normalize_uuid(uuid);
  if (!sysfs_.exists(mdev_path(id)))
    fail(Errc::NotFound, "no mdev " + id);
  sysfs_.write(mdev_path(id) + "/remove", "1", deadline);
  if (sysfs_.exists(mdev_path(id)))
    fail(Errc::KernelError, "mdev " + id + " is still there after writing its remove attribute");
}

} // namespace hostdev::core
