// vGPUs across both frameworks: placement (least-loaded GPU first), the vendor-VFIO type catalogue and resources,
// VF health (quarantine), and SR-IOV VF counts.
#include "core/service.hpp"

#include "core/error.hpp"
#include "core/ids.hpp"
#include "core/validate.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

namespace hostdev::core {
namespace {

constexpr unsigned kQuarantineAfter = 2; // failed guest starts, on distinct instances

} // namespace

std::optional<VgpuType> Service::vgpu_type(std::uint32_t id, const HostView *view) const {
  if (auto it = store_.vgpu_types().find(std::to_string(id)); it != store_.vgpu_types().end())
    return VgpuType{id, it->second.name, it->second.framebuffer_mb};
  if (view != nullptr)
    for (const auto &vf : view->vendor_vfs)
      for (const auto &t : vf.creatable)
        if (t.id == id)
          return t;
  return std::nullopt;
}

unsigned Service::learn_vgpu_types(const HostView &view) {
  unsigned learnt = 0;
  std::set<std::uint32_t> seen;
  for (const auto &vf : view.vendor_vfs) {
    for (const auto &t : vf.creatable) {
      if (!seen.insert(t.id).second)
        continue;
      auto it = store_.vgpu_types().find(std::to_string(t.id));
      if (it != store_.vgpu_types().end() && it->second.name == t.name)
        continue;
      VgpuTypeRecord rec;
      rec.id = std::to_string(t.id);
      rec.name = t.name;
      rec.framebuffer_mb = t.framebuffer_mb;
      rec.learnt_at = now_usec();
      store_.put_vgpu_type(rec);
      ++learnt;
    }
  }
  return learnt;
}

void Service::add_vendor_resources(const HostView &view, GpuResources &res) const {
  std::map<std::uint32_t, ProfileSummary> by_id;
  auto entry = [&](const VgpuType &t) -> ProfileSummary & {
    auto &p = by_id[t.id];
    if (p.name.empty()) {
      p.name = t.name;
      p.type_id = std::to_string(t.id);
      p.framebuffer_mb = t.framebuffer_mb;
      p.framework = "vendor-vfio";
    }
    return p;
  };
  for (const auto &vf : view.vendor_vfs) {
    const bool quarantined = is_quarantined(vf.address);
    for (const auto &t : vf.creatable) {
      auto &p = entry(t);
      if (vf.current_type != 0)
        continue;
      ++(quarantined ? p.quarantined : p.available);
    }
    // An assigned type may be listed nowhere any more: the catalogue still knows it.
    if (vf.current_type != 0)
      if (auto t = vgpu_type(vf.current_type, &view))
        entry(*t);
  }
  // Types no VF lists now (every GPU too full for them) are still this host's profiles, with nothing available:
  // a request for one is NoCapacity, not ProfileUnavailable.
  if (!view.vendor_vfs.empty())
    for (const auto &[key, rec] : store_.vgpu_types())
      entry(VgpuType{static_cast<std::uint32_t>(std::stoul(key)), rec.name, rec.framebuffer_mb});
  for (auto &[id, p] : by_id)
    res.profiles.push_back(std::move(p));
  std::sort(res.profiles.begin(), res.profiles.end(), [](const ProfileSummary &a, const ProfileSummary &b) {
    return std::tie(a.framework, a.name) < std::tie(b.framework, b.name);
  });
}

std::map<std::string, Service::GpuLoad> Service::gpu_loads(const HostView &view) const {
  std::map<std::string, GpuLoad> load;
  for (const auto &m : view.mdevs) {
    auto &l = load[gpu_of_parent(view, m.parent)];
    ++l.vgpus;
    for (const auto &p : *view.parents)
      if (p.name == m.parent)
        for (const auto &t : p.types)
          if (t.id == m.type_id)
            l.framebuffer_mb += t.framebuffer_mb;
  }
  for (const auto &vf : view.vendor_vfs) {
    if (vf.current_type == 0)
      continue;
    auto &l = load[vf.gpu];
    ++l.vgpus;
    if (auto t = vgpu_type(vf.current_type, &view))
      l.framebuffer_mb += t->framebuffer_mb;
  }
  return load;
}

std::string gpu_of_parent(const HostView &view, const std::string &parent) {
  const auto *fn = find_function(*view.functions, parent);
  return fn && fn->physfn ? *fn->physfn : parent;
}

std::vector<VgpuCandidate> Service::vgpu_candidates(const std::string &profile, const HostView &view) const {
  auto gpu_of = [&](const std::string &parent) { return gpu_of_parent(view, parent); };
  auto load = gpu_loads(view);

  std::vector<VgpuCandidate> out;
  std::set<std::string> names;
  bool known = false;
  std::string shown;
  unsigned skipped_quarantined = 0;
  for (const auto &parent : *view.parents) {
    for (const auto &t : parent.types) {
      names.insert(t.name);
      if (!profile_matches(profile, t.name, t.id))
        continue;
      known = true;
      shown = "'" + t.name + "'" + (t.name == t.id ? "" : " (type " + t.id + ")");
      if (t.available == 0)
        continue;
      if (is_quarantined(parent.name)) {
        ++skipped_quarantined;
        continue;
      }
      out.push_back(VgpuCandidate{"mdev", gpu_of(parent.name), parent.name, t.id, t.name, t.framebuffer_mb});
    }
  }
  for (const auto &vf : view.vendor_vfs) {
    for (const auto &t : vf.creatable) {
      names.insert(t.name);
      if (!profile_matches(profile, t.name, std::to_string(t.id)))
        continue;
      known = true;
      shown = "'" + t.name + "' (type " + std::to_string(t.id) + ")";
      if (vf.current_type != 0)
        continue;
      if (is_quarantined(vf.address)) {
        ++skipped_quarantined;
        continue;
      }
      out.push_back(VgpuCandidate{"vendor-vfio", vf.gpu, vf.address, std::to_string(t.id), t.name, t.framebuffer_mb});
    }
  }
  // A vendor type no VF lists any more (the GPUs are full) is still a known profile: the catalogue has it.
  if (!known && !view.vendor_vfs.empty()) {
    for (const auto &[id, rec] : store_.vgpu_types()) {
      if (profile_matches(profile, rec.name, id)) {
        known = true;
        shown = "'" + rec.name + "' (type " + id + ")";
      }
    }
  }
  if (!out.empty()) {
    std::stable_sort(out.begin(), out.end(), [&](const VgpuCandidate &a, const VgpuCandidate &b) {
      const auto la = load[a.gpu], lb = load[b.gpu];
      return std::tie(la.framebuffer_mb, la.vgpus, a.gpu, a.target) <
             std::tie(lb.framebuffer_mb, lb.vgpus, b.gpu, b.target);
    });
    return out;
  }
  if (!known)
    fail_profile_unavailable(profile, std::vector<std::string>(names.begin(), names.end()));
  fail(Errc::NoCapacity, "profile " + shown + " has no free slot: every GPU offering it is full" +
                             (skipped_quarantined ? " (" + std::to_string(skipped_quarantined) +
                                                        " quarantined VF(s) skipped; see Unquarantine)"
                                                  : std::string()) +
                             "; delete an instance or choose a smaller profile");
}

// ---------------------------------------------------------------------------------------------------- VF health

bool Service::is_quarantined(const std::string &address) const {
  auto it = store_.vf_health().find(address);
  return it != store_.vf_health().end() && it->second.quarantined;
}

std::string Service::vgpu_vf_of(const InstanceRecord &instance) const {
  if (!instance.vgpu_vf.empty())
    return instance.vgpu_vf;
  if (!instance.mdev_parent.empty() && is_pci_address(instance.mdev_parent) &&
      normalize_pci_address(instance.mdev_parent) == instance.mdev_parent)
    return instance.mdev_parent;
  return {};
}

bool Service::report_guest_init(const std::string &id_or_name, bool ok) {
  const auto inst = instance_to_change(id_or_name);
  const auto vf = vgpu_vf_of(inst);
  if (vf.empty())
    fail(Errc::InvalidArgument, "instance " + inst.name + " has no vGPU on a VF to report on");
  VfHealthRecord rec;
  if (auto it = store_.vf_health().find(vf); it != store_.vf_health().end())
    rec = it->second;
  rec.vf = vf;
  if (ok) {
    // A guest that came up clears earlier failures; a quarantine stays until an administrator lifts it.
    if (rec.failed_instances.empty())
      return rec.quarantined;
    rec.failed_instances.clear();
  } else {
    if (std::find(rec.failed_instances.begin(), rec.failed_instances.end(), inst.id) != rec.failed_instances.end())
      return rec.quarantined; // the same instance again: one assignment, one failure
    rec.failed_instances.push_back(inst.id);
    if (rec.failed_instances.size() > 16)
      rec.failed_instances.erase(rec.failed_instances.begin());
  }
  const bool newly = !rec.quarantined && rec.failed_instances.size() >= kQuarantineAfter;
  rec.quarantined = rec.quarantined || newly;
  rec.changed_at = now_usec();
  if (!rec.quarantined && rec.failed_instances.empty())
    store_.remove_vf_health(vf);
  else
    store_.put_vf_health(rec);
  if (newly)
    events_->vf_quarantined(vf, rec.failed_instances);
  return rec.quarantined;
}

void Service::unquarantine(const std::string &vf_address) {
  const auto vf = normalize_pci_address(vf_address);
  auto it = store_.vf_health().find(vf);
  if (it == store_.vf_health().end() || !it->second.quarantined)
    fail(Errc::NotFound, vf + " is not quarantined");
  store_.remove_vf_health(vf);
}

// ---------------------------------------------------------------------------------------------------- SR-IOV

SriovResult Service::configure_sriov(const std::string &pf_address, unsigned num_vfs) {
  const auto pf = normalize_pci_address(pf_address);
  auto fn = pci_.find(pf);
  if (!fn)
    fail(Errc::DeviceNotFound, "no PCI device " + pf + " on this host");
  if (fn->physfn)
    fail(Errc::InvalidArgument, pf + " is itself a VF (of " + *fn->physfn + "); give its PF");
  if (!fn->sriov_totalvfs)
    fail(Errc::InvalidArgument, pf + " has no SR-IOV capability (no sriov_totalvfs)");
  if (num_vfs > *fn->sriov_totalvfs)
    fail(Errc::InvalidArgument,
         pf + " supports at most " + std::to_string(*fn->sriov_totalvfs) + " VFs, not " + std::to_string(num_vfs));
  const auto dev = store_.find_device_by_address(pf);
  if (dev && !dev->attached_to.empty())
    fail(Errc::InUse, pf + " is attached to instance " + dev->attached_to);
  const unsigned current = fn->sriov_numvfs.value_or(0);
  // Nothing may go while a VM could be using it: attached, carrying a vGPU, or held open.
  std::vector<std::string> in_use;
  const auto mdevs = mdev_.list();
  for (const auto &vf : fn->virtfns) {
    if (const auto *rec = store_.find_device_by_address(vf); rec && !rec->attached_to.empty())
      in_use.push_back(vf + " (attached to instance " + rec->attached_to + ")");
    else if (auto type = vendor_.current_type(vf); type != 0)
      in_use.push_back(vf + " (vGPU type " + std::to_string(type) + ")");
    else if (std::any_of(mdevs.begin(), mdevs.end(), [&](const Mdev &m) { return m.parent == vf; }))
      in_use.push_back(vf + " (has an mdev)");
    else if (auto holders = vf_holders(vf); !holders.empty())
      in_use.push_back(vf + " (held by " + describe_holders(holders) + ")");
  }
  if (current != num_vfs && !in_use.empty())
    fail(Errc::InUse, "cannot change the VF count of " + pf + " while its VFs are in use: " + join(in_use));

  const auto path = pci_device_path(pf) + "/sriov_numvfs";
  auto read_count = [&] {
    auto f = pci_.find(pf);
    return f ? f->sriov_numvfs.value_or(0) : 0U;
  };
  if (current != num_vfs) {
    try {
      if (current != 0 && num_vfs != 0)
        track_timeout(pf, [&] { sysfs_.write(path, "0", options_.deadline); }); // the kernel wants 0 in between
      track_timeout(pf, [&] { sysfs_.write(path, std::to_string(num_vfs), options_.deadline); });
    } catch (const Error &e) {
      // Give back the count it had when the failure came after the 0.
      std::string restored;
      if (e.code() != Errc::Timeout && current != 0 && read_count() == 0) {
        try {
          sysfs_.write(path, std::to_string(current), options_.deadline);
          restored = "; the previous count " + std::to_string(current) + " was set again";
        } catch (const Error &again) {
          restored = "; setting the previous count " + std::to_string(current) + " again failed too: " + again.what();
        }
      }
      throw Error(e.code(), std::string(e.what()) + restored, e.sys_errno());
    }
  }
  auto after = pci_.find(pf);
  SriovResult result;
  result.pf = pf;
  result.num_vfs = after ? after->sriov_numvfs.value_or(0) : 0;
  result.vfs = after ? after->virtfns : std::vector<std::string>{};
  result.drivers_autoprobe = sysfs_.read_trimmed(pci_device_path(pf) + "/sriov_drivers_autoprobe").value_or("1") != "0";
  if (result.num_vfs != num_vfs || result.vfs.size() != num_vfs)
    fail(Errc::KernelError, "the kernel accepted " + std::to_string(num_vfs) + " VFs on " + pf + " but " +
                                std::to_string(result.vfs.size()) + " virtfn links and sriov_numvfs " +
                                std::to_string(result.num_vfs) + " are there");
  if (num_vfs == 0) {
    store_.remove_sriov(pf);
  } else {
    SriovRecord rec;
    rec.pf = pf;
    rec.num_vfs = num_vfs;
    rec.set_at = now_usec();
    rec.vendor_id = hex4(fn->vendor_id);
    rec.device_id = hex4(fn->device_id);
    store_.put_sriov(rec);
  }
  return result;
}

std::vector<Holder> Service::vf_holders(const std::string &vf) const {
  auto group = pci_.iommu_group_of(vf);
  return find_holders(sysfs_, vfio_device_nodes(sysfs_, pci_device_path(vf), group));
}

// ---------------------------------------------------------------------------------------------------- release

void Service::release_vendor_vgpu(InstanceRecord &inst, bool emit) {
  const auto vf = inst.vgpu_vf;
  if (vf.empty())
    return;
  auto rec = store_.vgpus().find(vf);
  const bool ours = rec != store_.vgpus().end() && rec->second.instance_id == inst.id;
  // Only an assignment of this instance is released; one someone else made on the VF meanwhile is theirs.
  if (ours && vendor_.current_type(vf) == inst.vgpu_type)
    track_timeout(vf, [&] { vendor_.release(vf, options_.deadline); });
  if (ours)
    store_.remove_vgpu(vf);
  const auto uuid = inst.uuid;
  inst.vgpu_vf.clear();
  inst.vgpu_type = 0;
  store_.put_instance(inst);
  if (emit)
    events_->mdev_destroyed(uuid, inst.id);
}

} // namespace hostdev::core
