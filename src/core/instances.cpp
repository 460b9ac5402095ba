// Instances: create (all or nothing, journalled) and delete (retryable, each step recorded as it completes).
#include "core/service.hpp"

#include "core/acl.hpp"
#include "core/error.hpp"
#include "core/host_names.hpp"
#include "core/ids.hpp"
#include "core/process.hpp"
#include "core/undo.hpp"
#include "core/validate.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

namespace hostdev::core {

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
    auto rec = get_device(ref);
    if (std::any_of(devices.begin(), devices.end(), [&](const auto &d) { return d.id == rec.id; }))
      fail(Errc::InvalidArgument, "device '" + ref + "' is listed twice");
    if (!rec.attached_to.empty())
      fail(Errc::InUse, rec.name + " is already attached to instance " + rec.attached_to);
    guard_not_busy(rec);
    if (!pci_.find(rec.pci_address))
      fail(Errc::DeviceNotFound, rec.name + " (" + rec.pci_address + ") is no longer present on this host");
    devices.push_back(std::move(rec));
  }
  std::vector<VgpuCandidate> slots; // every place with room, least-loaded GPU first, tried in order
  if (!spec.gpu_profile.empty()) {
    const auto view = current_view();
    learn_vgpu_types(view); // the types are visible now; once the GPU is full they may not be
    slots = vgpu_candidates(spec.gpu_profile, view);
  }

  InstanceRecord inst;
  inst.id = new_object_id();
  inst.name = name;
  inst.image = spec.image;
  inst.owner_uid = owner_uid;
  inst.persistent = spec.persistent && spec.lease_owner.empty();
  inst.lease_owner = spec.lease_owner;
  inst.lease_pid = spec.lease_pid;
  inst.lease_start = spec.lease_start;

  // 2. The journal knows what we are about to do before the kernel does.
  Intent intent;
  intent.id = new_object_id();
  intent.op = "create-instance";
  intent.instance_id = inst.id;
  intent.started_at = now_usec();
  store_.put_intent(intent);

  std::vector<std::string> addresses;
  for (const auto &dev : devices)
    addresses.push_back(dev.pci_address);

  // 3. The changes, each preceded by the step that takes it back.
  Undo undo;
  try {
    for (auto &dev : devices) {
      const auto current = pci_.driver_of(dev.pci_address);
      if (current == std::string(kVfioPciDriver))
        continue; // already on vfio-pci: nothing of ours to undo
      // Journal first: a crash during the bind leaves a record saying whose driver to give it back to.
      dev.host_driver = current;
      store_.put_device(dev);
      intent.bound_devices.push_back(dev.id);
      store_.put_intent(intent);
      undo.push("giving " + dev.name + " back to its driver", [this, dev] {
        if (is_busy(dev.pci_address))
          fail(Errc::InUse, "a kernel write to it has not returned; a Restore gives it back once it has");
        if (pci_.driver_of(dev.pci_address) == std::string(kVfioPciDriver))
          vfio_.unbind(dev.pci_address, dev.host_driver);
      });
      track_timeout(dev.pci_address, [&] { return vfio_.bind(dev.pci_address, addresses); });
    }
    crash_point("after-bind");
    if (!slots.empty()) {
      // A parent or VF that refuses (EBUSY from a driver, a parent going away) is no reason to fail while another
      // has room: try the next one. A write that times out is not a refusal: it may still happen.
      std::string refusals;
      for (const auto &slot : slots) {
        const bool placed = slot.framework == "vendor-vfio" ? try_vendor_slot(slot, inst, intent, undo, refusals)
                                                            : try_mdev_slot(slot, inst, intent, undo, refusals);
        if (placed)
          break;
      }
      if (inst.mdev_uuid.empty() && inst.vgpu_vf.empty())
        fail(Errc::KernelError, "every place with room for profile '" + spec.gpu_profile + "' refused the vGPU (" +
                                    std::to_string(slots.size()) + " tried): " + refusals);
    }
    for (auto &dev : devices) {
      dev.attached_to = inst.id;
      dev.on_vfio = true;
      inst.devices.push_back(dev.id);
      store_.put_device(dev);
      undo.push("detaching " + dev.name, [this, detached = dev]() mutable {
        detached.attached_to.clear();
        detached.on_vfio = false;
        store_.put_device(detached);
      });
    }
    crash_point("before-instance-commit");
    inst.created_at = now_usec();
    store_.put_instance(inst);
    undo.commit();
  } catch (...) {
    // All or nothing. The journal stays (for reconcile) only if something could not be undone.
    const auto failures = undo.run();
    if (failures.empty()) {
      try {
        store_.remove_intent(intent.id);
      } catch (const std::exception &) {
      }
      throw;
    }
    std::string undo_errors;
    for (const auto &f : failures)
      undo_errors += "; " + f;
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
  if (!saved.mdev_uuid.empty())
    events_->mdev_created(saved.mdev_uuid, saved.gpu_profile, saved.mdev_parent, saved.id);
  if (!saved.vgpu_vf.empty())
    events_->mdev_created(saved.uuid, saved.gpu_profile, saved.vgpu_vf, saved.id);
  return saved;
}

bool Service::try_mdev_slot(const VgpuCandidate &slot, InstanceRecord &inst, Intent &intent, Undo &undo,
                            std::string &refusals) {
  MdevRecord m;
  m.uuid = new_uuid();
  m.parent = slot.target;
  m.type_id = slot.type_id;
  m.instance_id = inst.id;
  m.created_at = now_usec();
  // Recorded before the create write: the write may happen even if we never learn of it.
  store_.put_mdev(m);
  intent.mdev_uuid = m.uuid;
  store_.put_intent(intent);
  try {
    mdev_.create(m.parent, m.type_id, m.uuid, options_.deadline);
  } catch (const Error &e) {
    if (e.code() == Errc::Timeout) {
      busy_mdevs_.insert(m.uuid);
      undo.push("removing mdev " + m.uuid,
                [] { fail(Errc::InUse, "the kernel has not finished creating it; reconcile removes it once it has"); });
      throw;
    }
    refusals += std::string(refusals.empty() ? "" : "; ") + m.parent + ": " + e.what();
    if (mdev_.find(m.uuid)) { // made after all: ours to remove like any other
      undo.push("removing mdev " + m.uuid, [this, uuid = m.uuid] {
        mdev_.remove(uuid, options_.deadline);
        store_.remove_mdev(uuid);
      });
      throw;
    }
    store_.remove_mdev(m.uuid);
    intent.mdev_uuid.clear();
    return false;
  }
  undo.push("removing mdev " + m.uuid, [this, uuid = m.uuid] {
    if (mdev_.find(uuid))
      mdev_.remove(uuid, options_.deadline);
    store_.remove_mdev(uuid);
  });
  crash_point("after-mdev-create");
  inst.gpu_profile = slot.profile;
  inst.mdev_uuid = m.uuid;
  inst.mdev_parent = m.parent;
  return true;
}

bool Service::try_vendor_slot(const VgpuCandidate &slot, InstanceRecord &inst, Intent &intent, Undo &undo,
                              std::string &refusals) {
  VgpuRecord v;
  v.vf = slot.target;
  v.type_id = static_cast<std::uint32_t>(std::stoul(slot.type_id));
  v.instance_id = inst.id;
  v.uuid = new_uuid();
  v.created_at = now_usec();
  // Recorded and journalled before the write of the type id: a crash right after it leaves a trace.
  store_.put_vgpu(v);
  intent.vgpu_vf = v.vf;
  store_.put_intent(intent);
  auto forget = [this, vf = v.vf] { store_.remove_vgpu(vf); };
  try {
    vendor_.assign(v.vf, v.type_id, options_.deadline);
  } catch (const Error &e) {
    if (e.code() == Errc::Timeout) {
      busy_.insert(v.vf);
      undo.push("releasing the vGPU on " + v.vf, [] {
        fail(Errc::InUse, "the driver has not finished the assignment; reconcile releases it once it has");
      });
      throw;
    }
    refusals += std::string(refusals.empty() ? "" : "; ") + v.vf + ": " + e.what();
    if (vendor_.current_type(v.vf) == v.type_id) { // assigned after all (the read-back failed): ours to release
      undo.push("releasing the vGPU on " + v.vf, [this, vf = v.vf, forget] {
        vendor_.release(vf, options_.deadline);
        forget();
      });
      throw;
    }
    forget();
    intent.vgpu_vf.clear();
    return false;
  }
  undo.push("releasing the vGPU on " + v.vf, [this, vf = v.vf, type = v.type_id, forget] {
    if (vendor_.current_type(vf) == type)
      vendor_.release(vf, options_.deadline);
    forget();
  });
  crash_point("after-vgpu-assign");
  inst.gpu_profile = slot.profile;
  inst.vgpu_vf = v.vf;
  inst.vgpu_type = v.type_id;
  inst.uuid = v.uuid;
  return true;
}

std::vector<Holder> Service::instance_holders(const InstanceRecord &inst) const {
  std::vector<Holder> out;
  auto add = [&](std::vector<Holder> more) { out.insert(out.end(), more.begin(), more.end()); };
  if (!inst.mdev_uuid.empty())
    if (auto m = mdev_.find(inst.mdev_uuid))
      add(find_holders(sysfs_, vfio_device_nodes(sysfs_, "sys/bus/mdev/devices/" + m->uuid, m->iommu_group)));
  if (!inst.vgpu_vf.empty())
    add(vf_holders(inst.vgpu_vf));
  for (const auto &id : inst.devices)
    if (auto it = store_.devices().find(id); it != store_.devices().end())
      if (pci_.driver_of(it->second.pci_address) == std::string(kVfioPciDriver))
        add(vfio_.holders_of(it->second.pci_address));
  return out;
}

namespace {

// "511:0", a sysfs dev attribute, as a device number; nullopt when malformed.
std::optional<dev_t> parse_devnum(const std::string &text) {
  unsigned major = 0, minor = 0;
  const auto colon = text.find(':');
  if (colon == std::string::npos)
    return std::nullopt;
  const char *end = text.data() + text.size();
  auto [m1, e1] = std::from_chars(text.data(), text.data() + colon, major);
  auto [m2, e2] = std::from_chars(text.data() + colon + 1, end, minor);
  if (e1 != std::errc() || e2 != std::errc() || m1 != text.data() + colon || m2 != end || colon == 0 ||
      colon + 1 == text.size())
    return std::nullopt;
  return makedev(major, minor);
}

// `node` (a /dev path) opened read-write, after checking it is the character device that the sysfs `dev`
// attribute `attr` names: a node swapped for another device or a file is refused.
Fd open_device_node(const Sysfs &sysfs, const std::string &node, const std::string &attr, const std::string &what) {
  const auto text = sysfs.read_trimmed(attr);
  const auto want = text ? parse_devnum(*text) : std::nullopt;
  if (!want)
    fail(Errc::KernelError, "cannot tell the device number of " + what + " from " + sysfs.display_path(attr));
  Fd fd(sysfs.open_beneath(node, O_RDWR | O_NOCTTY | O_NONBLOCK));
  if (fd.get() < 0) {
    const int err = errno;
    throw Error(Errc::KernelError,
                "cannot open " + sysfs.display_path(node) + " of " + what + ": " + std::strerror(err), err);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISCHR(st.st_mode) || st.st_rdev != *want)
    fail(Errc::KernelError, sysfs.display_path(node) + " is not the device of " + what + " (" + *text + ")");
  return fd;
}

} // namespace

std::optional<std::string> Service::vfio_cdev_of(const VfioObject &object) const {
  const auto dir = object.dir.substr(1) + "vfio-dev";
  const auto entries = sysfs_.list(dir);
  if (entries.size() != 1 || entries[0].rfind("vfio", 0) != 0 || !is_safe_component(entries[0]))
    return std::nullopt;
  return entries[0];
}

Service::VfioAccess Service::open_vfio(const std::string &id_or_name, std::uint32_t uid, const std::string &mode) {
  if (mode != "auto" && mode != "cdev" && mode != "acl")
    fail(Errc::InvalidArgument, "mode must be auto, cdev or acl, not '" + to_valid_utf8(mode) + "'");
  auto inst = instance_to_change(id_or_name);
  if (inst.state != "active")
    fail(Errc::InUse, "instance " + inst.name + " is " + inst.state + ": " + inst.state_reason);
  if (auto holders = instance_holders(inst); !holders.empty())
    fail(Errc::InUse, "instance " + inst.name + " is in use: " + describe_holders(holders));
  const auto objects = vfio_objects(inst);
  if (objects.empty())
    fail(Errc::InvalidArgument, "instance " + inst.name + " has no VFIO device");
  for (const auto &o : objects)
    if (o.mdev && !mdev_.find(o.name))
      fail(Errc::DeviceNotFound, "the mdev " + o.name + " of instance " + inst.name + " is missing");
  bool cdev = mode != "acl" && sysfs_.exists("dev/iommu");
  for (const auto &o : objects)
    cdev = cdev && vfio_cdev_of(o);
  if (mode == "cdev" && !cdev)
    fail(Errc::VfioUnavailable,
         "this kernel has no VFIO device cdevs with iommufd for instance " + inst.name +
             " (/dev/iommu and vfio-dev/vfioN need CONFIG_IOMMUFD and CONFIG_VFIO_DEVICE_CDEV, Linux 6.6+): use "
             "mode acl");
  if (cdev)
    return open_vfio_cdevs(inst, objects);
  VfioAccess access;
  access.qemu_args = instance_paths(inst).qemu_args;
  access.nodes.emplace_back("/dev/vfio/vfio");
  auto add_group = [&](std::optional<int> group, const std::string &what) {
    if (!group)
      fail(Errc::IommuUnavailable, what + " has no IOMMU group");
    const auto node = "/dev/vfio/" + std::to_string(*group);
    if (std::find(access.nodes.begin(), access.nodes.end(), node) == access.nodes.end())
      access.nodes.push_back(node);
  };
  for (const auto &o : objects) {
    if (!o.mdev) {
      add_group(pci_.iommu_group_of(o.name), o.name);
      continue;
    }
    const auto m = mdev_.find(o.name);
    add_group(m ? m->iommu_group : std::nullopt, "mdev " + o.name);
  }
  // Recorded first: whatever a crash leaves granted is revoked with the instance.
  const auto before = inst;
  if (!inst.granted_nodes.empty() && inst.granted_uid != uid)
    fail(Errc::InUse,
         "instance " + inst.name + "'s devices are opened to uid " + std::to_string(inst.granted_uid) + " already");
  inst.granted_nodes = access.nodes;
  inst.granted_uid = uid;
  store_.put_instance(inst);
  std::vector<std::string> done;
  try {
    for (const auto &node : access.nodes) {
      grant_user_access(sysfs_, node.substr(1), uid);
      done.push_back(node);
    }
  } catch (...) {
    for (const auto &node : done)
      try {
        revoke_user_access(sysfs_, node.substr(1), uid);
      } catch (const Error &) {
      }
    store_.put_instance(before);
    throw;
  }
  return access;
}

Service::VfioAccess Service::open_vfio_cdevs(const InstanceRecord &inst, const std::vector<VfioObject> &objects) {
  // Nothing is granted or recorded: the fds are the access, and they are closed here once sent. The cdevs stay
  // unbound: the VMM binds each to its own iommufd (VFIO_DEVICE_BIND_IOMMUFD) after its KVM setup.
  VfioAccess access;
  access.mode = "cdev";
  access.nodes.emplace_back("/dev/iommu");
  access.objects.emplace_back("iommufd");
  access.fds.push_back(open_device_node(sysfs_, "dev/iommu", "sys/class/misc/iommu/dev", "iommufd"));
  const auto fd_number = [](std::size_t index) { return std::to_string(kFdBase + static_cast<int>(index)); };
  access.qemu_args = {"-object", "iommufd,id=iommufd0,fd=" + fd_number(0)};
  for (const auto &o : objects) {
    const auto cdev = vfio_cdev_of(o);
    if (!cdev) // it went since the check
      fail(Errc::VfioUnavailable,
           (o.mdev ? "mdev " : "") + o.name + " of instance " + inst.name + " has no VFIO device cdev any more");
    const auto node = "/dev/vfio/devices/" + *cdev;
    access.fds.push_back(open_device_node(sysfs_, node.substr(1), o.dir.substr(1) + "vfio-dev/" + *cdev + "/dev",
                                          (o.mdev ? "mdev " : "") + o.name));
    access.nodes.push_back(node);
    access.objects.push_back(o.name);
    // An mdev also names its sysfs directory: QEMU opens nothing by it (it has the fd), but tells an mdev only by
    // its sysfsdev's subsystem, and without it asks the kernel for the host IOMMU of a device that has none
    // (IOMMU_GET_HW_INFO: ENOENT, "Failed to get hardware info"; seen with QEMU 10.0 on Linux 6.12).
    auto device = std::string(kVfioPciDriver) + ",iommufd=iommufd0,fd=" + fd_number(access.fds.size() - 1);
    if (o.mdev)
      device += ",sysfsdev=" + (o.dir.ends_with('/') ? o.dir.substr(0, o.dir.size() - 1) : o.dir);
    access.qemu_args.insert(access.qemu_args.end(), {"-device", device});
  }
  append_vm_uuid(inst, access.qemu_args);
  return access;
}

std::uint64_t Service::raise_memlock(const std::string &id_or_name, int pidfd, std::uint64_t bytes, std::uint32_t uid,
                                     const std::string &sender) {
  auto inst = instance_to_change(id_or_name);
  if (inst.lease_owner.empty())
    fail(Errc::InvalidArgument, "instance " + inst.name +
                                    " is not leased: hostdevd raises the locked-memory limit only for the VMM of a "
                                    "leased instance (Create with lease, or hostdevctl run)");
  if (inst.lease_owner != sender)
    fail(Errc::NotAuthorized, "only the connection that holds the lease of instance " + inst.name + " (" +
                                  inst.lease_owner + ") may raise its VMM's locked-memory limit");
  if (bytes == 0)
    fail(Errc::InvalidArgument, "the locked-memory limit to raise to must be more than 0 bytes");
  const auto pid = pid_of_pidfd(pidfd);
  if (!pid)
    fail(Errc::InvalidArgument, "the descriptor passed is not a pidfd of a running process");
  const auto proc = read_process(*pid);
  if (!proc)
    fail(Errc::InvalidArgument, "process " + std::to_string(*pid) + " has ended");
  if (proc->uid != uid)
    fail(Errc::NotAuthorized, "process " + std::to_string(*pid) + " is not yours");
  if (!in_process_tree(*pid, inst.lease_pid, inst.lease_start))
    fail(Errc::NotAuthorized, "process " + std::to_string(*pid) + " is not in the process tree of instance " +
                                  inst.name + "'s lease (pid " + std::to_string(inst.lease_pid) + ")");
  if (inst.memlock_pid != 0 && inst.memlock_pid != *pid && read_process(inst.memlock_pid))
    fail(Errc::InUse, "instance " + inst.name + "'s locked memory was given to process " +
                          std::to_string(inst.memlock_pid) + " already");
  // A limit is never lowered: asking again for the same process counts the most it was given.
  if (inst.memlock_pid == *pid)
    bytes = std::max(bytes, inst.memlock_bytes);
  std::uint64_t others = 0;
  for (const auto &[id, other] : store_.instances())
    if (id != inst.id && other.owner_uid == inst.owner_uid)
      others += other.memlock_bytes;
  const auto mib = [](std::uint64_t b) { return std::to_string(b >> 20) + " MiB"; };
  if (bytes > options_.memlock_max_per_user || others > options_.memlock_max_per_user - bytes)
    fail(Errc::NoCapacity, "the locked memory of one user's VMMs is limited to " + mib(options_.memlock_max_per_user) +
                               " together; " + mib(others) + " is given to other instances, " + mib(bytes) + " asked");
  const auto before = inst;
  inst.memlock_pid = *pid;
  inst.memlock_bytes = bytes;
  store_.put_instance(inst); // counted before the kernel is asked: a crash leaves it counted, never free
  std::uint64_t now = 0;
  try {
    if (!pidfd_alive(pidfd)) // the pid must still be the pidfd's process when the kernel is asked
      fail(Errc::InvalidArgument, "process " + std::to_string(*pid) + " has ended");
    now = core::raise_memlock(*pid, bytes);
  } catch (...) {
    store_.put_instance(before);
    throw;
  }
  // The pid named the pidfd's process when it was read; if the process is still there after the change, the
  // change reached it (a pid is reused only after its process is reaped).
  if (!pidfd_alive(pidfd))
    fail(Errc::InvalidArgument, "process " + std::to_string(*pid) + " ended during the call");
  return now;
}

void Service::revoke_vfio(InstanceRecord &inst) {
  std::vector<std::string> left;
  for (const auto &node : inst.granted_nodes) {
    try {
      revoke_user_access(sysfs_, node.substr(1), inst.granted_uid);
    } catch (const Error &) {
      left.push_back(node);
    }
  }
  inst.granted_nodes = left;
  store_.put_instance(inst);
  if (!left.empty())
    fail(Errc::KernelError,
         "cannot take back the access of uid " + std::to_string(inst.granted_uid) + " to " + join(left));
}

void Service::end_lease(const std::string &id_or_name, std::chrono::milliseconds wait) {
  const auto inst = get_instance(id_or_name);
  const auto until = std::chrono::steady_clock::now() + wait;
  auto holders = instance_holders(inst);
  while (!holders.empty() && std::chrono::steady_clock::now() < until) {
    Sysfs::pause(std::chrono::milliseconds(200));
    holders = instance_holders(inst);
  }
  if (!holders.empty())
    fail(Errc::InUse, "the lease of instance " + inst.name + " ended, but its devices are still held by " +
                          describe_holders(holders) + "; it is deleted once they are closed");
  delete_instance(inst.id);
}

void Service::delete_instance(const std::string &id_or_name) {
  auto inst = instance_to_change(id_or_name);
  // Pre-flight: refuse while a VM still holds anything, before changing a thing.
  std::optional<Mdev> mdev;
  if (!inst.mdev_uuid.empty()) {
    mdev = mdev_.find(inst.mdev_uuid);
    if (mdev)
      if (auto holders =
              find_holders(sysfs_, vfio_device_nodes(sysfs_, "sys/bus/mdev/devices/" + mdev->uuid, mdev->iommu_group));
          !holders.empty())
        fail(Errc::InUse,
             "mdev " + inst.mdev_uuid + " of instance " + inst.name + " is in use: " + describe_holders(holders));
  }
  if (!inst.vgpu_vf.empty()) {
    if (is_busy(inst.vgpu_vf))
      fail(Errc::InUse, "the vGPU on " + inst.vgpu_vf + " of instance " + inst.name +
                            " is busy: an earlier write to it has not returned; a reconcile finishes it");
    if (auto holders = vf_holders(inst.vgpu_vf); !holders.empty())
      fail(Errc::InUse,
           "the vGPU on " + inst.vgpu_vf + " of instance " + inst.name + " is in use: " + describe_holders(holders));
  }
  std::vector<DeviceRecord> devices;
  for (const auto &id : inst.devices) {
    auto it = store_.devices().find(id);
    if (it == store_.devices().end() || it->second.attached_to != inst.id)
      continue; // gone, or released by an earlier attempt
    guard_not_busy(it->second);
    if (pci_.driver_of(it->second.pci_address) == std::string(kVfioPciDriver))
      if (auto holders = vfio_.holders_of(it->second.pci_address); !holders.empty())
        fail(Errc::InUse, it->second.name + " of instance " + inst.name + " is in use: " + describe_holders(holders));
    devices.push_back(it->second);
  }

  // The journal first (a retry or reconcile finishes what this starts); nothing is touched if it cannot be
  // written. An earlier attempt's entry is reused.
  Intent intent;
  for (const auto &[id, existing] : store_.intents())
    if (existing.op == "delete-instance" && existing.instance_id == inst.id)
      intent = existing;
  if (intent.id.empty()) {
    intent.id = new_object_id();
    intent.op = "delete-instance";
    intent.instance_id = inst.id;
    intent.mdev_uuid = inst.mdev_uuid;
    intent.vgpu_vf = inst.vgpu_vf;
    for (const auto &dev : devices)
      intent.bound_devices.push_back(dev.id);
    intent.started_at = now_usec();
    store_.put_intent(intent);
  }

  // Each step is recorded as it completes: the instance stops claiming what it has given back.
  if (!inst.mdev_uuid.empty()) {
    const auto uuid = inst.mdev_uuid;
    if (mdev)
      mdev_.remove(uuid, options_.deadline);
    store_.remove_mdev(uuid);
    inst.mdev_uuid.clear();
    store_.put_instance(inst);
    events_->mdev_destroyed(uuid, inst.id);
  }
  release_vendor_vgpu(inst, true);
  auto release = [&](DeviceRecord &dev) {
    // The instance first: a crash between the two leaves a device attached to an instance that does not list
    // it, which reconcile clears; the other order would let two instances list it.
    std::erase(inst.devices, dev.id);
    store_.put_instance(inst);
    dev.attached_to.clear();
    dev.on_vfio = false;
    store_.put_device(dev);
  };
  for (auto &dev : devices) {
    try {
      if (pci_.driver_of(dev.pci_address) == std::string(kVfioPciDriver))
        track_timeout(dev.pci_address, [&] { return vfio_.unbind(dev.pci_address, dev.host_driver); });
    } catch (const Error &e) {
      if (e.code() != Errc::Timeout)
        throw;
      // The unbind is still in the kernel: release the device from the instance (it stays busy until
      // a restore), so that neither a retried delete nor the restore waits on the other.
      release(dev);
      throw;
    }
    release(dev);
  }
  if (!inst.granted_nodes.empty())
    revoke_vfio(inst);
  store_.remove_instance(inst.id);
  store_.remove_intent(intent.id);
}

} // namespace hostdev::core
