// Reconcile: make the host agree with the store after a crash or a restart. Only what hostdev recorded is touched.
#include "core/service.hpp"

#include "core/error.hpp"
#include "core/host_names.hpp"

#include <algorithm>
#include <map>

namespace hostdev::core {

ReconcileStats Service::reconcile() {
  ReconcileStats stats;
  const auto &instances = store_.instances();
  // An instance a newer hostdev wrote owns whatever is recorded for it: this version cannot know what that is.
  auto instance_owns_mdev = [&](const std::string &instance_id, const std::string &uuid) {
    auto it = instances.find(instance_id);
    return it != instances.end() && (it->second.from_newer_version || it->second.mdev_uuid == uuid);
  };
  // Deletes a crash or a failure interrupted: finish them (the caller asked for it). One whose instance is gone
  // already has left at most an mdev or attachments, which the steps below clean up like any orphan.
  for (const auto &[id, intent] : std::map<std::string, Intent>(store_.intents())) {
    if (intent.op != "delete-instance")
      continue;
    try {
      if (instances.count(intent.instance_id))
        delete_instance(intent.instance_id);
      else
        store_.remove_intent(id);
    } catch (const Error &e) {
      stats.errors.push_back("finishing the delete of instance " + intent.instance_id + ": " + e.what());
    }
  }
  // Intents of creates a crash (or a failed rollback) interrupted; those whose instance was saved are complete.
  std::vector<Intent> unfinished;
  for (const auto &[id, intent] : std::map<std::string, Intent>(store_.intents())) {
    if (intent.op != "create-instance")
      continue;
    if (instances.count(intent.instance_id)) {
      try {
        store_.remove_intent(id);
      } catch (const Error &e) {
        stats.errors.emplace_back(e.what());
      }
    } else {
      unfinished.push_back(intent);
    }
  }

  // 1. mdevs: only those hostdev created, only when no instance owns them, never one in use.
  std::set<std::string> present;
  for (const auto &m : mdev_.list()) {
    present.insert(m.uuid);
    busy_mdevs_.erase(m.uuid); // a create that timed out has finished after all
    auto rec = store_.mdevs().find(m.uuid);
    if (rec == store_.mdevs().end()) {
      ++stats.skipped_not_ours;
      continue;
    }
    if (instance_owns_mdev(rec->second.instance_id, m.uuid))
      continue;
    if (!find_holders(sysfs_, vfio_device_nodes(sysfs_, "sys/bus/mdev/devices/" + m.uuid, m.iommu_group)).empty()) {
      ++stats.skipped_in_use;
      continue;
    }
    const auto owner = rec->second.instance_id;
    try {
      mdev_.remove(m.uuid, options_.deadline);
      store_.remove_mdev(m.uuid);
      ++stats.destroyed;
      events_->mdev_destroyed(m.uuid, owner);
    } catch (const Error &e) {
      stats.errors.push_back("mdev " + m.uuid + ": " + e.what());
    }
  }
  for (const auto &[uuid, rec] : std::map<std::string, MdevRecord>(store_.mdevs())) {
    // Absent and not being created: it is gone already, forget it. (Being created: keep it for the next round.)
    if (!present.count(uuid) && !busy_mdevs_.count(uuid) && !instance_owns_mdev(rec.instance_id, uuid)) {
      try {
        store_.remove_mdev(uuid);
      } catch (const Error &e) {
        stats.errors.emplace_back(e.what());
      }
    }
  }

  // 1b. Vendor-VFIO vGPUs: the same rules. Only assignments hostdev recorded, only when no instance owns them,
  //     never one in use; a VF whose type is someone else's is left alone.
  auto instance_owns_vgpu = [&](const std::string &instance_id, const std::string &vf) {
    auto it = instances.find(instance_id);
    return it != instances.end() && (it->second.from_newer_version || it->second.vgpu_vf == vf);
  };
  {
    std::set<std::string> recorded;
    for (const auto &[vf, rec] : store_.vgpus())
      recorded.insert(vf);
    // Vendor-VFIO vGPUs live on VFs only: with the live model, only its VFs are asked (their current type read
    // now, not taken from the model: a type written by someone else need not make a uevent); without one, every
    // function. One open per function: only current_vgpu_type is needed, not the VF's whole vendor state.
    std::vector<std::string> candidates;
    if (model_.scanned()) {
      for (const auto &fn : model_.functions())
        if (fn.physfn)
          candidates.push_back(fn.address);
    } else {
      candidates = pci_.addresses();
    }
    for (const auto &address : candidates)
      if (!recorded.count(address) && vendor_.current_type(address) != 0)
        ++stats.skipped_not_ours;
  }
  for (const auto &[vf, rec] : std::map<std::string, VgpuRecord>(store_.vgpus())) {
    if (instance_owns_vgpu(rec.instance_id, vf))
      continue;
    try {
      const auto current = vendor_.current_type(vf);
      if (current != 0 && current != rec.type_id) {
        ++stats.skipped_not_ours; // our write never happened; someone else's type is there now
        store_.remove_vgpu(vf);
        continue;
      }
      if (current != 0) {
        if (!vf_holders(vf).empty()) {
          ++stats.skipped_in_use;
          continue;
        }
        vendor_.release(vf, options_.deadline);
        ++stats.destroyed;
        events_->mdev_destroyed(rec.uuid, rec.instance_id);
      }
      busy_.erase(vf);
      store_.remove_vgpu(vf);
    } catch (const Error &e) {
      stats.errors.push_back("vGPU on " + vf + ": " + e.what());
    }
  }

  // 2. Devices attached to instances that no longer exist, and devices an unfinished create bound: give them back
  //    to their host driver first; clear the attachment only once the device is off vfio-pci, so that a device a
  //    VM still holds is never handed to another instance.
  std::set<std::string> not_undone; // device ids still on vfio-pci after this round
  for (const auto &[id, dev] : std::map<std::string, DeviceRecord>(store_.devices())) {
    // Stale: attached to an instance that is gone, or that no longer lists it (a delete cut short between its
    // two records).
    const auto owner = dev.attached_to.empty() ? instances.end() : instances.find(dev.attached_to);
    const bool stale =
        !dev.attached_to.empty() &&
        (owner == instances.end() ||
         (!owner->second.from_newer_version &&
          std::find(owner->second.devices.begin(), owner->second.devices.end(), id) == owner->second.devices.end()));
    const bool orphan =
        (dev.attached_to.empty() || stale) &&
        std::any_of(unfinished.begin(), unfinished.end(), [&, device_id = id](const Intent &i) {
          return std::find(i.bound_devices.begin(), i.bound_devices.end(), device_id) != i.bound_devices.end();
        });
    if (!stale && !orphan)
      continue;
    try {
      if (pci_.driver_of(dev.pci_address) == std::string(kVfioPciDriver)) {
        if (is_busy(dev.pci_address))
          fail(Errc::InUse, "a kernel write to it has not returned");
        vfio_.unbind(dev.pci_address, dev.host_driver);
      }
      if (stale) {
        auto cleared = dev;
        cleared.attached_to.clear();
        store_.put_device(cleared);
        ++stats.cleared_attachments;
      }
    } catch (const Error &e) {
      not_undone.insert(id);
      stats.errors.push_back(dev.name + ": " + e.what());
    }
  }

  // 3. An unfinished create's intent goes only when everything it did is undone; else the next round retries.
  for (const auto &intent : unfinished) {
    const bool devices_done = std::none_of(intent.bound_devices.begin(), intent.bound_devices.end(),
                                           [&](const std::string &id) { return not_undone.count(id) != 0; });
    const bool mdev_done = intent.mdev_uuid.empty() || !store_.mdevs().count(intent.mdev_uuid);
    const bool vgpu_done = intent.vgpu_vf.empty() || !store_.vgpus().count(intent.vgpu_vf);
    if (!devices_done || !mdev_done || !vgpu_done)
      continue;
    try {
      store_.remove_intent(intent.id);
    } catch (const Error &e) {
      stats.errors.emplace_back(e.what());
    }
  }
  events_->reconciled(stats);
  return stats;
}

} // namespace hostdev::core
