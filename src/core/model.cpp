#include "core/model.hpp"

#include "core/validate.hpp"

#include <algorithm>
#include <utility>

namespace hostdev::core {
namespace {

std::optional<std::string> address_of(std::string_view text) {
  if (!is_pci_address(text))
    return std::nullopt;
  return normalize_pci_address(text);
}

std::optional<std::string> uuid_of(std::string_view text) {
  if (!is_uuid(text))
    return std::nullopt;
  return normalize_uuid(text);
}

// The path's components.
std::vector<std::string_view> components(std::string_view path) {
  std::vector<std::string_view> out;
  while (!path.empty()) {
    const auto slash = path.find('/');
    const auto part = path.substr(0, slash);
    if (!part.empty())
      out.push_back(part);
    if (slash == std::string_view::npos)
      break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

// A map's values, in key order.
template <class V> std::vector<V> values_of(const std::map<std::string, V> &map) {
  std::vector<V> out;
  out.reserve(map.size());
  for (const auto &[key, value] : map)
    out.push_back(value);
  return out;
}

} // namespace

void ModelChange::merge(const ModelChange &other) {
  functions.insert(other.functions.begin(), other.functions.end());
  parents.insert(other.parents.begin(), other.parents.end());
  mdevs.insert(other.mdevs.begin(), other.mdevs.end());
  parent_list = parent_list || other.parent_list;
  host = host || other.host;
  everything = everything || other.everything;
}

ModelChange change_of(const Uevent &event) {
  ModelChange c;
  const auto name = event.name();
  if (event.action == "move") {
    c.everything = true; // a renamed device: what it was called before is not in the event
    return c;
  }
  if (event.subsystem == "pci") {
    if (auto a = address_of(name))
      c.functions.insert(*a);
    else
      c.everything = true;
  } else if (event.subsystem == "mdev") {
    auto uuid = uuid_of(name);
    if (!uuid) {
      c.everything = true;
      return c;
    }
    c.mdevs.insert(*uuid);
    // The devpath ends "<parent>/<uuid>": the parent's availability moved too.
    const auto parts = components(event.devpath);
    if (parts.size() >= 2 && is_safe_component(parts[parts.size() - 2]))
      c.parents.insert(std::string(parts[parts.size() - 2]));
  } else if (event.subsystem == "mdev_bus") {
    c.parent_list = true;
    if (is_safe_component(name))
      c.parents.insert(name);
  } else if (event.subsystem == "module" || event.subsystem == "drivers") {
    // vfio-pci or vfio_iommu_type1 loaded or gone; a parent driver (mtty) registering its parent.
    c.host = true;
    c.parent_list = true;
  } else if (event.subsystem == "iommu_groups" || event.subsystem == "iommu") {
    c.everything = true; // groups remade: every function's group may have moved
  }
  return c;
}

ModelChange change_of_write(std::string_view path, std::string_view value) {
  ModelChange c;
  while (!value.empty() && (value.back() == '\n' || value.back() == ' '))
    value.remove_suffix(1);
  const auto p = components(path);
  auto at = [&](std::size_t i) -> std::string_view { return i < p.size() ? p[i] : std::string_view(); };
  // sys/bus/pci/devices/<addr>/<attribute>[/...]: the function itself (driver_override, sriov_numvfs, reset,
  // nvidia/current_vgpu_type) and, under its mdev_supported_types, an mdev of its.
  if (at(0) == "sys" && at(1) == "bus" && at(2) == "pci" && at(3) == "devices" && p.size() >= 6) {
    if (auto a = address_of(at(4))) {
      c.functions.insert(*a);
      if (at(5) == "mdev_supported_types") {
        c.parents.insert(*a);
        if (auto u = uuid_of(value))
          c.mdevs.insert(*u);
      }
      return c;
    }
  }
  // sys/bus/pci/drivers/<drv>/bind|unbind <addr>, sys/bus/pci/drivers_probe <addr>.
  if (at(0) == "sys" && at(1) == "bus" && at(2) == "pci") {
    const bool bind = at(3) == "drivers" && p.size() == 6 && (at(5) == "bind" || at(5) == "unbind");
    const bool probe = at(3) == "drivers_probe" && p.size() == 4;
    if (bind || probe) {
      if (auto a = address_of(value)) {
        c.functions.insert(*a);
        return c;
      }
    }
  }
  // sys/class/mdev_bus/<parent>/mdev_supported_types/<type>/create <uuid>.
  if (at(0) == "sys" && at(1) == "class" && at(2) == "mdev_bus" && p.size() == 7 && at(4) == "mdev_supported_types" &&
      at(6) == "create" && is_safe_component(at(3))) {
    c.parents.insert(std::string(at(3)));
    if (auto a = address_of(at(3)))
      c.functions.insert(*a);
    if (auto u = uuid_of(value))
      c.mdevs.insert(*u);
    return c;
  }
  // sys/bus/mdev/devices/<uuid>/remove.
  if (at(0) == "sys" && at(1) == "bus" && at(2) == "mdev" && at(3) == "devices" && p.size() == 6) {
    if (auto u = uuid_of(at(4))) {
      c.mdevs.insert(*u);
      return c;
    }
  }
  c.everything = true;
  return c;
}

void HostModel::rescan() {
  ++revision_;
  functions_.clear();
  parents_.clear();
  mdevs_.clear();
  vendor_vfs_.clear();
  for (auto &fn : pci_.read_all()) {
    ++counters_.function_reads;
    auto address = fn.address;
    functions_.emplace(std::move(address), std::move(fn));
  }
  for (const auto &[address, fn] : functions_)
    if (fn.physfn) // only VFs carry the framework's files: no failed open per function
      if (auto vf = vendor_.find(address))
        vendor_vfs_.emplace(address, std::move(*vf));
  read_parent_list();
  for (const auto &m : mdev_.list()) {
    ++counters_.mdev_reads;
    mdevs_.emplace(m.uuid, m);
  }
  facts_ = read_host_facts(sysfs_);
  ++counters_.rescans;
  scanned_ = true;
  derive();
}

void HostModel::read_parent_list() {
  std::set<std::string> now;
  for (const auto &name : mdev_.parent_names())
    now.insert(name);
  for (auto it = parents_.begin(); it != parents_.end();)
    if (!now.count(it->first)) {
      mdev_.forget(it->first);
      it = parents_.erase(it);
    } else {
      ++it;
    }
  for (const auto &name : now)
    if (!parents_.count(name))
      read_parent(name);
}

void HostModel::read_parent(const std::string &name) {
  ++counters_.parent_reads;
  if (auto p = mdev_.parent(name)) {
    parents_[name] = std::move(*p);
  } else {
    parents_.erase(name);
    mdev_.forget(name);
  }
}

void HostModel::read_mdev(const std::string &uuid) {
  ++counters_.mdev_reads;
  if (auto m = mdev_.find(uuid))
    mdevs_[uuid] = std::move(*m);
  else
    mdevs_.erase(uuid);
}

// Reads one function; `also` gets the functions the change implies (its PF, VFs it gained or lost).
void HostModel::read_function(const std::string &address, std::set<std::string> &also) {
  ++counters_.function_reads;
  auto old = functions_.find(address);
  std::optional<PciFunction> before;
  if (old != functions_.end())
    before = std::move(old->second);
  auto now = pci_.read_alone(address);
  auto vfs_of = [](const std::optional<PciFunction> &fn) {
    return fn ? std::set<std::string>(fn->virtfns.begin(), fn->virtfns.end()) : std::set<std::string>();
  };
  const auto vfs_before = vfs_of(before), vfs_now = vfs_of(now);
  for (const auto &vf : vfs_before)
    if (!vfs_now.count(vf))
      also.insert(vf);
  for (const auto &vf : vfs_now)
    if (!vfs_before.count(vf))
      also.insert(vf);
  for (const auto *fn : {&before, &now})
    if (*fn && (*fn)->physfn)
      also.insert(*(*fn)->physfn);
  if (now) {
    std::optional<VendorVf> vf;
    if (now->physfn)
      vf = vendor_.find(address);
    if (vf)
      vendor_vfs_[address] = std::move(*vf);
    else
      vendor_vfs_.erase(address);
    functions_[address] = std::move(*now);
    // Bound to a driver that makes it an mdev parent, or unbound from one.
    read_parent(address);
  } else {
    functions_.erase(address);
    vendor_vfs_.erase(address);
    parents_.erase(address);
    mdev_.forget(address);
    std::erase_if(mdevs_, [&](const auto &m) { return m.second.parent == address; });
  }
}

void HostModel::update(const ModelChange &change) {
  if (!scanned_ || change.everything) {
    if (scanned_)
      mdev_.rescan(); // what was missed may include a parent's driver changing under it: its types, too
    rescan();
    return;
  }
  if (change.empty())
    return;
  ++revision_; // what is read again may or may not differ: the revision says it may
  if (change.host)
    facts_ = read_host_facts(sysfs_);
  if (change.parent_list)
    read_parent_list();
  // Each function once: what one implies is read too, but not what that implies in turn beyond one step (a PF's
  // VFs, a VF's PF).
  std::set<std::string> done, also;
  for (const auto &address : change.functions) {
    read_function(address, also);
    done.insert(address);
  }
  for (const auto &address : also)
    if (done.insert(address).second) {
      std::set<std::string> ignored;
      read_function(address, ignored);
    }
  // A GPU's VFs share its capacity: a vGPU made or released on one changes what its siblings offer (an mdev
  // parent's available_instances, a vendor-VFIO VF's creatable types).
  auto siblings = [&](const std::string &address) {
    std::vector<std::string> out;
    auto fn = functions_.find(address);
    if (fn == functions_.end() || !fn->second.physfn)
      return out;
    if (auto pf = functions_.find(*fn->second.physfn); pf != functions_.end())
      out = pf->second.virtfns;
    return out;
  };
  for (const auto &address : done)
    if (vendor_vfs_.count(address))
      for (const auto &sibling : siblings(address))
        if (!done.count(sibling)) {
          if (auto vf = vendor_.find(sibling))
            vendor_vfs_[sibling] = std::move(*vf);
          else
            vendor_vfs_.erase(sibling);
        }
  std::set<std::string> parents = change.parents;
  for (const auto &uuid : change.mdevs) {
    if (auto it = mdevs_.find(uuid); it != mdevs_.end() && !it->second.parent.empty())
      parents.insert(it->second.parent); // a removed mdev's parent: known before it went
    read_mdev(uuid);
    if (auto it = mdevs_.find(uuid); it != mdevs_.end() && !it->second.parent.empty())
      parents.insert(it->second.parent);
  }
  std::set<std::string> with_siblings = parents;
  for (const auto &name : parents)
    for (const auto &sibling : siblings(name))
      if (parents_.count(sibling))
        with_siblings.insert(sibling);
  for (const auto &name : with_siblings)
    if (!done.count(name)) // a function read above has had its parent entry read already
      read_parent(name);
  derive();
}

void HostModel::derive() {
  std::vector<PciFunction> sorted;
  sorted.reserve(functions_.size());
  for (const auto &[address, fn] : functions_)
    sorted.push_back(fn);
  fill_group_members(sorted);
  sorted_ = std::make_shared<const std::vector<PciFunction>>(std::move(sorted));
}

std::vector<MdevParent> HostModel::parents() const { return values_of(parents_); }

std::shared_ptr<const std::vector<MdevParent>> HostModel::shared_parents() const {
  std::lock_guard lock(shared_parents_mutex_);
  if (!shared_parents_ || shared_parents_revision_ != revision_) {
    shared_parents_ = std::make_shared<const std::vector<MdevParent>>(values_of(parents_));
    shared_parents_revision_ = revision_;
  }
  return shared_parents_;
}
std::vector<Mdev> HostModel::mdevs() const { return values_of(mdevs_); }
std::vector<VendorVf> HostModel::vendor_vfs() const { return values_of(vendor_vfs_); }

} // namespace hostdev::core
