// The use cases' reads and the device operations. Instances: instances.cpp; reconcile: reconcile.cpp.
#include "core/service.hpp"

#include "core/error.hpp"
#include "core/host_names.hpp"
#include "core/ids.hpp"
#include "core/lookup.hpp"
#include "core/validate.hpp"

#include <algorithm>
#include <map>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <unordered_map>

namespace hostdev::core {
namespace {

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
    : sysfs_(sysfs), store_(store), names_(names), pci_(sysfs, names), mdev_(sysfs), vendor_(sysfs),
      model_(sysfs, pci_, mdev_, vendor_), vfio_(sysfs, pci_, units, options.deadline),
      events_(events ? events : &no_events_), options_(options) {}

// ---------------------------------------------------------------------------------------------------- reads

HostView Service::host_view() const {
  HostModel fresh(sysfs_, pci_, mdev_, vendor_);
  fresh.rescan();
  return view_of(fresh);
}

void Service::update_model(const ModelChange &change) { model_.update(change); }

HostView Service::model_view() const { return view_of(model_); }

HostView Service::current_view() const { return model_.scanned() ? model_view() : host_view(); }

HostView Service::view_of(const HostModel &model) const {
  HostView view;
  view.functions = model.shared_functions();
  view.parents = model.shared_parents();
  view.mdevs = model.mdevs();
  view.vendor_vfs = model.vendor_vfs();
  view.report = check_host(model.facts(), *view.functions, static_cast<unsigned>(view.parents->size()),
                           static_cast<unsigned>(view.vendor_vfs.size()));
  view.resources = resources(view);
  view.available = available(*view.functions);
  return view;
}

std::vector<AvailableDevice> Service::available(const std::vector<PciFunction> &functions) const {
  // The records by address once, rather than a search of every record for every function.
  std::unordered_map<std::string_view, const std::string *> registered;
  registered.reserve(store_.devices().size());
  for (const auto &[id, record] : store_.devices())
    registered.emplace(record.pci_address, &id);
  std::vector<AvailableDevice> out;
  out.reserve(functions.size());
  for (const auto &fn : functions) {
    auto &dev = out.emplace_back(AvailableDevice{fn, {}});
    if (auto it = registered.find(fn.address); it != registered.end())
      dev.registered_id = *it->second;
  }
  return out;
}

std::vector<AvailableDevice> Service::list_available(bool all) const { return available(pci_.candidates(all)); }

HostReport Service::host_report() const { return host_view().report; }

GpuResources Service::gpu_resources() const { return host_view().resources; }

GpuResources Service::resources(const HostView &view) const {
  GpuResources res;
  res.mode = view.report.gpu_mode;
  if (res.mode == GpuMode::Vgpu) {
    res.frameworks = view.report.gpu_frameworks();
    const auto &functions = *view.functions;
    const auto &parents = *view.parents;
    const auto &mdevs = view.mdevs;
    res.profiles = summarize_profiles(parents);
    std::map<std::string, GpuResources::Gpu> gpus; // by PF address
    auto gpu_entry = [&](const std::string &gpu_address, const char *framework) -> GpuResources::Gpu & {
      auto &gpu = gpus[gpu_address];
      if (gpu.pci_address.empty()) {
        gpu.pci_address = gpu_address;
        gpu.framework = framework;
        const auto *pf = find_function(functions, gpu_address);
        gpu.name = pf && !pf->device_name.empty() ? pf->device_name : gpu_address;
      }
      return gpu;
    };
    for (const auto &parent : parents) {
      unsigned best = 0;
      for (const auto &type : parent.types)
        best = std::max(best, type.available);
      const auto used = static_cast<unsigned>(
          std::count_if(mdevs.begin(), mdevs.end(), [&](const Mdev &m) { return m.parent == parent.name; }));
      auto &gpu = gpu_entry(gpu_of_parent(view, parent.name), "mdev");
      const bool quarantined = is_quarantined(parent.name);
      if (quarantined && best > 0) {
        ++gpu.quarantined_slots;
        ++res.quarantined_slots;
        best = 0;
      }
      gpu.used_slots += used;
      gpu.total_slots += used + best;
      res.used_slots += used;
      res.total_slots += used + best;
    }
    for (const auto &vf : view.vendor_vfs) {
      auto &gpu = gpu_entry(vf.gpu, "vendor-vfio");
      if (vf.current_type != 0) {
        ++gpu.used_slots;
        ++gpu.total_slots;
        ++res.used_slots;
        ++res.total_slots;
      } else if (!vf.creatable.empty()) {
        if (is_quarantined(vf.address)) {
          ++gpu.quarantined_slots;
          ++res.quarantined_slots;
        } else {
          ++gpu.total_slots;
          ++res.total_slots;
        }
      }
    }
    add_vendor_resources(view, res);
    const auto loads = gpu_loads(view);
    for (auto &[address, gpu] : gpus) {
      if (auto l = loads.find(address); l != loads.end())
        gpu.framebuffer_used_mb = l->second.framebuffer_mb;
      res.gpus.push_back(std::move(gpu));
    }
    // mdevs whose parent is not (or no longer) listed count as used too
    const auto counted = res.used_slots;
    const auto vendor_used = static_cast<unsigned>(std::count_if(
        view.vendor_vfs.begin(), view.vendor_vfs.end(), [](const VendorVf &vf) { return vf.current_type != 0; }));
    res.used_slots = std::max(counted, static_cast<unsigned>(mdevs.size()) + vendor_used);
    res.total_slots += res.used_slots - counted;
    return res;
  }
  for (const auto &fn : *view.functions) {
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

const DeviceRecord &Service::get_device(const std::string &id_or_name) const {
  return find_by_id_or_name(store_.devices(), id_or_name, "device",
                            [](const DeviceRecord &r) -> const std::string & { return r.name; });
}

const InstanceRecord &Service::get_instance(const std::string &id_or_name) const {
  return find_by_id_or_name(store_.instances(), id_or_name, "instance",
                            [](const InstanceRecord &r) -> const std::string & { return r.name; });
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

std::vector<Service::VfioObject> Service::vfio_objects(const InstanceRecord &instance) const {
  std::vector<VfioObject> out;
  for (const auto &id : instance.devices)
    if (auto it = store_.devices().find(id); it != store_.devices().end())
      out.push_back({it->second.pci_address, false, pci_sysfs_dir(it->second.pci_address)});
  if (!instance.mdev_uuid.empty())
    out.push_back({instance.mdev_uuid, true, mdev_sysfs_dir(instance.mdev_uuid)});
  if (!instance.vgpu_vf.empty()) // the VF is a plain PCI device to QEMU
    out.push_back({instance.vgpu_vf, false, pci_sysfs_dir(instance.vgpu_vf)});
  return out;
}

InstancePaths Service::instance_paths(const InstanceRecord &instance) const {
  InstancePaths paths;
  for (const auto &o : vfio_objects(instance)) {
    paths.device_paths.push_back(o.dir);
    const auto qemu =
        std::string(kVfioPciDriver) + (o.mdev ? ",sysfsdev=" + o.dir.substr(0, o.dir.size() - 1) : ",host=" + o.name);
    paths.qemu_args.insert(paths.qemu_args.end(), {"-device", qemu});
    if (paths.cloud_hypervisor_args.empty())
      paths.cloud_hypervisor_args.emplace_back("--device");
    paths.cloud_hypervisor_args.push_back("path=" + o.dir);
  }
  append_vm_uuid(instance, paths.qemu_args);
  return paths;
}

void append_vm_uuid(const InstanceRecord &instance, std::vector<std::string> &qemu_args) {
  // NVIDIA's vGPU manager wants the VM's UUID.
  if (!instance.vgpu_vf.empty() && !instance.uuid.empty())
    qemu_args.insert(qemu_args.end(), {"-uuid", instance.uuid});
}

// ---------------------------------------------------------------------------------------------------- devices

void Service::guard_not_busy(const DeviceRecord &device) const {
  if (is_busy(device.pci_address))
    fail(Errc::InUse, device.name + " (" + device.pci_address +
                          ") is busy: an earlier kernel write to it has not returned; a restore of the device clears "
                          "this once it has");
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
    fail(Errc::DeviceNotFound, "no PCI device " + address + " on this host");
  if (fn->is_bridge())
    fail(Errc::InvalidArgument, address + " is a PCI bridge: bridges stay with the host (the devices behind it "
                                          "can be passed through)");
  if (vendor_.is_vendor_vf(address))
    fail(Errc::InvalidArgument, address + " is a vGPU VF of the vendor's VFIO framework: it stays on its driver "
                                          "(vfio-pci cannot take it); ask for its profile with gpu_profile instead");
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
  rec.subsystem_vendor_id = hex4(fn->subsystem_vendor_id);
  rec.subsystem_device_id = hex4(fn->subsystem_device_id);
  rec.iommu_group = fn->iommu_group;
  rec.created_at = now_usec();
  if (!fn->on_vfio())
    rec.host_driver = fn->driver;
  store_.put_device(rec);
  return store_.devices().at(rec.id);
}

void Service::unregister_device(const std::string &id_or_name) {
  const auto rec = get_device(id_or_name);
  if (!rec.attached_to.empty())
    fail(Errc::InUse, rec.name + " is attached to instance " + rec.attached_to + "; delete the instance first");
  // On vfio-pci with a host driver on record: give it back first, since only the record knows where it belongs.
  if (rec.host_driver && pci_.driver_of(rec.pci_address) == std::string(kVfioPciDriver)) {
    guard_not_busy(rec);
    track_timeout(rec.pci_address, [&] { return vfio_.unbind(rec.pci_address, rec.host_driver); });
  }
  store_.remove_device(rec.id);
}

const DeviceRecord &Service::bind_device(const std::string &id_or_name) {
  auto rec = get_device(id_or_name);
  guard_not_busy(rec);
  if (!rec.attached_to.empty())
    fail(Errc::InUse, rec.name + " is attached to instance " + rec.attached_to);
  auto previous = track_timeout(rec.pci_address, [&] { return vfio_.bind(rec.pci_address); });
  rec.host_driver = previous;
  rec.on_vfio = true;
  store_.put_device(rec);
  return store_.devices().at(rec.id);
}

const DeviceRecord &Service::unbind_device(const std::string &id_or_name) {
  auto rec = get_device(id_or_name);
  guard_not_busy(rec);
  if (!rec.attached_to.empty())
    fail(Errc::InUse, rec.name + " is attached to instance " + rec.attached_to + "; delete the instance first");
  track_timeout(rec.pci_address, [&] { return vfio_.unbind(rec.pci_address, rec.host_driver); });
  if (rec.on_vfio) {
    rec.on_vfio = false;
    store_.put_device(rec);
  }
  return store_.devices().at(rec.id);
}

const DeviceRecord &Service::restore_device(const std::string &id_or_name) {
  auto rec = get_device(id_or_name);
  if (!rec.attached_to.empty())
    fail(Errc::InUse, rec.name + " is attached to instance " + rec.attached_to + "; delete the instance first");
  track_timeout(rec.pci_address, [&] { return vfio_.restore(rec.pci_address); });
  busy_.erase(rec.pci_address);
  if (rec.on_vfio) {
    rec.on_vfio = false;
    store_.put_device(rec);
  }
  return store_.devices().at(rec.id);
}

} // namespace hostdev::core
