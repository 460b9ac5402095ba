#include "core/pci.hpp"

#include "core/error.hpp"
#include "core/host_names.hpp"
#include "core/validate.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <exception>
#include <map>
#include <mutex>
#include <system_error>
#include <thread>
#include <unordered_map>

#include <systemd/sd-hwdb.h>

namespace hostdev::core {
namespace {

constexpr const char *kPciDevices = "sys/bus/pci/devices";
constexpr const char *kIommuGroups = "sys/kernel/iommu_groups";

// Parses an unsigned number in `base` that must fill the whole text; nullopt otherwise.
std::optional<unsigned long long> parse_unsigned(std::string_view text, int base) {
  if (base == 16 && text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X'))
    text.remove_prefix(2);
  if (text.empty())
    return std::nullopt;
  unsigned long long value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  if (ec != std::errc() || end != text.data() + text.size())
    return std::nullopt;
  return value;
}

std::optional<int> parse_int(std::string_view text) {
  if (text.empty())
    return std::nullopt;
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size())
    return std::nullopt;
  return value;
}

// A hex attribute ("0x10de") no wider than `max`; 0 when absent or malformed.
// `Reader` is a Sysfs (with a path beneath the root) or a Sysfs::Dir (with an entry name).
template <class Reader>
unsigned long long read_hex(const Reader &sysfs, const std::string &path, unsigned long long max) {
  auto text = sysfs.read_trimmed(path);
  if (!text)
    return 0;
  auto value = parse_unsigned(*text, 16);
  return value && *value <= max ? *value : 0;
}

std::optional<unsigned> parse_u32(std::string_view text) {
  auto value = parse_unsigned(text, 10);
  if (!value || *value > 0xffffffffULL)
    return std::nullopt;
  return static_cast<unsigned>(*value);
}

template <class Reader> std::optional<unsigned> read_unsigned(const Reader &sysfs, const std::string &path) {
  auto text = sysfs.read_trimmed(path);
  return text ? parse_u32(*text) : std::nullopt;
}

template <class Reader> std::optional<int> group_from_link(const Reader &sysfs, const std::string &path) {
  auto name = sysfs.link_name(path);
  if (!name)
    return std::nullopt;
  auto group = parse_int(*name);
  if (!group || *group < 0)
    return std::nullopt;
  return group;
}

class NoNames final : public PciNames {
public:
  std::string vendor(std::uint16_t) const override { return {}; }
  std::string device(std::uint16_t, std::uint16_t) const override { return {}; }
};

class HwdbNames final : public PciNames {
public:
  HwdbNames() = default;
  HwdbNames(const HwdbNames &) = delete;
  HwdbNames &operator=(const HwdbNames &) = delete;

  std::string vendor(std::uint16_t vendor_id) const override {
    char modalias[32];
    std::snprintf(modalias, sizeof modalias, "pci:v%08X*", static_cast<unsigned>(vendor_id));
    return lookup(vendor_id, modalias, "ID_VENDOR_FROM_DATABASE");
  }
  std::string device(std::uint16_t vendor_id, std::uint16_t device_id) const override {
    char modalias[48];
    std::snprintf(modalias, sizeof modalias, "pci:v%08Xd%08X*", static_cast<unsigned>(vendor_id),
                  static_cast<unsigned>(device_id));
    return lookup(0x10000u | (static_cast<std::uint32_t>(vendor_id) << 16) | device_id, modalias,
                  "ID_MODEL_FROM_DATABASE");
  }

private:
  // One hwdb query (a glob match over the database: ~10 µs) per distinct id, not per function: a host has many
  // functions of few kinds. `id` is the vendor id (< 0x10000) or 0x10000 | vendor << 16 | device.
  // The database (hwdb.bin, ~10 MB) is mapped only for the query: kept mapped, the pages its lookups touched
  // stayed in a long-lived daemon's RSS (1.6 MB of the passthrough fixture's 8.9 MB), for names it already
  // knows. Opening it costs ~50 µs, once per id never seen before; a new hwdb.bin serves the next new id.
  std::string lookup(std::uint64_t id, const char *modalias, const char *property) const {
    std::lock_guard lock(mutex_);
    if (auto it = known_.find(id); it != known_.end())
      return it->second;
    std::string name;
    sd_hwdb *hwdb = nullptr;
    if (sd_hwdb_new(&hwdb) >= 0) {
      const char *value = nullptr;
      if (sd_hwdb_get(hwdb, modalias, property, &value) >= 0 && value)
        name = to_valid_utf8(value);
      sd_hwdb_unref(hwdb);
    }
    if (known_.size() < kKnownMax)
      known_.emplace(id, name);
    return name;
  }

  static constexpr std::size_t kKnownMax = 65536; // bounded, whatever the host's (untrusted) ids are
  mutable std::mutex mutex_;
  mutable std::unordered_map<std::uint64_t, std::string> known_;
};

} // namespace

std::unique_ptr<PciNames> make_hwdb_names() { return std::make_unique<HwdbNames>(); }
std::unique_ptr<PciNames> make_no_names() { return std::make_unique<NoNames>(); }

bool PciFunction::is_display() const noexcept {
  auto sub = class_code >> 8;
  return sub == 0x0300 || sub == 0x0302;
}
bool PciFunction::is_gpu() const noexcept { return is_display() || is_nvidia(); }
bool PciFunction::is_bridge() const noexcept { return (class_code >> 16) == 0x06; }
bool PciFunction::on_vfio() const noexcept { return driver && *driver == kVfioPciDriver; }

std::string hex4(std::uint16_t id) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04x", static_cast<unsigned>(id));
  return buf;
}

std::string class_hex(std::uint32_t class_code) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%06x", static_cast<unsigned>(class_code & 0xffffffu));
  return buf;
}

std::string pci_device_path(const std::string &address) { return std::string(kPciDevices) + "/" + address; }

std::optional<PciFunction> PciBus::read_function(const std::string &address, bool members) const {
  PciFunction fn;
  fn.address = address;
  // The device's directory once, then one openat per attribute.
  const auto dir = sysfs_.open_dir(pci_device_path(address));
  if (!dir)
    return std::nullopt; // not there, or vanished meanwhile
  const auto &d = *dir;
  fn.vendor_id = static_cast<std::uint16_t>(read_hex(d, "vendor", 0xffff));
  fn.device_id = static_cast<std::uint16_t>(read_hex(d, "device", 0xffff));
  fn.subsystem_vendor_id = static_cast<std::uint16_t>(read_hex(d, "subsystem_vendor", 0xffff));
  fn.subsystem_device_id = static_cast<std::uint16_t>(read_hex(d, "subsystem_device", 0xffff));
  fn.class_code = static_cast<std::uint32_t>(read_hex(d, "class", 0xffffff));
  fn.revision = static_cast<std::uint8_t>(read_hex(d, "revision", 0xff));
  fn.vendor_name = names_.vendor(fn.vendor_id);
  fn.device_name = names_.device(fn.vendor_id, fn.device_id);

  fn.iommu_group = group_from_link(d, "iommu_group");
  if (fn.iommu_group && members)
    fn.group_members = iommu_group_members(*fn.iommu_group);

  fn.driver = d.link_name("driver");
  if (auto ov = d.read_trimmed("driver_override"); ov && !ov->empty() && *ov != "(null)")
    fn.driver_override = *ov;
  if (auto numa = d.read_trimmed("numa_node"))
    fn.numa_node = parse_int(*numa).value_or(-1);
  fn.reset_method = d.read_trimmed("reset_method").value_or("");

  const auto totalvfs = d.read_trimmed("sriov_totalvfs");
  fn.sriov_totalvfs = totalvfs ? parse_u32(*totalvfs) : std::nullopt;
  fn.sriov_numvfs = totalvfs ? read_unsigned(d, "sriov_numvfs") : std::nullopt; // the two come together
  // The virtfnN links exist only on an SR-IOV PF with VFs enabled: the directory is listed only when that may be so
  // (not for most functions, which have no sriov_totalvfs; not for a PF whose sriov_numvfs says 0).
  const bool may_have_vfs = totalvfs && fn.sriov_numvfs.value_or(1) > 0;
  std::vector<std::pair<unsigned long long, std::string>> vfs;
  for (const auto &entry : may_have_vfs ? d.list() : std::vector<std::string>{}) {
    if (entry.rfind("virtfn", 0) != 0)
      continue;
    auto index = parse_unsigned(std::string_view(entry).substr(6), 10);
    if (!index)
      continue;
    if (auto vf = d.link_name(entry); vf && is_pci_address(*vf))
      vfs.emplace_back(*index, *vf);
  }
  std::sort(vfs.begin(), vfs.end());
  for (auto &vf : vfs)
    fn.virtfns.push_back(std::move(vf.second));
  if (auto pf = d.link_name("physfn"); pf && is_pci_address(*pf))
    fn.physfn = *pf;
  return fn;
}

std::vector<std::string> PciBus::addresses() const {
  auto names = sysfs_.list(kPciDevices);
  std::erase_if(names, [](const std::string &n) { return !is_pci_address(n); });
  return names;
}

std::optional<PciFunction> PciBus::read_alone(const std::string &address) const {
  return read_function(address, false);
}

std::vector<PciFunction> PciBus::read_all() const {
  const auto names = addresses(); // sorted
  std::vector<std::optional<PciFunction>> read(names.size());
  // Functions per thread below which another thread costs more than it saves (~60 µs per function on tmpfs).
  constexpr std::size_t kPerThread = 256;
  const std::size_t threads =
      std::min<std::size_t>({std::max(1u, std::thread::hardware_concurrency()), 4, names.size() / kPerThread});
  std::mutex failed_mutex;
  std::exception_ptr failed; // the first exception of a helper thread, thrown again here
  auto read_share = [&](std::size_t first, std::size_t step) {
    try {
      for (std::size_t i = first; i < names.size(); i += step)
        read[i] = read_alone(names[i]);
    } catch (...) {
      std::lock_guard lock(failed_mutex);
      if (!failed)
        failed = std::current_exception();
    }
  };
  if (threads <= 1) {
    read_share(0, 1);
  } else {
    std::vector<std::thread> helpers;
    try {
      for (std::size_t t = 1; t < threads; ++t)
        helpers.emplace_back(read_share, t, threads);
    } catch (const std::system_error &) {
      // No thread to be had: this one reads what the missing ones would have.
      for (std::size_t t = helpers.size() + 1; t < threads; ++t)
        read_share(t, threads);
    }
    read_share(0, threads);
    for (auto &h : helpers)
      h.join();
  }
  if (failed)
    std::rethrow_exception(failed);
  std::vector<PciFunction> out;
  out.reserve(names.size());
  for (auto &fn : read)
    if (fn) // a vanished device is skipped
      out.push_back(std::move(*fn));
  return out;
}

std::vector<PciFunction> PciBus::discover() const {
  auto out = read_all();
  fill_group_members(out);
  return out;
}

const PciFunction *find_function(const std::vector<PciFunction> &functions, const std::string &address) {
  auto fn = std::lower_bound(functions.begin(), functions.end(), address,
                             [](const PciFunction &f, const std::string &a) { return f.address < a; });
  return fn != functions.end() && fn->address == address ? &*fn : nullptr;
}

void fill_group_members(std::vector<PciFunction> &functions) {
  std::map<int, std::vector<std::string>> groups;
  for (const auto &fn : functions)
    if (fn.iommu_group)
      groups[*fn.iommu_group].push_back(fn.address);
  for (auto &fn : functions)
    if (fn.iommu_group)
      fn.group_members = groups[*fn.iommu_group];
    else
      fn.group_members.clear();
}

std::vector<PciFunction> PciBus::candidates(bool all) const {
  auto functions = discover();
  if (!all)
    std::erase_if(functions, [](const PciFunction &fn) { return !fn.is_gpu(); });
  return functions;
}

std::optional<PciFunction> PciBus::find(const std::string &address) const {
  return read_function(normalize_pci_address(address), true);
}

std::optional<std::string> PciBus::driver_of(const std::string &address) const {
  return sysfs_.link_name(pci_device_path(normalize_pci_address(address)) + "/driver");
}

std::optional<int> PciBus::iommu_group_of(const std::string &address) const {
  return group_from_link(sysfs_, pci_device_path(normalize_pci_address(address)) + "/iommu_group");
}

std::vector<std::string> PciBus::iommu_group_members(int group) const {
  if (group < 0)
    return {};
  return sysfs_.list(std::string(kIommuGroups) + "/" + std::to_string(group) + "/devices");
}

const char *gpu_mode_name(GpuMode mode) noexcept {
  switch (mode) {
  case GpuMode::Passthrough: return "passthrough";
  case GpuMode::Vgpu: return "vgpu";
  case GpuMode::None: break;
  }
  return "none";
}

namespace {

// True when `member` may share a group with `fn` without getting in the way: another function of the same
// slot (GPU audio) or a bridge, which stays on the host.
bool harmless_group_member(const PciFunction &fn, const PciFunction *member) {
  if (!member)
    return true; // not a PCI function we know of (cannot tell; do not complain)
  if (member->address == fn.address || member->is_bridge())
    return true;
  return member->address.substr(0, 10) == fn.address.substr(0, 10); // same domain:bus:device
}

void read_hugepages(const Sysfs &sysfs, HostReport &report) {
  const std::string dir = "sys/kernel/mm/hugepages";
  std::optional<unsigned long> chosen;
  for (const auto &entry : sysfs.list(dir)) {
    // hugepages-2048kB
    std::string_view e = entry;
    if (e.rfind("hugepages-", 0) != 0 || e.size() <= 12 || e.substr(e.size() - 2) != "kB")
      continue;
    auto size = parse_unsigned(e.substr(10, e.size() - 12), 10);
    if (!size || *size == 0 || *size > 0xffffffffULL)
      continue;
    if (*size == 2048 || !chosen || (*chosen != 2048 && *size < *chosen))
      chosen = static_cast<unsigned long>(*size);
  }
  if (!chosen)
    return;
  report.hugepage_size_kb = *chosen;
  const std::string base = dir + "/hugepages-" + std::to_string(*chosen) + "kB/";
  report.hugepages_total = read_unsigned(sysfs, base + "nr_hugepages").value_or(0);
  report.hugepages_free = read_unsigned(sysfs, base + "free_hugepages").value_or(0);
}

} // namespace

std::vector<std::string> HostReport::gpu_frameworks() const {
  std::vector<std::string> out;
  if (mdev_parent_count > 0)
    out.emplace_back("mdev");
  if (vendor_vf_count > 0)
    out.emplace_back("vendor-vfio");
  return out;
}

std::string HostReport::gpu_framework() const {
  std::string out;
  for (const auto &f : gpu_frameworks())
    out += (out.empty() ? "" : "+") + f;
  return out;
}

HostFacts read_host_facts(const Sysfs &sysfs) {
  HostFacts f;
  f.iommu_enabled = !sysfs.list(kIommuGroups).empty() || !sysfs.list("sys/class/iommu").empty();
  f.vfio_pci_available = sysfs.is_dir(std::string("sys/bus/pci/drivers/") + kVfioPciDriver);
  f.vfio_iommu_type1_loaded = sysfs.is_dir("sys/module/vfio_iommu_type1");
  HostReport pages;
  read_hugepages(sysfs, pages);
  f.hugepages_total = pages.hugepages_total;
  f.hugepages_free = pages.hugepages_free;
  f.hugepage_size_kb = pages.hugepage_size_kb;
  return f;
}

HostReport check_host(const Sysfs &sysfs, const std::vector<PciFunction> &functions, unsigned mdev_parent_count,
                      unsigned vendor_vf_count) {
  return check_host(read_host_facts(sysfs), functions, mdev_parent_count, vendor_vf_count);
}

HostReport check_host(const HostFacts &facts, const std::vector<PciFunction> &functions, unsigned mdev_parent_count,
                      unsigned vendor_vf_count) {
  HostReport r;
  r.iommu_enabled = facts.iommu_enabled;
  r.vfio_pci_available = facts.vfio_pci_available;
  r.vfio_iommu_type1_loaded = facts.vfio_iommu_type1_loaded;
  r.hugepages_total = facts.hugepages_total;
  r.hugepages_free = facts.hugepages_free;
  r.hugepage_size_kb = facts.hugepage_size_kb;
  r.mdev_parent_count = mdev_parent_count;
  r.vendor_vf_count = vendor_vf_count;
  r.gpu_count = static_cast<unsigned>(
      std::count_if(functions.begin(), functions.end(), [](const PciFunction &fn) { return fn.is_gpu(); }));

  if (mdev_parent_count > 0 || vendor_vf_count > 0)
    r.gpu_mode = GpuMode::Vgpu;
  else if (r.gpu_count > 0 && r.iommu_enabled && r.vfio_pci_available)
    r.gpu_mode = GpuMode::Passthrough;

  auto problem = [&](std::string message, std::string hint) {
    r.problems.push_back(Problem{std::move(message), std::move(hint)});
  };
  if (!r.iommu_enabled)
    problem("the IOMMU is not enabled: no device can be handed to a VM",
            "enable VT-d/AMD-Vi in firmware and boot with intel_iommu=on or amd_iommu=on (plus iommu=pt)");
  if (!r.vfio_pci_available)
    problem("the vfio-pci driver is not available", "modprobe vfio-pci; add it to /etc/modules-load.d/hostdev.conf");
  if (!r.vfio_iommu_type1_loaded)
    problem("the vfio_iommu_type1 module is not loaded",
            "modprobe vfio_iommu_type1; add it to /etc/modules-load.d/hostdev.conf");
  if (r.hugepages_total == 0)
    problem("no hugepages are reserved (warning: VM memory will use normal pages)",
            "reserve them with sysctl vm.nr_hugepages=<count> (persist in /etc/sysctl.d/hostdev.conf) or boot "
            "with hugepages=<count>");
  if (r.gpu_count == 0 && mdev_parent_count == 0 && vendor_vf_count == 0)
    problem("no GPU found", "check the card with lspci -nn; other devices can still be listed with --all");
  else if (r.gpu_count > 0 && r.gpu_mode == GpuMode::None)
    problem(std::to_string(r.gpu_count) + " GPU function(s) present but none can be handed to a VM",
            "fix the IOMMU and vfio problems above, then run the check again");

  if (r.iommu_enabled) {
    for (const auto &fn : functions) {
      if (!fn.is_display())
        continue;
      if (!fn.iommu_group) {
        problem("GPU " + fn.address + " is in no IOMMU group",
                "the IOMMU does not cover this slot; check the firmware's IOMMU/ACS settings");
        continue;
      }
      std::vector<std::string> others;
      for (const auto &member : fn.group_members) {
        auto it =
            std::find_if(functions.begin(), functions.end(), [&](const PciFunction &f) { return f.address == member; });
        if (!harmless_group_member(fn, it == functions.end() ? nullptr : &*it))
          others.push_back(member);
      }
      if (!others.empty()) {
        std::string list;
        for (const auto &o : others)
          list += (list.empty() ? "" : ", ") + o;
        problem("GPU " + fn.address + " shares IOMMU group " + std::to_string(*fn.iommu_group) + " with " + list +
                    ", which would have to be handed over too",
                "move the card to a slot with its own group, or enable ACS in firmware");
      }
    }
  }
  return r;
}

} // namespace hostdev::core
