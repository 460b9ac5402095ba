// Mediated devices: parents (sys/class/mdev_bus), their types (vGPU profiles), existing mdevs, create, remove.
#pragma once

#include "core/sysfs.hpp"

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

namespace hostdev::core {

// An immutable text whose copies share one buffer: a type's description is the same on every parent of a GPU
// model and is copied into the model, the bus objects' view and the metadata cache (the vGPU fixture's 5 120
// types: ~0.5 MB for each copy of them as plain strings).
class SharedText {
public:
  SharedText() = default;
  explicit SharedText(std::string text) : text_(std::make_shared<const std::string>(std::move(text))) {}
  const std::string &str() const noexcept { return text_ ? *text_ : empty(); }
  bool operator==(const SharedText &other) const noexcept { return str() == other.str(); }

private:
  static const std::string &empty() noexcept {
    static const std::string none;
    return none;
  }
  std::shared_ptr<const std::string> text_;
};

struct MdevType {
  std::string id;              // directory name under mdev_supported_types: "nvidia-1155", "mtty-2"
  std::string name;            // the "name" attribute ("NVIDIA L40S-4Q"); the id when the attribute is absent
  SharedText description;      // as the kernel gives it, single line
  std::string device_api;      // "vfio-pci"
  unsigned framebuffer_mb = 0; // parsed from description: "framebuffer=4096M" / "4G"; 0 when absent
  unsigned available = 0;      // available_instances

  bool operator==(const MdevType &) const = default;
};

// Parses "framebuffer=4096M", "framebuffer=4G", "framebuffer=512K"... anywhere in the description; MB or 0.
unsigned parse_framebuffer_mb(const std::string &description);

struct MdevParent {
  std::string name; // the parent device's name in sys/class/mdev_bus ("0000:a2:00.4", "mtty")
  std::vector<MdevType> types;

  bool operator==(const MdevParent &) const = default;
};

struct Mdev {
  std::string uuid;
  std::string parent;       // parent device name
  std::string type_id;      // "mtty-2"
  std::string profile_name; // the type's name attribute
  std::optional<int> iommu_group;

  bool operator==(const Mdev &) const = default;
};

// One profile across all parents.
struct ProfileSummary {
  std::string name;    // profile (type) name
  std::string type_id; // type id (first seen)
  unsigned framebuffer_mb = 0;
  unsigned available = 0;         // sum of available_instances over parents; vendor-VFIO: free VFs listing it
  std::string framework = "mdev"; // "mdev" | "vendor-vfio"
  unsigned quarantined = 0;       // VFs that list it but are quarantined (not counted in available)

  bool operator==(const ProfileSummary &) const = default;
};

// The profiles of `parents`, by name: framebuffer and type id from the first parent offering it, available summed.
std::vector<ProfileSummary> summarize_profiles(const std::vector<MdevParent> &parents);

// The profile `ref` names (profile_matches: the driver's name, the name without the vendor word, the type id).
// Throws ProfileUnavailable (naming the profiles there are) when none.
const ProfileSummary &resolve_profile(const std::vector<ProfileSummary> &profiles, const std::string &ref);

// Throws ProfileUnavailable: no parent or VF offers `ref`; `names` are the profiles there are.
[[noreturn]] void fail_profile_unavailable(const std::string &ref, const std::vector<std::string> &names);

// Profile metadata (names, descriptions, framebuffer) is read once per parent and kept; available_instances is
// re-read per parent on each call. rescan() forgets the cache (a parent appeared or vanished).
class MdevBus {
public:
  explicit MdevBus(const Sysfs &sysfs) : sysfs_(sysfs) {}

  std::vector<std::string> parent_names() const;
  std::vector<MdevParent> parents() const;
  // One parent with its types' availability read now; nullopt when `name` is no parent (any more).
  std::optional<MdevParent> parent(const std::string &name) const;
  std::vector<Mdev> list() const;
  std::optional<Mdev> find(const std::string &uuid) const;
  std::vector<ProfileSummary> profiles() const;

  // Finds a parent with available_instances > 0 for the profile (matched by type name or type id).
  // Throws ProfileUnavailable when no parent knows the profile, NoCapacity when none has room.
  struct Slot {
    std::string parent;
    MdevType type;
  };
  Slot find_free(const std::string &profile) const;
  // Every parent with room for the profile, in order; the same errors as find_free when there is none.
  std::vector<Slot> free_slots(const std::string &profile) const;

  // Writes `uuid` to the type's create attribute and checks the device appeared.
  void create(const std::string &parent, const std::string &type_id, const std::string &uuid,
              std::chrono::milliseconds deadline = Sysfs::kDefaultDeadline) const;
  // Writes 1 to the mdev's remove attribute and checks it is gone. NotFound when there is no such mdev.
  void remove(const std::string &uuid, std::chrono::milliseconds deadline = Sysfs::kDefaultDeadline) const;

  void rescan() const {
    cache_.clear();
    distinct_.clear();
  }
  // Forgets one parent's cached metadata (it vanished: a driver that comes back may offer other types).
  void forget(const std::string &parent) const { cache_.erase(parent); }
  // How many sysfs type directories were read for metadata (a test observes the cache through this).
  unsigned metadata_reads() const noexcept { return metadata_reads_; }
  // How many different lists of types the cache holds for all its parents (a test observes the sharing).
  std::size_t type_lists_kept() const noexcept { return distinct_.size(); }

private:
  const std::vector<MdevType> &types_of(const std::string &parent) const;
  const Sysfs &sysfs_;
  // Per parent; parents that offer the same types (the VFs of one GPU model) share one list.
  mutable std::map<std::string, std::shared_ptr<const std::vector<MdevType>>> cache_;
  mutable std::vector<std::shared_ptr<const std::vector<MdevType>>> distinct_; // the lists cache_ points to
  // Every description read, once: the parents of one GPU model share their types' descriptions.
  struct TextHash {
    std::size_t operator()(const SharedText &t) const noexcept { return std::hash<std::string>{}(t.str()); }
  };
  static constexpr std::size_t kTextsKept = 4096;
  static constexpr std::size_t kDistinctKept = 64;
  mutable std::unordered_set<SharedText, TextHash> texts_;
  mutable unsigned metadata_reads_ = 0;
};

} // namespace hostdev::core
