// After a reboot: get the host back to what hostdev handed out, in dependency order, or say precisely why not.
#include "core/service.hpp"

#include "core/error.hpp"
#include "core/host_names.hpp"
#include "core/ids.hpp"
#include "core/validate.hpp"

#include <algorithm>
#include <map>

namespace hostdev::core {
namespace {

constexpr const char *kBootIdFile = "proc/sys/kernel/random/boot_id";
constexpr std::chrono::milliseconds kPoll{200};

} // namespace

std::string Service::identity_mismatch(const DeviceRecord &rec) const {
  auto fn = pci_.find(rec.pci_address);
  if (!fn)
    return rec.name + " (" + rec.pci_address + ") is missing";
  std::string now = hex4(fn->vendor_id) + ":" + hex4(fn->device_id);
  std::string was = rec.vendor_id + ":" + rec.device_id;
  if (!rec.subsystem_vendor_id.empty() && !rec.subsystem_device_id.empty()) {
    now += " (subsystem " + hex4(fn->subsystem_vendor_id) + ":" + hex4(fn->subsystem_device_id) + ")";
    was += " (subsystem " + rec.subsystem_vendor_id + ":" + rec.subsystem_device_id + ")";
  }
  if (now != was)
    return rec.name + " (" + rec.pci_address + ") is now " + now + ", not the recorded " + was +
           ": another card at this address, left alone";
  return {};
}

void Service::set_state(InstanceRecord &inst, const std::string &state, const std::string &reason) {
  const bool changed = inst.state != state || inst.state_reason != reason;
  inst.state = state;
  inst.state_reason = reason.size() > 4000 ? to_valid_utf8(reason.substr(0, 4000)) + "..." : reason;
  store_.put_instance(inst);
  if (changed)
    events_->instance_state_changed(inst.id, inst.state, inst.state_reason);
}

void Service::wait_for(const std::function<bool()> &present) const {
  const auto until = std::chrono::steady_clock::now() + options_.restore_wait;
  while (!present() && std::chrono::steady_clock::now() < until)
    Sysfs::pause(kPoll);
}

const InstanceRecord &Service::instance_to_change(const std::string &id_or_name) const {
  const auto &inst = get_instance(id_or_name);
  if (inst.from_newer_version)
    fail(Errc::InvalidArgument, "instance " + inst.name + " was " + inst.state_reason);
  return inst;
}

std::string Service::rebind(const DeviceRecord &dev, const std::vector<std::string> &companions) {
  if (auto why = identity_mismatch(dev); !why.empty())
    return why;
  if (pci_.driver_of(dev.pci_address) == std::string(kVfioPciDriver))
    return {};
  try {
    auto record = dev;
    record.host_driver = track_timeout(dev.pci_address, [&] { return vfio_.bind(dev.pci_address, companions); });
    store_.put_device(record);
    return {};
  } catch (const Error &e) {
    return dev.name + " (" + dev.pci_address + ") could not be bound to vfio-pci: " + e.what();
  }
}

const InstanceRecord &Service::restore_instance(const std::string &id_or_name) {
  auto inst = instance_to_change(id_or_name);
  set_state(inst, "restoring", "");
  std::vector<std::string> missing;

  // 1. Devices on vfio-pci, each only after its identity is checked.
  std::vector<std::string> addresses;
  for (const auto &id : inst.devices)
    if (auto it = store_.devices().find(id); it != store_.devices().end())
      addresses.push_back(it->second.pci_address);
  for (const auto &id : inst.devices) {
    auto it = store_.devices().find(id);
    if (it == store_.devices().end()) {
      missing.push_back("device " + id + " is no longer registered");
      continue;
    }
    if (auto why = rebind(it->second, addresses); !why.empty())
      missing.push_back(why);
  }

  // 2. The mdev, with the same UUID, type and parent (VM definitions name the UUID).
  if (!inst.mdev_uuid.empty() && !mdev_.find(inst.mdev_uuid)) {
    auto rec = store_.mdevs().find(inst.mdev_uuid);
    const std::string type = rec != store_.mdevs().end() ? rec->second.type_id : std::string();
    const std::string parent = rec != store_.mdevs().end() ? rec->second.parent : inst.mdev_parent;
    if (type.empty()) {
      missing.push_back("mdev " + inst.mdev_uuid + ": its type is not on record");
    } else {
      const auto parent_dir = "sys/class/mdev_bus/" + parent;
      wait_for([&] { return sysfs_.is_dir(parent_dir); });
      if (!sysfs_.is_dir(parent_dir)) {
        missing.push_back("mdev " + inst.mdev_uuid + ": its parent " + parent +
                          " is not there (is its driver loaded?)");
      } else {
        try {
          mdev_.create(parent, type, inst.mdev_uuid, options_.deadline);
          events_->mdev_created(inst.mdev_uuid, inst.gpu_profile, parent, inst.id);
        } catch (const Error &e) {
          missing.push_back("mdev " + inst.mdev_uuid + " (" + type + " on " + parent + "): " + e.what());
        }
      }
    }
  }

  // 3. The vendor-VFIO type on the same VF.
  if (!inst.vgpu_vf.empty()) {
    const auto &vf = inst.vgpu_vf;
    wait_for([&] { return vendor_.is_vendor_vf(vf); });
    if (!vendor_.is_vendor_vf(vf)) {
      missing.push_back("vGPU VF " + vf + " is not there (are the GPU's VFs enabled and its driver loaded?)");
    } else if (const auto current = vendor_.current_type(vf); current == inst.vgpu_type) {
      // there already
    } else if (current != 0) {
      missing.push_back("vGPU VF " + vf + " has type " + std::to_string(current) + ", not the instance's " +
                        std::to_string(inst.vgpu_type) + ": left alone");
    } else {
      try {
        VgpuRecord v;
        v.vf = vf;
        v.type_id = inst.vgpu_type;
        v.instance_id = inst.id;
        v.uuid = inst.uuid;
        v.created_at = now_usec();
        store_.put_vgpu(v);
        vendor_.assign(vf, inst.vgpu_type, options_.deadline);
        events_->mdev_created(inst.uuid, inst.gpu_profile, vf, inst.id);
      } catch (const Error &e) {
        missing.push_back("vGPU type " + std::to_string(inst.vgpu_type) + " on " + vf + ": " + e.what());
      }
    }
  }

  set_state(inst, missing.empty() ? "active" : "degraded", join(missing, "; "));
  return store_.instances().at(inst.id);
}

StartUpReport Service::start_up() {
  StartUpReport report;
  if (auto text = sysfs_.read_trimmed(kBootIdFile); text && is_uuid(*text))
    report.boot_id = normalize_uuid(*text);
  else
    report.notes.push_back("cannot read the kernel's boot id (" + sysfs_.display_path(kBootIdFile) +
                           "): a reboot cannot be told from a restart, so nothing is restored");
  report.new_boot = report.boot_id && store_.boot_id() && *report.boot_id != *store_.boot_id();
  // A restore cut short (a crash, a stop) left instances "restoring": finish it, whatever the boot id says.
  const bool unfinished = std::any_of(store_.instances().begin(), store_.instances().end(),
                                      [](const auto &item) { return item.second.state == "restoring"; });
  if (report.new_boot || unfinished) {
    if (report.new_boot) {
      report.notes.push_back("a new boot (" + *report.boot_id + ", was " + *store_.boot_id() +
                             "): restoring what hostdev handed out");
      // Nothing of the old boot's kernel writes is in flight any more.
      busy_.clear();
      busy_mdevs_.clear();
    }
    // 0. Non-persistent instances end with the boot that had them.
    if (report.new_boot) {
      for (const auto &[id, inst] : std::map<std::string, InstanceRecord>(store_.instances())) {
        if (inst.persistent || inst.from_newer_version)
          continue;
        try {
          delete_instance(id);
          ++report.dropped;
          report.notes.push_back("dropped instance " + inst.name + " (not persistent)");
        } catch (const Error &e) {
          auto copy = inst;
          set_state(copy, "degraded", std::string("not persistent, but could not be dropped: ") + e.what());
          report.notes.push_back("instance " + inst.name + ": " + copy.state_reason);
        }
      }
    }
    // 1. SR-IOV VF counts hostdev set (the VFs must exist before anything is bound or assigned on them).
    for (const auto &[pf, rec] : std::map<std::string, SriovRecord>(store_.sriov())) {
      auto fn = pci_.find(pf);
      if (!fn) {
        report.notes.push_back("SR-IOV: PF " + pf + " is missing; its " + std::to_string(rec.num_vfs) +
                               " VFs are not restored");
        continue;
      }
      if (!rec.vendor_id.empty() && (hex4(fn->vendor_id) != rec.vendor_id || hex4(fn->device_id) != rec.device_id)) {
        report.notes.push_back("SR-IOV: " + pf + " is now " + hex4(fn->vendor_id) + ":" + hex4(fn->device_id) +
                               ", not the recorded " + rec.vendor_id + ":" + rec.device_id + ": left alone");
        continue;
      }
      if (fn->sriov_numvfs.value_or(0) == rec.num_vfs)
        continue;
      try {
        configure_sriov(pf, rec.num_vfs);
        report.notes.push_back("SR-IOV: " + pf + " has its " + std::to_string(rec.num_vfs) + " VFs again");
      } catch (const Error &e) {
        report.notes.push_back("SR-IOV: " + pf + ": " + e.what());
      }
    }
    // 2. Devices hostdev keeps on vfio-pci without an instance (BindVfio).
    for (const auto &[id, dev] : std::map<std::string, DeviceRecord>(store_.devices())) {
      if (!dev.on_vfio || !dev.attached_to.empty())
        continue;
      if (auto why = rebind(dev, {}); !why.empty())
        report.notes.push_back(why);
    }
    // 3. Every instance: its devices, its mdev, its vendor vGPU.
    for (const auto &[id, inst] : std::map<std::string, InstanceRecord>(store_.instances())) {
      if (inst.from_newer_version) {
        ++report.degraded;
        report.notes.push_back("instance " + inst.name + " " + inst.state_reason);
        continue;
      }
      const auto &after = restore_instance(id);
      if (after.state == "active") {
        ++report.active;
      } else {
        ++report.degraded;
        report.notes.push_back("instance " + after.name + " degraded: " + after.state_reason);
      }
    }
  }
  report.reconcile = reconcile();
  if (report.boot_id && store_.boot_id() != report.boot_id)
    store_.set_boot_id(*report.boot_id);
  return report;
}

} // namespace hostdev::core
