#include "daemon/objects.hpp"

#include "core/process.hpp"

#include "config.h"
#include "core/host_names.hpp"
#include "core/validate.hpp"
#include "daemon/convert.hpp"
#include "daemon/errors.hpp"
#include "daemon/log.hpp"
#include "daemon/options.hpp"
#include "daemon/worker.hpp"
#include "names.hpp"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wold-style-cast"
#include "org_hostdev_passthrough1_adaptor.h"
#pragma GCC diagnostic pop

#include <sdbus-c++/sdbus-c++.h>

#include <algorithm>
#include <utility>

namespace hostdev::daemon {
namespace {

namespace gen = org::hostdev::Passthrough1;

// The one shape of every mutating method: `prepare(options, result)` runs now, on the bus thread, validates and
// resolves the arguments against the model and returns the Mutation (method, canonical details, work); the
// backend authorizes it and queues the work. Any failure, now or later, becomes the error reply.
template <class... R, class Prepare>
void mutation_call(Backend &backend, const sdbus::IObject &object, sdbus::Result<R...> &&result,
                   const VariantMap &options, const std::vector<OptionSpec> &allowed, const char *what,
                   Prepare prepare) {
  auto res = std::make_shared<sdbus::Result<R...>>(std::move(result));
  try {
    const auto *msg = object.getCurrentlyProcessedMessage();
    const std::string sender = msg != nullptr ? msg->getSender() : std::string();
    if (sender.empty())
      core::fail(core::Errc::NotAuthorized, "the call has no sender");
    const auto opts = Options::parse(options, allowed, what);
    Mutation mutation = prepare(opts, res);
    mutation.interactive = opts.interactive();
    mutation.fail = [res](const sdbus::Error &e) { res->returnError(e); };
    backend.submit(sender, std::move(mutation));
  } catch (...) {
    res->returnError(to_dbus_error(std::current_exception()));
  }
}

// Reads answer directly; errors are thrown as sdbus::Error, which sdbus-c++ turns into the error reply.
template <class F> auto read_call(F f) -> decltype(f()) {
  try {
    return f();
  } catch (...) {
    throw to_dbus_error(std::current_exception());
  }
}

// An asynchronous read answered before it returns: `f` gives a reference to what to send.
template <class R, class F> void answer_now(sdbus::Result<R> &result, F f) {
  try {
    const auto &value = f();
    result.returnResults(value);
  } catch (...) {
    result.returnError(to_dbus_error(std::current_exception()));
  }
}

template <class Map>
std::vector<sdbus::ObjectPath> sorted_paths(const Map &map, std::string (*path)(const std::string &)) {
  std::vector<std::pair<std::string, std::string>> items;
  for (const auto &[id, view] : map)
    items.emplace_back(view.record.name, id);
  std::sort(items.begin(), items.end());
  std::vector<sdbus::ObjectPath> out;
  for (const auto &[name, id] : items)
    out.emplace_back(path(id));
  return out;
}

// What polkit rules see of a device and of an instance: names, ids, the normalized address.
Details device_details(const core::DeviceRecord &rec) {
  return {{"device", rec.name}, {"device_id", rec.id}, {"pci_address", rec.pci_address}};
}

// The worker keys of work on a device: its address, its IOMMU group (binding one member looks at the others),
// and for NVIDIA functions nvidia-persistenced, which every NVIDIA bind stops and starts again.
void add_device_keys(std::vector<std::string> &keys, const core::DeviceRecord &rec) {
  keys.push_back("pci:" + rec.pci_address);
  if (rec.iommu_group)
    keys.push_back("group:" + std::to_string(*rec.iommu_group));
  if (rec.vendor_id == core::hex4(core::kNvidiaVendor))
    keys.emplace_back("nvidia-persistenced");
}

Details instance_details(const core::InstanceRecord &rec) { return {{"instance", rec.name}, {"instance_id", rec.id}}; }

} // namespace

std::vector<std::string> instance_keys(const Snapshot &snap, const core::InstanceRecord &rec) {
  std::vector<std::string> keys{"instance:" + rec.id};
  if (!rec.mdev_uuid.empty() || !rec.vgpu_vf.empty())
    keys.emplace_back("vgpu");
  for (const auto &device_id : rec.devices)
    if (auto it = snap.devices.find(device_id); it != snap.devices.end())
      add_device_keys(keys, it->second.record);
  return keys;
}

namespace {

// The shape of every method that acts on one whole instance (Delete, Restore): its owner decides the action, and
// the work is keyed on the instance, its vGPU and its devices.
Mutation instance_mutation(const Snapshot &snap, const InstanceView &view, const char *method,
                           const std::shared_ptr<sdbus::Result<>> &res,
                           std::function<void(core::Service &, const std::string &)> op) {
  Mutation m;
  m.method = method;
  m.details = instance_details(view.record);
  m.instance_owner = view.record.owner_uid;
  m.keys = instance_keys(snap, view.record);
  m.work = [res, id = view.record.id, op = std::move(op)](core::Service &service, const Caller &) -> Reply {
    op(service, id);
    return [res] { res->returnResults(); };
  };
  return m;
}

// Instances.Delete and Instance.Delete.
Mutation delete_mutation(const Snapshot &snap, const InstanceView &view, const char *method,
                         const std::shared_ptr<sdbus::Result<>> &res) {
  return instance_mutation(snap, view, method, res,
                           [](core::Service &service, const std::string &id) { service.delete_instance(id); });
}

std::string joined(const std::vector<std::string> &items) {
  std::string out;
  for (const auto &item : items)
    out += (out.empty() ? "" : ",") + item;
  return out;
}

// One object's signal that cannot be sent (a value D-Bus refuses) is logged; it never stops the others, nor
// the daemon's start.
template <class F> void guarded(const std::string &what, F f) {
  try {
    f();
  } catch (...) {
    log(Level::Warning, "cannot emit " + what + ": " + describe_exception(std::current_exception()));
  }
}

} // namespace

// ------------------------------------------------------------------------------------------------ root object

class RootObject final : public sdbus::AdaptorInterfaces<gen::Devices_adaptor, gen::Instances_adaptor,
                                                         sdbus::ObjectManager_adaptor, sdbus::Properties_adaptor> {
public:
  RootObject(sdbus::IConnection &connection, Backend &backend, const Objects &objects, Replier &replier)
      : AdaptorInterfaces(connection, names::kRootPath), backend_(backend), objects_(objects), replier_(replier) {
    getObject().registerMethod(names::kDevicesInterface, "ListAvailable", "a{sv}", {"options"}, "aa{sv}", {"devices"},
                               [this](sdbus::MethodCall call) { ListAvailable(std::move(call)); });
    registerAdaptor();
  }
  ~RootObject() { unregisterAdaptor(); }

  using Properties_adaptor::emitPropertiesChangedSignal;

private:
  // Devices
  // Registered by hand (not by the generated adaptor, see src/common/adaptor-xml.py): the kept reply is plain
  // data serialized straight into the reply; a big one is serialized and sent by the replier thread, so that the
  // bus thread goes on answering everyone else meanwhile.
  void ListAvailable(sdbus::MethodCall call) {
    try {
      VariantMap options;
      call >> options;
      const auto opts = Options::parse(options, {{"all", "b"}});
      backend_.snapshot(); // may ask for a newer model
      auto available = objects_.replies().available;
      const bool all = opts.get_bool("all", false);
      const bool big = (all ? available->all : available->gpus).size() > kInlineEntries;
      auto send = [call, available = std::move(available), all] {
        auto reply = call.createReply();
        append_maps(reply, all ? available->all : available->gpus);
        reply.send();
      };
      if (big)
        replier_.post(std::move(send));
      else
        send();
    } catch (...) {
      call.createErrorReply(to_dbus_error(std::current_exception())).send();
    }
  }
  // Replies of up to this many functions are sent at once (a few hundred µs); bigger ones by the replier.
  static constexpr std::size_t kInlineEntries = 32;

  void Register(sdbus::Result<sdbus::ObjectPath> &&result, std::string name, std::string pci_address,
                VariantMap options) override {
    mutation_call(backend_, getObject(), std::move(result), options, {}, "option", [&](const Options &, auto res) {
      // polkit sees what will be registered: the normalized address and the name actually used.
      const auto address = core::normalize_pci_address(pci_address);
      const auto device_name = name.empty() ? core::default_device_name(address) : name;
      core::validate_name(device_name, "device name");
      Mutation m;
      m.method = "Devices.Register";
      m.details = {{"pci_address", address}, {"device", device_name}};
      m.keys = {"pci:" + address};
      m.work = [res, device_name, address](core::Service &service, const Caller &) -> Reply {
        const auto path = sdbus::ObjectPath(device_path(service.register_device(device_name, address).id));
        return [res, path] { res->returnResults(path); };
      };
      return m;
    });
  }

  void Unregister(sdbus::Result<> &&result, std::string device, VariantMap options) override {
    mutation_call(backend_, getObject(), std::move(result), options, {}, "option", [&](const Options &, auto res) {
      const auto &view = find_device(backend_.snapshot(), device);
      Mutation m;
      m.method = "Devices.Unregister";
      m.details = device_details(view.record);
      add_device_keys(m.keys, view.record);
      m.work = [res, id = view.record.id](core::Service &service, const Caller &) -> Reply {
        service.unregister_device(id);
        return [res] { res->returnResults(); };
      };
      return m;
    });
  }

  sdbus::ObjectPath GetDevice(const std::string &device) override {
    return read_call(
        [&] { return sdbus::ObjectPath(device_path(find_device(backend_.snapshot(), device).record.id)); });
  }

  std::vector<sdbus::ObjectPath> ListDevices() override {
    return read_call([&] { return sorted_paths(backend_.snapshot().devices, &device_path); });
  }

  void GetGpuResources(sdbus::Result<VariantMap> &&result) override {
    answer_now(result, [&]() -> const VariantMap & {
      backend_.snapshot(); // may ask for a newer model
      return objects_.replies().resources;
    });
  }

  void CheckHost(sdbus::Result<VariantMap> &&result) override {
    answer_now(result, [&]() -> const VariantMap & {
      backend_.snapshot(); // may ask for a newer model
      return objects_.replies().report;
    });
  }

  void Reconcile(sdbus::Result<VariantMap> &&result, VariantMap options) override {
    mutation_call(backend_, getObject(), std::move(result), options, {}, "option", [&](const Options &, auto res) {
      Mutation m;
      m.method = "Devices.Reconcile";
      m.work = [res](core::Service &service, const Caller &) -> Reply {
        const auto stats = service.reconcile();
        return [res, stats] { res->returnResults(stats_map(stats)); };
      };
      return m;
    });
  }

  void ConfigureSriov(sdbus::Result<VariantMap> &&result, std::string pci_address, uint32_t num_vfs,
                      VariantMap options) override {
    mutation_call(backend_, getObject(), std::move(result), options, {}, "option", [&](const Options &, auto res) {
      const auto address = core::normalize_pci_address(pci_address);
      Mutation m;
      m.method = "Devices.ConfigureSriov";
      m.details = {{"pci_address", address}, {"num_vfs", std::to_string(num_vfs)}};
      // Its VFs may be vGPU places or devices of instances: the vGPU key orders it against creates.
      m.keys = {"pci:" + address, "vgpu"};
      m.work = [res, address, num_vfs](core::Service &service, const Caller &) -> Reply {
        const auto r = service.configure_sriov(address, num_vfs);
        VariantMap out{{"pf", sdbus::Variant(r.pf)},
                       {"num_vfs", sdbus::Variant(static_cast<std::uint32_t>(r.num_vfs))},
                       {"drivers_autoprobe", sdbus::Variant(r.drivers_autoprobe)},
                       {"vfs", sdbus::Variant(r.vfs)}};
        return [res, out] { res->returnResults(out); };
      };
      return m;
    });
  }

  void Unquarantine(sdbus::Result<> &&result, std::string vf, VariantMap options) override {
    mutation_call(backend_, getObject(), std::move(result), options, {}, "option", [&](const Options &, auto res) {
      const auto address = core::normalize_pci_address(vf);
      Mutation m;
      m.method = "Devices.Unquarantine";
      m.details = {{"pci_address", address}};
      m.keys = {"vgpu"};
      m.work = [res, address](core::Service &service, const Caller &) -> Reply {
        service.unquarantine(address);
        return [res] { res->returnResults(); };
      };
      return m;
    });
  }

  // Property reads (Get, GetAll, GetManagedObjects) go through backend_.snapshot() like the methods: an old
  // snapshot queues a refresh, so a change made behind hostdev's back shows up.
  std::string GpuMode() override { return core::gpu_mode_name(backend_.snapshot().report.gpu_mode); }
  bool IommuEnabled() override { return backend_.snapshot().report.iommu_enabled; }
  bool VfioAvailable() override { return backend_.snapshot().report.vfio_available(); }
  std::string Version() override { return HOSTDEV_VERSION; }
  uint64_t Generation() override { return backend_.snapshot().generation; }

  // Instances
  void Create(sdbus::Result<sdbus::ObjectPath> &&result, std::string name, VariantMap spec) override {
    mutation_call(backend_, getObject(), std::move(result), spec,
                  {{"devices", "as"}, {"gpu_profile", "s"}, {"image", "s"}, {"persistent", "b"}, {"lease", "b"}},
                  "spec key", [&](const Options &opts, auto res) {
                    core::validate_name(name, "instance name");
                    const auto &snap = backend_.snapshot();
                    // polkit sees the devices by name, id and address, and the profile by name and type id, however the
                    // caller wrote them.
                    core::InstanceSpec s;
                    s.image = opts.get_string("image");
                    s.persistent = opts.get_bool("persistent", true);
                    const bool lease = opts.get_bool("lease", false);
                    if (lease && opts.get_bool("persistent", false))
                      core::fail(core::Errc::InvalidArgument,
                                 "a leased instance cannot be persistent: it ends with its owner");
                    std::vector<std::string> names, ids, addresses, keys{"instance-name:" + name};
                    for (const auto &ref : opts.get_strings("devices")) {
                      const auto &view = find_device(snap, ref);
                      names.push_back(view.record.name);
                      ids.push_back(view.record.id);
                      addresses.push_back(view.record.pci_address);
                      add_device_keys(keys, view.record);
                    }
                    s.devices = ids;
                    Mutation m;
                    m.method = "Instances.Create";
                    m.keys = keys;
                    m.details = {{"instance", name}};
                    if (!ids.empty())
                      m.details.insert(
                          {{"device", joined(names)}, {"device_id", joined(ids)}, {"pci_address", joined(addresses)}});
                    if (const auto profile = opts.get_string("gpu_profile"); !profile.empty()) {
                      const auto &p = core::resolve_profile(snap.resources.profiles, profile);
                      s.gpu_profile = p.name;
                      m.keys.emplace_back("vgpu");
                      m.details.insert({{"profile", p.name}, {"profile_type", p.type_id}});
                    }
                    m.work = [res, name, s, lease](core::Service &service, const Caller &caller) -> Reply {
                      auto with_lease = s;
                      if (lease) {
                        // The lease is the caller's connection; its pid and that pid's start time keep a reused name or
                        // pid from passing for the owner after a restart.
                        with_lease.lease_owner = caller.sender;
                        with_lease.lease_pid = caller.pid;
                        with_lease.lease_start = core::process_start_time(caller.pid);
                      }
                      const auto path =
                          sdbus::ObjectPath(instance_path(service.create_instance(name, with_lease, caller.uid).id));
                      return [res, path] { res->returnResults(path); };
                    };
                    return m;
                  });
  }

  void Delete(sdbus::Result<> &&result, std::string instance, VariantMap options) override {
    mutation_call(backend_, getObject(), std::move(result), options, {}, "option", [&](const Options &, auto res) {
      const auto &snap = backend_.snapshot();
      return delete_mutation(snap, find_instance(snap, instance), "Instances.Delete", res);
    });
  }

  void ReportGuestInit(sdbus::Result<bool> &&result, std::string instance, bool ok, VariantMap options) override {
    mutation_call(backend_, getObject(), std::move(result), options, {}, "option", [&](const Options &, auto res) {
      const auto &view = find_instance(backend_.snapshot(), instance);
      Mutation m;
      m.method = "Instances.ReportGuestInit";
      m.details = instance_details(view.record);
      m.details.emplace("ok", ok ? "true" : "false");
      m.instance_owner = view.record.owner_uid;
      m.keys = {"instance:" + view.record.id, "vgpu"};
      m.work = [res, id = view.record.id, ok](core::Service &service, const Caller &) -> Reply {
        const bool quarantined = service.report_guest_init(id, ok);
        return [res, quarantined] { res->returnResults(quarantined); };
      };
      return m;
    });
  }

  sdbus::ObjectPath GetInstance(const std::string &instance) override {
    return read_call(
        [&] { return sdbus::ObjectPath(instance_path(find_instance(backend_.snapshot(), instance).record.id)); });
  }

  std::vector<sdbus::ObjectPath> ListInstances() override {
    return read_call([&] { return sorted_paths(backend_.snapshot().instances, &instance_path); });
  }

  Backend &backend_;
  const Objects &objects_;
  Replier &replier_;
};

// ---------------------------------------------------------------------------------------------- device objects

class DeviceObject final
    : public sdbus::AdaptorInterfaces<gen::Device_adaptor, sdbus::ManagedObject_adaptor, sdbus::Properties_adaptor> {
public:
  DeviceObject(sdbus::IConnection &connection, Backend &backend, std::string id)
      : AdaptorInterfaces(connection, device_path(id)), backend_(backend), id_(std::move(id)) {
    registerAdaptor();
  }
  ~DeviceObject() { unregisterAdaptor(); }

  using Properties_adaptor::emitPropertiesChangedSignal;

  // The properties that differ between two views of this device.
  static std::vector<std::string> changed(const DeviceView &a, const DeviceView &b) {
    std::vector<std::string> out;
    // clang-format off
    if (a.vendor_name != b.vendor_name) out.emplace_back("VendorName");
    if (a.device_name != b.device_name) out.emplace_back("DeviceName");
    if (a.record.iommu_group != b.record.iommu_group) out.emplace_back("IommuGroup");
    if (a.driver != b.driver) out.emplace_back("Driver");
    if ((a.driver == core::kVfioPciDriver) != (b.driver == core::kVfioPciDriver)) out.emplace_back("BoundToVfio");
    if (a.record.attached_to != b.record.attached_to) out.emplace_back("AttachedTo");
    // clang-format on
    return out;
  }

private:
  void mutate(sdbus::Result<> &&result, const VariantMap &options, const char *method,
              const core::DeviceRecord &(core::Service::*op)(const std::string &)) {
    mutation_call(backend_, getObject(), std::move(result), options, {}, "option", [&](const Options &, auto res) {
      const auto &view = find_device(backend_.snapshot(), id_);
      Mutation m;
      m.method = method;
      m.details = device_details(view.record);
      add_device_keys(m.keys, view.record);
      m.work = [res, id = id_, op](core::Service &service, const Caller &) -> Reply {
        (service.*op)(id);
        return [res] { res->returnResults(); };
      };
      return m;
    });
  }

  void BindVfio(sdbus::Result<> &&result, VariantMap options) override {
    mutate(std::move(result), std::move(options), "Device.BindVfio", &core::Service::bind_device);
  }
  void UnbindVfio(sdbus::Result<> &&result, VariantMap options) override {
    mutate(std::move(result), std::move(options), "Device.UnbindVfio", &core::Service::unbind_device);
  }
  void Restore(sdbus::Result<> &&result, VariantMap options) override {
    mutate(std::move(result), std::move(options), "Device.Restore", &core::Service::restore_device);
  }

  // Property reads queue a refresh of an old snapshot, like the methods (see Backend::snapshot).
  const DeviceView &view() const {
    static const DeviceView empty;
    const auto &snap = backend_.snapshot();
    auto it = snap.devices.find(id_);
    return it == snap.devices.end() ? empty : it->second;
  }

  std::string Id() override { return id_; }
  std::string Name() override { return view().record.name; }
  std::string Type() override { return view().record.type; }
  std::string PciAddress() override { return view().record.pci_address; }
  std::string VendorId() override { return view().record.vendor_id; }
  std::string DeviceId() override { return view().record.device_id; }
  std::string VendorName() override { return view().vendor_name; }
  std::string DeviceName() override { return view().device_name; }
  int32_t IommuGroup() override { return view().record.iommu_group.value_or(-1); }
  std::string Driver() override { return view().driver; }
  bool BoundToVfio() override { return view().driver == core::kVfioPciDriver; }
  sdbus::ObjectPath AttachedTo() override {
    const auto &att = view().record.attached_to;
    return sdbus::ObjectPath(att.empty() ? std::string("/") : instance_path(att));
  }
  uint64_t CreatedAt() override { return view().record.created_at; }
  std::string SysfsPath() override { return view().sysfs_path; }

  Backend &backend_;
  std::string id_;
};

// -------------------------------------------------------------------------------------------- instance objects

class InstanceObject final
    : public sdbus::AdaptorInterfaces<gen::Instance_adaptor, sdbus::ManagedObject_adaptor, sdbus::Properties_adaptor> {
public:
  InstanceObject(sdbus::IConnection &connection, Backend &backend, std::string id)
      : AdaptorInterfaces(connection, instance_path(id)), backend_(backend), id_(std::move(id)) {
    registerAdaptor();
  }
  ~InstanceObject() { unregisterAdaptor(); }

  using Properties_adaptor::emitPropertiesChangedSignal;

  static std::vector<std::string> changed(const InstanceView &a, const InstanceView &b) {
    std::vector<std::string> out;
    // clang-format off
    if (a.record.devices != b.record.devices) out.emplace_back("Devices");
    if (a.record.gpu_profile != b.record.gpu_profile) out.emplace_back("GpuProfile");
    if (a.record.mdev_uuid != b.record.mdev_uuid) out.emplace_back("MdevUuid");
    if (a.record.vgpu_vf != b.record.vgpu_vf) out.emplace_back("VgpuVf");
    if (a.record.uuid != b.record.uuid) out.emplace_back("Uuid");
    if (a.record.state != b.record.state) out.emplace_back("State");
    if (a.record.state_reason != b.record.state_reason) out.emplace_back("StateReason");
    if (a.paths.device_paths != b.paths.device_paths) out.emplace_back("DevicePaths");
    if (a.paths.qemu_args != b.paths.qemu_args) out.emplace_back("QemuArgs");
    if (a.paths.cloud_hypervisor_args != b.paths.cloud_hypervisor_args) out.emplace_back("CloudHypervisorArgs");
    // clang-format on
    return out;
  }

private:
  void Delete(sdbus::Result<> &&result, VariantMap options) override {
    mutation_call(backend_, getObject(), std::move(result), options, {}, "option", [&](const Options &, auto res) {
      const auto &snap = backend_.snapshot();
      return delete_mutation(snap, find_instance(snap, id_), "Instance.Delete", res);
    });
  }

  void RaiseMemlock(sdbus::Result<std::uint64_t> &&result, sdbus::UnixFd process, std::uint64_t bytes,
                    VariantMap options) override {
    mutation_call(backend_, getObject(), std::move(result), options, {}, "option", [&](const Options &, auto res) {
      const auto &view = find_instance(backend_.snapshot(), id_);
      Mutation m;
      m.method = "Instance.RaiseMemlock";
      m.details = instance_details(view.record);
      m.details["bytes"] = std::to_string(bytes);
      m.instance_owner = view.record.owner_uid;
      m.keys = {"instance:" + view.record.id};
      m.work = [res, id = view.record.id, process, bytes](core::Service &service, const Caller &caller) -> Reply {
        const auto limit = service.raise_memlock(id, process.get(), bytes, caller.uid, caller.sender);
        return [res, limit] { res->returnResults(limit); };
      };
      return m;
    });
  }

  void OpenVfio(sdbus::Result<std::vector<sdbus::UnixFd>, VariantMap> &&result, VariantMap options) override {
    mutation_call(backend_, getObject(), std::move(result), options, {{"mode", "s"}}, "option",
                  [&](const Options &opts, auto res) {
                    const auto &view = find_instance(backend_.snapshot(), id_);
                    Mutation m;
                    m.method = "Instance.OpenVfio";
                    m.details = instance_details(view.record);
                    m.instance_owner = view.record.owner_uid;
                    m.keys = {"instance:" + view.record.id};
                    m.work = [res, id = view.record.id, mode = opts.get_string("mode", "auto")](
                                 core::Service &service, const Caller &caller) -> Reply {
                      auto access = service.open_vfio(id, caller.uid, mode);
                      std::vector<sdbus::UnixFd> fds;
                      for (auto &fd : access.fds)
                        fds.emplace_back(fd.release(), sdbus::adopt_fd);
                      VariantMap layout{{"mode", sdbus::Variant(access.mode)},
                                        {"nodes", sdbus::Variant(access.nodes)},
                                        {"uid", sdbus::Variant(caller.uid)},
                                        {"qemu_args", sdbus::Variant(access.qemu_args)}};
                      if (access.mode == "cdev") {
                        layout.emplace("fds_of", sdbus::Variant(access.objects));
                        layout.emplace("fd_base", sdbus::Variant(static_cast<std::int32_t>(core::Service::kFdBase)));
                      }
                      return [res, fds = std::move(fds), layout] { res->returnResults(fds, layout); };
                    };
                    return m;
                  });
  }

  void Restore(sdbus::Result<> &&result, VariantMap options) override {
    mutation_call(backend_, getObject(), std::move(result), options, {}, "option", [&](const Options &, auto res) {
      const auto &snap = backend_.snapshot();
      return instance_mutation(snap, find_instance(snap, id_), "Instance.Restore", res,
                               [](core::Service &service, const std::string &id) { service.restore_instance(id); });
    });
  }

  // Property reads queue a refresh of an old snapshot, like the methods (see Backend::snapshot).
  const InstanceView &view() const {
    static const InstanceView empty;
    const auto &snap = backend_.snapshot();
    auto it = snap.instances.find(id_);
    return it == snap.instances.end() ? empty : it->second;
  }

  std::string Id() override { return id_; }
  std::string Name() override { return view().record.name; }
  std::string Image() override { return view().record.image; }
  std::vector<sdbus::ObjectPath> Devices() override {
    std::vector<sdbus::ObjectPath> out;
    for (const auto &id : view().record.devices)
      out.emplace_back(device_path(id));
    return out;
  }
  std::string GpuProfile() override { return view().record.gpu_profile; }
  std::string MdevUuid() override { return view().record.mdev_uuid; }
  std::string VgpuVf() override { return view().record.vgpu_vf; }
  std::string Uuid() override { return view().record.uuid; }
  std::string State() override { return view().record.state; }
  std::string StateReason() override { return view().record.state_reason; }
  bool Persistent() override { return view().record.persistent; }
  std::string LeaseOwner() override { return view().record.lease_owner; }
  std::vector<std::string> DevicePaths() override { return view().paths.device_paths; }
  std::vector<std::string> QemuArgs() override { return view().paths.qemu_args; }
  std::vector<std::string> CloudHypervisorArgs() override { return view().paths.cloud_hypervisor_args; }
  uint32_t Owner() override { return view().record.owner_uid; }
  uint64_t CreatedAt() override { return view().record.created_at; }

  Backend &backend_;
  std::string id_;
};

// ------------------------------------------------------------------------------------------------------ Objects

Objects::Objects(sdbus::IConnection &connection, Backend &backend, Replier &replier)
    : connection_(connection), backend_(backend), replier_(replier) {}

Objects::~Objects() = default;

void Objects::export_root() { root_ = std::make_unique<RootObject>(connection_, backend_, *this, replier_); }

void Objects::apply(Snapshot next) {
  HOSTDEV_ASSERT_BUS_THREAD();
  retired_.push_back(std::exchange(current_, std::move(next)));
  const Snapshot &old = retired_.back();
  const auto &now = current_;
  // Each entry of `now` against the entry of `old` at the same address, compared once: both lists are sorted by
  // address (the model's order), so one walk of the two pairs them. Lists in another order only cost reuse.
  constexpr auto kNone = static_cast<std::size_t>(-1);
  std::vector<std::size_t> same_before(now.available.size(), kNone); // index into old.available, or kNone
  bool available_same = now.available.size() == old.available.size();
  for (std::size_t i = 0, j = 0; i < now.available.size(); ++i) {
    const auto &address = now.available[i].function.address;
    while (j < old.available.size() && old.available[j].function.address < address) {
      ++j;
      available_same = false;
    }
    if (j < old.available.size() && old.available[j].function.address == address) {
      if (old.available[j] == now.available[i])
        same_before[i] = j;
      else
        available_same = false;
      ++j;
    } else {
      available_same = false;
    }
  }
  const bool changed = !available_same || !now.same_besides_available(old);
  current_.generation = old.generation + (changed ? 1 : 0);
  if (changed || old.generation == 0) {
    Replies r;
    auto available = std::make_shared<Available>();
    available->entries.reserve(now.available.size());
    // The entries before were made from `old` (replies are remade with every changed snapshot), in its order.
    const auto &before = replies_.available->entries;
    const bool reusable = before.size() == old.available.size();
    for (std::size_t i = 0; i < now.available.size(); ++i) {
      if (reusable && same_before[i] != kNone)
        available->entries.push_back(before[same_before[i]]);
      else
        available->entries.push_back(std::make_shared<const WireMap>(available_entry(now.available[i])));
    }
    for (std::size_t i = 0; i < now.available.size(); ++i) {
      available->all.push_back(available->entries[i].get());
      if (now.available[i].function.is_gpu())
        available->gpus.push_back(available->entries[i].get());
    }
    r.available = std::move(available);
    // Parts that did not change keep the values made before (a Register changes neither on a vGPU host).
    const bool first = old.generation == 0;
    r.resources =
        !first && old.resources == now.resources ? std::move(replies_.resources) : resources_map(now.resources);
    r.report = !first && old.report == now.report ? std::move(replies_.report) : report_map(now.report);
    replies_ = std::move(r);
  }

  // 1. New objects.
  for (const auto &[id, view] : now.devices)
    if (!devices_.count(id)) {
      devices_[id] = std::make_unique<DeviceObject>(connection_, backend_, id);
      guarded("InterfacesAdded of " + device_path(id), [&, oid = id] { devices_[oid]->emitInterfacesAddedSignal(); });
    }
  for (const auto &[id, view] : now.instances)
    if (!instances_.count(id)) {
      instances_[id] = std::make_unique<InstanceObject>(connection_, backend_, id);
      guarded("InterfacesAdded of " + instance_path(id),
              [&, oid = id] { instances_[oid]->emitInterfacesAddedSignal(); });
    }

  // 2. Changed properties.
  std::vector<std::string> root_changed;
  if (old.report.gpu_mode != now.report.gpu_mode)
    root_changed.emplace_back("GpuMode");
  if (old.report.iommu_enabled != now.report.iommu_enabled)
    root_changed.emplace_back("IommuEnabled");
  if (changed)
    root_changed.emplace_back("Generation");
  if (old.report.vfio_available() != now.report.vfio_available())
    root_changed.emplace_back("VfioAvailable");
  if (root_ && !root_changed.empty())
    guarded("PropertiesChanged of the root",
            [&] { root_->emitPropertiesChangedSignal(names::kDevicesInterface, root_changed); });
  for (const auto &[id, view] : now.devices) {
    auto it = old.devices.find(id);
    if (it == old.devices.end())
      continue;
    auto props = DeviceObject::changed(it->second, view);
    if (!props.empty())
      guarded("PropertiesChanged of " + device_path(id),
              [&, oid = id] { devices_[oid]->emitPropertiesChangedSignal(names::kDeviceInterface, props); });
  }
  for (const auto &[id, view] : now.instances) {
    auto it = old.instances.find(id);
    if (it == old.instances.end())
      continue;
    auto props = InstanceObject::changed(it->second, view);
    if (!props.empty())
      guarded("PropertiesChanged of " + instance_path(id),
              [&, oid = id] { instances_[oid]->emitPropertiesChangedSignal(names::kInstanceInterface, props); });
  }

  // 3. Vanished objects.
  for (auto it = instances_.begin(); it != instances_.end();) {
    if (now.instances.count(it->first)) {
      ++it;
      continue;
    }
    guarded("InterfacesRemoved of " + instance_path(it->first), [&] { it->second->emitInterfacesRemovedSignal(); });
    dead_instances_.push_back(std::move(it->second));
    it = instances_.erase(it);
  }
  for (auto it = devices_.begin(); it != devices_.end();) {
    if (now.devices.count(it->first)) {
      ++it;
      continue;
    }
    guarded("InterfacesRemoved of " + device_path(it->first), [&] { it->second->emitInterfacesRemovedSignal(); });
    dead_devices_.push_back(std::move(it->second));
    it = devices_.erase(it);
  }
}

void Objects::bury() {
  HOSTDEV_ASSERT_BUS_THREAD();
  dead_instances_.clear();
  dead_devices_.clear();
  retired_.clear();
}

void Objects::emit(const std::vector<PendingSignal> &signals) {
  HOSTDEV_ASSERT_BUS_THREAD();
  if (!root_)
    return;
  for (const auto &s : signals) {
    switch (s.kind) {
    case PendingSignal::Kind::MdevCreated:
      root_->emitMdevCreated(s.uuid, s.profile, s.parent, sdbus::ObjectPath(instance_path(s.instance_id)));
      break;
    case PendingSignal::Kind::MdevDestroyed:
      root_->emitMdevDestroyed(
          s.uuid, sdbus::ObjectPath(s.instance_id.empty() ? std::string("/") : instance_path(s.instance_id)));
      break;
    case PendingSignal::Kind::Reconciled: root_->emitMdevsReconciled(stats_map(s.stats)); break;
    case PendingSignal::Kind::VfQuarantined: root_->emitVfQuarantined(s.parent, s.instance_ids); break;
    case PendingSignal::Kind::InstanceStateChanged:
      root_->emitInstanceStateChanged(sdbus::ObjectPath(instance_path(s.instance_id)), s.state, s.reason);
      break;
    }
  }
}

} // namespace hostdev::daemon
