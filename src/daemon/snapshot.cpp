#include "daemon/snapshot.hpp"

#include "core/lookup.hpp"
#include "names.hpp"

#include <utility>

namespace hostdev::daemon {

std::string device_path(const std::string &id) { return names::kDevicesPathPrefix + id; }
std::string instance_path(const std::string &id) { return names::kInstancesPathPrefix + id; }

Snapshot take_snapshot(const core::Service &service, const core::Sysfs &sysfs) {
  Snapshot snap;
  auto host = service.model_view(); // the live model: no sysfs reads
  snap.report = std::move(host.report);
  snap.resources = std::move(host.resources);
  snap.available = std::move(host.available);
  for (const auto &rec : service.list_devices()) {
    DeviceView view;
    view.record = rec;
    // The view's own (shared, sorted) list, of which snap.available holds copies.
    if (const auto *fn = core::find_function(*host.functions, rec.pci_address)) {
      view.driver = fn->driver.value_or("");
      view.vendor_name = fn->vendor_name;
      view.device_name = fn->device_name;
      if (!view.record.iommu_group)
        view.record.iommu_group = fn->iommu_group;
    }
    view.sysfs_path = sysfs.display_path(core::pci_device_path(rec.pci_address));
    snap.devices.emplace(rec.id, std::move(view));
  }
  for (const auto &rec : service.list_instances()) {
    InstanceView view;
    view.record = rec;
    view.paths = service.instance_paths(rec);
    snap.instances.emplace(rec.id, std::move(view));
  }
  snap.taken = std::chrono::steady_clock::now();
  return snap;
}

const DeviceView &find_device(const Snapshot &snap, const std::string &ref) {
  return core::find_by_id_or_name(snap.devices, ref, "device",
                                  [](const DeviceView &v) -> const std::string & { return v.record.name; });
}

const InstanceView &find_instance(const Snapshot &snap, const std::string &ref) {
  return core::find_by_id_or_name(snap.instances, ref, "instance",
                                  [](const InstanceView &v) -> const std::string & { return v.record.name; });
}

void EventQueue::mdev_created(const std::string &uuid, const std::string &profile, const std::string &parent,
                              const std::string &instance_id) {
  PendingSignal s;
  s.kind = PendingSignal::Kind::MdevCreated;
  s.uuid = uuid;
  s.profile = profile;
  s.parent = parent;
  s.instance_id = instance_id;
  pending_.push_back(std::move(s));
}

void EventQueue::mdev_destroyed(const std::string &uuid, const std::string &instance_id) {
  PendingSignal s;
  s.kind = PendingSignal::Kind::MdevDestroyed;
  s.uuid = uuid;
  s.instance_id = instance_id;
  pending_.push_back(std::move(s));
}

void EventQueue::reconciled(const core::ReconcileStats &stats) {
  PendingSignal s;
  s.kind = PendingSignal::Kind::Reconciled;
  s.stats = stats;
  pending_.push_back(std::move(s));
}

void EventQueue::vf_quarantined(const std::string &vf, const std::vector<std::string> &instances) {
  PendingSignal s;
  s.kind = PendingSignal::Kind::VfQuarantined;
  s.parent = vf;
  s.instance_ids = instances;
  pending_.push_back(std::move(s));
}

void EventQueue::instance_state_changed(const std::string &instance_id, const std::string &state,
                                        const std::string &reason) {
  PendingSignal s;
  s.kind = PendingSignal::Kind::InstanceStateChanged;
  s.instance_id = instance_id;
  s.state = state;
  s.reason = reason;
  pending_.push_back(std::move(s));
}

std::vector<PendingSignal> EventQueue::take() { return std::exchange(pending_, {}); }

} // namespace hostdev::daemon
