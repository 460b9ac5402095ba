#include "core/service.hpp"

#include "core/error.hpp"
#include "core/ids.hpp"
#include "core/validate.hpp"

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <map>

namespace hostdev::core {
namespace {

constexpr std::size_t kMaxImageLength = 4096;

void validate_lookup(const std::string &id_or_name, const char *what) {
  if (!is_object_id(id_or_name) && !is_valid_name(id_or_name))
    fail(Errc::InvalidName, std::string("'") + (id_or_name.size() > 80 ? id_or_name.substr(0, 80) + "..." : id_or_name) +
                                "' is neither a " + what + " id nor a valid " + what + " name");
}

void validate_image(const std::string &image) {
  if (image.size() > kMaxImageLength)
    fail(Errc::InvalidArgument, "image is longer than 4096 characters");
  for (char c : image)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      fail(Errc::InvalidArgument, "image contains control characters");
}

void validate_profile(const std::string &profile) {
  if (profile.size() > 255)
    fail(Errc::InvalidArgument, "gpu_profile is longer than 255 characters");
  for (char c : profile)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '/')
      fail(Errc::InvalidArgument, "gpu_profile contains characters no profile has");
}

std::string pci_sysfs_dir(const std::string &address) { return "/sys/bus/pci/devices/" + address + "/"; }
std::string mdev_sysfs_dir(const std::string &uuid) { return "/sys/bus/mdev/devices/" + uuid + "/"; }

} // namespace

void crash_point(const char *point) {
  const char *want = std::getenv("HOSTDEV_TEST_CRASH_AT");
  if (want != nullptr && std::strcmp(want, point) == 0)
    std::raise(SIGKILL);
}

Service::Service(const Sysfs &sysfs, Store &store, const PciNames &names, UnitControl *units, Events *events,
                 Options options)
    : sysfs_(sysfs), store_(store), names_(names), pci_(sysfs, names), mdev_(sysfs),
      vfio_(sysfs, pci_, units, options.deadline), events_(events ? events : &no_events_), options_(options) {}

// ---------------------------------------------------------------------------------------------------- reads

std::vector<AvailableDevice> Service::list_available(bool all) const {
  std::vector<AvailableDevice> out;
  for (auto &fn : pci_.candidates(all)) {
    AvailableDevice dev;
    if (const auto *rec = store_.find_device_by_address(fn.address))
      dev.registered_id = rec->id;
    dev.function = std::move(fn);
    out.push_back(std::move(dev));
  }
  return out;
}

HostReport Service::host_report() const {
  return check_host(sysfs_, pci_.discover(), static_cast<unsigned>(mdev_.parent_names().size()));
}

GpuResources Service::gpu_resources() const {
  GpuResources res;
  const auto functions = pci_.discover();
  const auto parents = mdev_.parents();
  res.mode = check_host(sysfs_, functions, static_cast<unsigned>(parents.size())).gpu_mode;
  if (res.mode == GpuMode::Vgpu) {
    res.profiles = mdev_.profiles();
    unsigned free_slots = 0;
    for (const auto &parent : parents) {
      unsigned best = 0;
      for (const auto &type : parent.types)
        best = std::max(best, type.available);
      free_slots += best;
    }
    res.used_slots = static_cast<unsigned>(mdev_.list().size());
    res.total_slots = res.used_slots + free_slots;
    return res;
  }
  for (const auto &fn : functions) {
    if (!fn.is_display())
      continue;
    GpuResources::PassthroughDevice dev;
    dev.pci_address = fn.address;
    const auto *rec = store_.find_device_by_address(fn.address);
    dev.name = rec ? rec->name : (fn.device_name.empty() ? fn.address : fn.device_name);
    const bool attached = rec && !rec->attached_to.empty();
    const bool held = fn.iommu_group && fn.on_vfio() && !vfio_.holders_of(fn.address).empty();
    dev.available = fn.iommu_group && !attached && !held;
    // A slot is a GPU that can be passed through at all (it has an IOMMU group); used when attached or held.
    if (fn.iommu_group) {
      ++res.total_slots;
      if (attached || held)
        ++res.used_slots;
    }
    res.devices.push_back(std::move(dev));
  }
  return res;
}

const DeviceRecord &Service::device_or_throw(const std::string &id_or_name) const {
  validate_lookup(id_or_name, "device");
  const auto *rec = store_.find_device(id_or_name);
  if (!rec)
    fail(Errc::NotFound, "no registered device '" + id_or_name + "'; 'hostdevctl devices' lists them");
  return *rec;
}

const DeviceRecord &Service::get_device(const std::string &id_or_name) const { return device_or_throw(id_or_name); }

const InstanceRecord &Service::get_instance(const std::string &id_or_name) const {
  validate_lookup(id_or_name, "instance");
  const auto *rec = store_.find_instance(id_or_name);
  if (!rec)
    fail(Errc::NotFound, "no instance '" + id_or_name + "'; 'hostdevctl instances' lists them");
  return *rec;
}

std::vector<DeviceRecord> Service::list_devices() const {
  std::vector<DeviceRecord> out;
  for (const auto &[id, rec] : store_.devices())
    out.push_back(rec);
  std::sort(out.begin(), out.end(), [](const auto &a, const auto &b) { return a.name < b.name; });
  return out;
}

std::vector<InstanceRecord> Service::list_instances() const {
  std::vector<InstanceRecord> out;
  for (const auto &[id, rec] : store_.instances())
    out.push_back(rec);
  std::sort(out.begin(), out.end(), [](const auto &a, const auto &b) { return a.name < b.name; });
  return out;
}

InstancePaths Service::instance_paths(const InstanceRecord &instance) const {
  InstancePaths paths;
  auto add = [&](const std::string &dir, const std::string &qemu) {
    paths.device_paths.push_back(dir);
    paths.qemu_args.insert(paths.qemu_args.end(), {"-device", qemu});
    if (paths.cloud_hypervisor_args.empty())
      paths.cloud_hypervisor_args.emplace_back("--device");
    paths.cloud_hypervisor_args.push_back("path=" + dir);
  };
  for (const auto &id : instance.devices) {
    auto it = store_.devices().find(id);
    if (it != store_.devices().end())
      add(pci_sysfs_dir(it->second.pci_address), "vfio-pci,host=" + it->second.pci_address);
  }
  if (!instance.mdev_uuid.empty()) {
    auto dir = mdev_sysfs_dir(instance.mdev_uuid);
    add(dir, "vfio-pci,sysfsdev=" + dir.substr(0, dir.size() - 1));
  }
  return paths;
}

// ---------------------------------------------------------------------------------------------------- devices

void Service::guard_not_busy(const DeviceRecord &device) const {
  if (is_busy(device.pci_address))
    fail(Errc::InUse, device.name + " (" + device.pci_address +
                          ") is busy: an earlier kernel write to it has not returned; run 'hostdevctl restore " +
                          device.name + "' once it has");
}

template <class F> auto Service::track_timeout(const std::string &address, F &&f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error &e) {
    if (e.code() == Errc::Timeout)
      busy_.insert(address);
    throw;
  }
}

const DeviceRecord &Service::register_device(const std::string &name, const std::string &pci_address) {
  const auto address = normalize_pci_address(pci_address);
  const auto device_name = name.empty() ? default_device_name(address) : name;
  validate_name(device_name, "device name");
  for (const auto &[id, rec] : store_.devices())
    if (rec.name == device_name)
      fail(Errc::NameExists, "a device named '" + device_name + "' is already registered (" + rec.pci_address + ")");
  if (const auto *rec = store_.find_device_by_address(address))
    fail(Errc::AlreadyExists, address + " is already registered as '" + rec->name + "'");
  auto fn = pci_.find(address);
  if (!fn)
    fail(Errc::DeviceNotFound, "no PCI device " + address + " on this host; 'hostdevctl available --all' lists them");
  if (!fn->iommu_group)
    fail(Errc::IommuUnavailable, address + " has no IOMMU group, so it cannot be passed through: enable the IOMMU "
                                           "(VT-d/AMD-Vi in firmware, intel_iommu=on or amd_iommu=on)");
  DeviceRecord rec;
  rec.id = new_object_id();
  rec.name = device_name;
  rec.type = fn->is_gpu() ? "gpu" : "pci";
  rec.pci_address = address;
  rec.vendor_id = hex4(fn->vendor_id);
  rec.device_id = hex4(fn->device_id);
  rec.iommu_group = fn->iommu_group;
  rec.created_at = now_usec();
  if (!fn->on_vfio())
    rec.host_driver = fn->driver;
  store_.put_device(rec);
  const auto &saved = store_.devices().at(rec.id);
  events_->device_added(saved);
  return saved;
}

void Service::unregister_device(const std::string &id_or_name) {
  const auto rec = device_or_throw(id_or_name);
  if (!rec.attached_to.empty())
    fail(Errc::InUse, rec.name + " is attached to instance " + rec.attached_to + "; delete the instance first");
  store_.remove_device(rec.id);
  events_->device_removed(rec);
}

const DeviceRecord &Service::bind_device(const std::string &id_or_name) {
  auto rec = device_or_throw(id_or_name);
  guard_not_busy(rec);
  if (!rec.attached_to.empty())
    fail(Errc::InUse, rec.name + " is attached to instance " + rec.attached_to);
  auto previous = track_timeout(rec.pci_address, [&] { return vfio_.bind(rec.pci_address); });
  rec.host_driver = previous;
  store_.put_device(rec);
  const auto &saved = store_.devices().at(rec.id);
  events_->device_changed(saved);
  return saved;
}

const DeviceRecord &Service::unbind_device(const std::string &id_or_name) {
  auto rec = device_or_throw(id_or_name);
  guard_not_busy(rec);
  if (!rec.attached_to.empty())
    fail(Errc::InUse, rec.name + " is attached to instance " + rec.attached_to + "; delete the instance first");
  track_timeout(rec.pci_address, [&] { return vfio_.unbind(rec.pci_address, rec.host_driver); });
  const auto &saved = store_.devices().at(rec.id);
  events_->device_changed(saved);
  return saved;
}

const DeviceRecord &Service::restore_device(const std::string &id_or_name) {
  auto rec = device_or_throw(id_or_name);
  if (!rec.attached_to.empty())
    fail(Errc::InUse, rec.name + " is attached to instance " + rec.attached_to + "; delete the instance first");
  track_timeout(rec.pci_address, [&] { return vfio_.restore(rec.pci_address); });
  busy_.erase(rec.pci_address);
  const auto &saved = store_.devices().at(rec.id);
  events_->device_changed(saved);
  return saved;
}

// ---------------------------------------------------------------------------------------------------- instances

const InstanceRecord &Service::create_instance(const std::string &name, const InstanceSpec &spec,
                                               std::uint32_t owner_uid) {
  // 1. Validate everything before the first write.
  validate_name(name, "instance name");
  validate_image(spec.image);
  validate_profile(spec.gpu_profile);
  for (const auto &[id, rec] : store_.instances())
    if (rec.name == name)
      fail(Errc::NameExists, "an instance named '" + name + "' already exists");
  if (spec.devices.empty() && spec.gpu_profile.empty())
    fail(Errc::InvalidArgument, "an instance needs at least one device or a gpu_profile");
  std::vector<DeviceRecord> devices;
  for (const auto &ref : spec.devices) {
    auto rec = device_or_throw(ref);
    if (std::any_of(devices.begin(), devices.end(), [&](const auto &d) { return d.id == rec.id; }))
      fail(Errc::InvalidArgument, "device '" + ref + "' is listed twice");
    if (!rec.attached_to.empty())
      fail(Errc::InUse, rec.name + " is already attached to instance " + rec.attached_to);
    guard_not_busy(rec);
    if (!pci_.find(rec.pci_address))
      fail(Errc::DeviceNotFound, rec.name + " (" + rec.pci_address + ") is no longer present on this host");
    devices.push_back(std::move(rec));
  }
  std::optional<MdevBus::Slot> slot;
  if (!spec.gpu_profile.empty())
    slot = mdev_.find_free(spec.gpu_profile);

  InstanceRecord inst;
  inst.id = new_object_id();
  inst.name = name;
  inst.image = spec.image;
  inst.owner_uid = owner_uid;

  // 2. The journal knows what we are about to do before the kernel does.
  Intent intent;
  intent.id = new_object_id();
  intent.op = "create-instance";
  intent.instance_id = inst.id;
  intent.started_at = now_usec();
  store_.put_intent(intent);

  std::vector<DeviceRecord> bound; // bound (or being bound) by us, in order
  std::vector<std::string> addresses;
  for (const auto &dev : devices)
    addresses.push_back(dev.pci_address);
  bool mdev_recorded = false; // the MdevRecord exists: the create write may have happened
  bool mdev_pending = false;  // the create write did not return (Timeout): the kernel may still make it
  try {
    for (auto &dev : devices) {
      const auto current = pci_.driver_of(dev.pci_address);
      if (current == std::string("vfio-pci"))
        continue; // already on vfio-pci: nothing of ours to undo
      // Journal first: a crash during the bind leaves a record saying whose driver to give it back to.
      dev.host_driver = current;
      store_.put_device(dev);
      bound.push_back(dev);
      intent.bound_devices.push_back(dev.id);
      store_.put_intent(intent);
      track_timeout(dev.pci_address, [&] { return vfio_.bind(dev.pci_address, addresses); });
    }
    crash_point("after-bind");
    if (slot) {
      MdevRecord m;
      m.uuid = new_uuid();
      m.parent = slot->parent;
      m.type_id = slot->type.id;
      m.instance_id = inst.id;
      m.created_at = now_usec();
      store_.put_mdev(m);
      intent.mdev_uuid = m.uuid;
      store_.put_intent(intent);
      mdev_recorded = true;
      try {
        mdev_.create(m.parent, m.type_id, m.uuid, options_.deadline);
      } catch (const Error &e) {
        if (e.code() == Errc::Timeout) {
          mdev_pending = true;
          busy_mdevs_.insert(m.uuid);
        }
        throw;
      }
      crash_point("after-mdev-create");
      inst.gpu_profile = slot->type.name;
      inst.mdev_uuid = m.uuid;
      inst.mdev_parent = m.parent;
    }
    for (auto &dev : devices) {
      dev.attached_to = inst.id;
      inst.devices.push_back(dev.id);
      store_.put_device(dev);
    }
    crash_point("before-instance-commit");
    inst.created_at = now_usec();
    store_.put_instance(inst);
  } catch (...) {
    // All or nothing: undo in reverse order; keep the journal (for reconcile) only if something could not be undone.
    std::string undo_errors;
    auto note = [&](const std::string &what) { undo_errors += "; " + what; };
    if (mdev_pending) {
      note("the kernel has not finished creating mdev " + intent.mdev_uuid + "; reconcile removes it once it has");
    } else if (mdev_recorded) {
      try {
        if (mdev_.find(intent.mdev_uuid))
          mdev_.remove(intent.mdev_uuid, options_.deadline);
        store_.remove_mdev(intent.mdev_uuid);
      } catch (const std::exception &u) {
        note("removing mdev " + intent.mdev_uuid + " failed: " + u.what());
      }
    }
    for (auto &dev : devices) {
      if (dev.attached_to == inst.id) {
        dev.attached_to.clear();
        try {
          store_.put_device(dev);
        } catch (const std::exception &u) {
          note(u.what());
        }
      }
    }
    for (auto it = bound.rbegin(); it != bound.rend(); ++it) {
      try {
        if (is_busy(it->pci_address))
          note(it->name + " is busy with a kernel write that has not returned; 'hostdevctl restore " + it->name +
               "' once it has");
        else if (pci_.driver_of(it->pci_address) == std::string("vfio-pci"))
          vfio_.unbind(it->pci_address, it->host_driver);
      } catch (const std::exception &u) {
        note("giving " + it->name + " back to its driver failed: " + u.what());
      }
    }
    if (undo_errors.empty()) {
      try {
        store_.remove_intent(intent.id);
      } catch (const std::exception &) {
      }
      throw;
    }
    try {
      throw;
    } catch (const Error &e) {
      throw Error(e.code(), std::string(e.what()) + undo_errors + " (reconcile will retry)");
    } catch (const std::exception &e) {
      throw Error(Errc::KernelError, std::string(e.what()) + undo_errors + " (reconcile will retry)");
    }
  }
  store_.remove_intent(intent.id);

  const auto &saved = store_.instances().at(inst.id);
  for (const auto &dev : devices)
    events_->device_changed(store_.devices().at(dev.id));
  if (!saved.mdev_uuid.empty())
    events_->mdev_created(saved.mdev_uuid, saved.gpu_profile, saved.mdev_parent, saved.id);
  events_->instance_added(saved);
  return saved;
}

void Service::delete_instance(const std::string &id_or_name) {
  auto inst = get_instance(id_or_name);
  // Pre-flight: refuse while a VM still holds anything, before changing a thing.
  std::optional<Mdev> mdev;
  if (!inst.mdev_uuid.empty()) {
    mdev = mdev_.find(inst.mdev_uuid);
    if (mdev)
      if (auto holders = find_holders(sysfs_, vfio_device_nodes(sysfs_, "sys/bus/mdev/devices/" + mdev->uuid,
                                                                 mdev->iommu_group));
          !holders.empty())
        fail(Errc::InUse, "mdev " + inst.mdev_uuid + " of instance " + inst.name + " is in use: " +
                              describe_holders(holders));
  }
  std::vector<DeviceRecord> devices;
  for (const auto &id : inst.devices) {
    auto it = store_.devices().find(id);
    if (it == store_.devices().end() || it->second.attached_to != inst.id)
      continue; // gone, or released by an earlier attempt
    guard_not_busy(it->second);
    if (pci_.driver_of(it->second.pci_address) == std::string("vfio-pci"))
      if (auto holders = vfio_.holders_of(it->second.pci_address); !holders.empty())
        fail(Errc::InUse, it->second.name + " of instance " + inst.name + " is in use: " + describe_holders(holders));
    devices.push_back(it->second);
  }

  // Each step is recorded as it completes, so a failed delete can simply be retried.
  if (!inst.mdev_uuid.empty()) {
    const auto uuid = inst.mdev_uuid;
    if (mdev)
      mdev_.remove(uuid, options_.deadline);
    store_.remove_mdev(uuid);
    inst.mdev_uuid.clear();
    store_.put_instance(inst);
    events_->mdev_destroyed(uuid, inst.id);
  }
  for (auto &dev : devices) {
    try {
      if (pci_.driver_of(dev.pci_address) == std::string("vfio-pci"))
        track_timeout(dev.pci_address, [&] { return vfio_.unbind(dev.pci_address, dev.host_driver); });
    } catch (const Error &e) {
      if (e.code() != Errc::Timeout)
        throw;
      // The unbind is still in the kernel: release the device from the instance (it stays busy until
      // 'restore'), so that neither a retried delete nor restore waits on the other.
      dev.attached_to.clear();
      store_.put_device(dev);
      events_->device_changed(store_.devices().at(dev.id));
      throw;
    }
    dev.attached_to.clear();
    store_.put_device(dev);
    events_->device_changed(store_.devices().at(dev.id));
  }
  store_.remove_instance(inst.id);
  events_->instance_removed(inst);
}

// ---------------------------------------------------------------------------------------------------- reconcile

ReconcileStats Service::reconcile() {
  ReconcileStats stats;
  const auto &instances = store_.instances();
  auto instance_owns_mdev = [&](const std::string &instance_id, const std::string &uuid) {
    auto it = instances.find(instance_id);
    return it != instances.end() && it->second.mdev_uuid == uuid;
  };
  // Intents of creates a crash (or a failed rollback) interrupted; those whose instance was saved are complete.
  std::vector<Intent> unfinished;
  for (const auto &[id, intent] : std::map<std::string, Intent>(store_.intents())) {
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

  // 2. Devices attached to instances that no longer exist, and devices an unfinished create bound: give them back
  //    to their host driver first; clear the attachment only once the device is off vfio-pci, so that a device a
  //    VM still holds is never handed to another instance.
  std::set<std::string> not_undone; // device ids still on vfio-pci after this round
  for (const auto &[id, dev] : std::map<std::string, DeviceRecord>(store_.devices())) {
    const bool stale = !dev.attached_to.empty() && !instances.count(dev.attached_to);
    const bool orphan = (dev.attached_to.empty() || stale) &&
                        std::any_of(unfinished.begin(), unfinished.end(), [&](const Intent &i) {
                          return std::find(i.bound_devices.begin(), i.bound_devices.end(), id) != i.bound_devices.end();
                        });
    if (!stale && !orphan)
      continue;
    try {
      if (pci_.driver_of(dev.pci_address) == std::string("vfio-pci")) {
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
      events_->device_changed(store_.devices().at(id));
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
    if (!devices_done || !mdev_done)
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
