#include "cli/commands.hpp"

#include "cli/agent.hpp"
#include "cli/bus.hpp"
#include "cli/errors.hpp"
#include "cli/table.hpp"
#include "names.hpp"

#include <chrono>
#include <ctime>
#include <fcntl.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <csignal>
#include <cstring>
#include <sys/syscall.h>
#include <sys/wait.h>

namespace hostdev::cli {

using nlohmann::json;

namespace {

// A table cell from a JSON value: "-" for null or missing, yes/no for booleans.
std::string cell(const json &j, const std::string &key) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null())
    return "-";
  const auto &v = j[key];
  if (v.is_string())
    return v.get<std::string>().empty() ? "-" : v.get<std::string>();
  if (v.is_boolean())
    return v.get<bool>() ? "yes" : "no";
  return v.dump();
}

std::string local_time(const json &us) {
  if (!us.is_number_unsigned() && !us.is_number_integer())
    return "-";
  const auto t = static_cast<std::time_t>(us.get<std::uint64_t>() / 1000000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::string owner_name(const json &uid) {
  if (!uid.is_number())
    return "-";
  const auto id = uid.get<std::uint32_t>();
  std::string s = std::to_string(id);
  if (const passwd *pw = getpwuid(id); pw != nullptr)
    s += " (" + std::string(pw->pw_name) + ")";
  return s;
}

std::string shell_quote(const std::string &s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=.,:/@%") ==
                        std::string::npos)
    return s;
  std::string q = "'";
  for (char c : s)
    q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string join_args(const json &args) {
  std::string line;
  if (args.is_array())
    for (const auto &a : args)
      line += (line.empty() ? "" : " ") + shell_quote(a.get<std::string>());
  return line;
}

std::string join(const std::vector<std::string> &parts, const std::string &sep) {
  std::string s;
  for (const auto &p : parts)
    s += (s.empty() ? "" : sep) + p;
  return s;
}

// "key  value" lines with the keys padded to one width.
void print_fields(std::ostream &out, const std::vector<std::pair<std::string, std::string>> &fields) {
  std::size_t w = 0;
  for (const auto &f : fields)
    w = std::max(w, f.first.size());
  for (const auto &[k, v] : fields)
    out << "  " << k << std::string(w - k.size() + 2, ' ') << v << '\n';
}

std::string describe(const json &dev) {
  std::string name;
  if (dev.value("vendor_name", json()).is_string())
    name = dev["vendor_name"].get<std::string>();
  if (dev.value("device_name", json()).is_string() && !dev["device_name"].get<std::string>().empty())
    name += (name.empty() ? "" : " ") + dev["device_name"].get<std::string>();
  return name.empty() ? "-" : name;
}

class Session {
public:
  explicit Session(const Invocation &inv) : inv_(inv) {
    conn_ = connect_bus(inv.bus);
    root_ = std::make_unique<RootProxy>(*conn_);
  }

  RootProxy &root() { return *root_; }
  sdbus::IConnection &connection() { return *conn_; }

  // The options of a mutating call. On a terminal (and without --no-ask-password) polkit may ask for a password:
  // start a text agent for this process and say so in "interactive".
  VariantMap mutation_options() {
    VariantMap o;
    const bool interactive = !inv_.no_ask_password && isatty(STDIN_FILENO) == 1;
    if (interactive) {
      o["interactive"] = sdbus::Variant(true);
      agent_.start(inv_.bus == "system" || inv_.bus == "session" ? "" : inv_.bus);
    }
    // Binds wait for the kernel and authentication waits for a person: allow more than the default 25 s.
    conn_->setMethodCallTimeout(std::chrono::minutes(interactive ? 10 : 2));
    return o;
  }

private:
  const Invocation &inv_;
  std::unique_ptr<sdbus::IConnection> conn_;
  std::unique_ptr<RootProxy> root_;
  PolkitAgent agent_;
};

// ---------------------------------------------------------------------------------------------------- output

void print_device(std::ostream &out, const json &d) {
  out << "Device " << cell(d, "name") << '\n';
  std::string driver = cell(d, "driver");
  if (d.value("bound_to_vfio", false))
    driver += " (bound to vfio-pci)";
  print_fields(out, {{"id", cell(d, "id")},
                     {"type", cell(d, "type")},
                     {"PCI address", cell(d, "pci_address")},
                     {"vendor:device", cell(d, "vendor_id") + ":" + cell(d, "device_id") + "  " + describe(d)},
                     {"IOMMU group", cell(d, "iommu_group")},
                     {"driver", driver},
                     {"attached to", cell(d, "attached_to_name")},
                     {"sysfs path", cell(d, "sysfs_path")},
                     {"registered", local_time(d.value("created_at", json()))},
                     {"object", cell(d, "path")}});
}

void print_instance(std::ostream &out, const json &i, const Objects &objs) {
  out << "Instance " << cell(i, "name") << '\n';
  std::vector<std::string> devs;
  if (i.contains("devices") && i["devices"].is_array())
    for (const auto &p : i["devices"]) {
      const auto path = p.get<std::string>();
      std::string s = objs.name_of(path);
      if (const auto *o = objs.device(path); o != nullptr) {
        const auto dj = properties_json(o->props);
        s += " (" + cell(dj, "pci_address") + ")";
      }
      devs.push_back(s);
    }
  const auto reason = i.value("state_reason", json());
  print_fields(out, {{"id", cell(i, "id")},
                     {"state", cell(i, "state") + (reason.is_string() ? ": " + reason.get<std::string>() : "")},
                     {"persistent", i.value("persistent", true) ? "yes (restored after a reboot)" : "no"},
                     {"owner", owner_name(i.value("owner", json()))},
                     {"created", local_time(i.value("created_at", json()))},
                     {"image", cell(i, "image")},
                     {"devices", devs.empty() ? "-" : join(devs, ", ")},
                     {"GPU profile", cell(i, "gpu_profile")},
                     {"mdev", cell(i, "mdev_uuid")},
                     {"vGPU VF", cell(i, "vgpu_vf")},
                     {"UUID", cell(i, "uuid")},
                     {"object", cell(i, "path")}});
  out << "\nDevice paths\n";
  if (i.value("device_paths", json::array()).empty())
    out << "  none\n";
  for (const auto &p : i.value("device_paths", json::array()))
    out << "  " << p.get<std::string>() << '\n';
  out << "\nQEMU arguments\n  " << join_args(i.value("qemu_args", json::array())) << '\n';
  out << "\nCloud Hypervisor arguments\n  " << join_args(i.value("cloud_hypervisor_args", json::array())) << '\n';
  if (i.value("vgpu_vf", json()).is_string())
    out << "  (Cloud Hypervisor cannot start a vendor-VFIO vGPU upstream: NVIDIA's vGPU manager needs the VM's UUID, "
           "which it does not pass; use QEMU)\n";
}

void print_profiles_table(std::ostream &out, const json &profiles, const std::string &indent) {
  Table t({indent + "PROFILE", "TYPE", "FRAMEWORK", "FRAMEBUFFER", "AVAILABLE", "QUARANTINED"});
  for (const auto &p : profiles) {
    const auto fb = p.value("framebuffer_mb", 0u);
    const auto q = p.value("quarantined", 0u);
    t.add({indent + cell(p, "name"), cell(p, "type"), cell(p, "framework"), fb ? std::to_string(fb) + " MB" : "-",
           cell(p, "available"), q ? std::to_string(q) : "-"});
  }
  t.print(out);
}

void print_gpus_table(std::ostream &out, const json &gpus, const std::string &indent) {
  Table t({indent + "GPU", "NAME", "FRAMEWORK", "USED", "OF", "FRAMEBUFFER USED", "QUARANTINED"});
  for (const auto &g : gpus) {
    const auto q = g.value("quarantined_slots", 0u);
    t.add({indent + cell(g, "pci_address"), cell(g, "name"), cell(g, "framework"), cell(g, "used_slots"),
           cell(g, "total_slots"), std::to_string(g.value("framebuffer_used_mb", 0u)) + " MB",
           q ? std::to_string(q) : "-"});
  }
  t.print(out);
}

const Objects::Object &must_find(const Objects::Object *o, const std::string &what) {
  if (o == nullptr)
    throw sdbus::Error("org.freedesktop.DBus.Error.UnknownObject", what + " vanished while being read");
  return *o;
}

// ---------------------------------------------------------------------------------------------- the commands

int cmd_status(Session &s, const Invocation &inv, std::ostream &out) {
  const json host = map_json(s.root().CheckHost());
  const json res = map_json(s.root().GetGpuResources());
  const std::string version = s.root().Version();
  if (inv.json) {
    out << json{{"version", version}, {"host", host}, {"resources", res}}.dump(2) << '\n';
    return kExitOk;
  }
  out << "hostdevd " << version << " on "
      << (inv.bus == "system" || inv.bus == "session" ? "the " + inv.bus + " bus" : "bus " + inv.bus) << "\n\nHost\n";
  Table t({"  CHECK", "STATE"});
  t.add({"  IOMMU", host.value("iommu_enabled", false) ? "enabled" : "off"});
  t.add({"  vfio-pci", host.value("vfio_pci_available", false) ? "available" : "missing"});
  t.add({"  vfio_iommu_type1", host.value("vfio_iommu_type1_loaded", false) ? "loaded" : "missing"});
  const auto size = host.value("hugepage_size_kb", std::uint64_t{0});
  t.add({"  hugepages", std::to_string(host.value("hugepages_free", std::uint64_t{0})) + " free of " +
                            std::to_string(host.value("hugepages_total", std::uint64_t{0})) +
                            (size ? " (" + std::to_string(size) + " kB)" : "")});
  const auto framework = host.value("gpu_framework", std::string());
  t.add({"  GPU mode", cell(host, "gpu_mode") + (framework.empty() ? "" : " (" + framework + ")")});
  t.print(out);
  const auto problems = host.value("problems", json::array());
  const auto hints = host.value("hints", json::array());
  if (!problems.empty()) {
    out << "\nProblems\n";
    for (std::size_t i = 0; i < problems.size(); ++i) {
      out << "  - " << problems[i].get<std::string>() << '\n';
      if (i < hints.size() && !hints[i].get<std::string>().empty())
        out << "    hint: " << hints[i].get<std::string>() << '\n';
    }
  }
  const auto quarantined = res.value("quarantined_slots", 0u);
  out << "\nGPU resources: mode " << cell(res, "mode") << ", " << cell(res, "used_slots") << " of "
      << cell(res, "total_slots") << " slots used"
      << (quarantined ? ", " + std::to_string(quarantined) + " quarantined" : std::string()) << "\n";
  const auto profiles = res.value("profiles", json::array());
  const auto devices = res.value("devices", json::array());
  const auto gpus = res.value("gpus", json::array());
  if (!gpus.empty())
    print_gpus_table(out, gpus, "  ");
  if (!profiles.empty())
    print_profiles_table(out, profiles, "  ");
  if (!devices.empty()) {
    Table d({"  DEVICE", "ADDRESS", "AVAILABLE"});
    for (const auto &x : devices)
      d.add({"  " + cell(x, "name"), cell(x, "pci_address"), cell(x, "available")});
    d.print(out);
  }
  if (profiles.empty() && devices.empty())
    out << "  nothing to hand out yet (register a device: 'hostdevctl available', 'hostdevctl register')\n";
  return kExitOk;
}

int cmd_available(Session &s, const Invocation &inv, std::ostream &out) {
  const auto list = s.root().ListAvailable({{"all", sdbus::Variant(inv.all)}});
  const Objects objs = Objects::fetch(s.root());
  json arr = json::array();
  for (const auto &m : list) {
    json d = map_json(m);
    // The same keys as `inspect --json` devices: the daemon leaves null values out, put them back.
    for (const char *k : {"iommu_group", "driver", "driver_override", "sriov_totalvfs", "sriov_numvfs", "physfn"})
      if (!d.contains(k))
        d[k] = nullptr;
    if (!d.contains("registered") || d["registered"] == "/")
      d["registered"] = nullptr;
    d["registered_name"] = d["registered"].is_string() ? json(objs.name_of(d["registered"])) : json();
    arr.push_back(d);
  }
  if (inv.json) {
    out << arr.dump(2) << '\n';
    return kExitOk;
  }
  if (arr.empty()) {
    out << (inv.all ? "No PCI functions.\n" : "No passthrough candidates (GPUs); --all lists every PCI function.\n");
    return kExitOk;
  }
  Table t({"ADDRESS", "ID", "CLASS", "GROUP", "DRIVER", "REGISTERED", "NAME"});
  for (const auto &d : arr)
    t.add({cell(d, "pci_address"), cell(d, "vendor_id") + ":" + cell(d, "device_id"), cell(d, "class"),
           cell(d, "iommu_group"), cell(d, "driver"), cell(d, "registered_name"), describe(d)});
  t.print(out);
  return kExitOk;
}

int cmd_register(Session &s, const Invocation &inv, std::ostream &out) {
  std::string name = inv.args.size() == 2 ? inv.args[0] : "";
  if (name == "-")
    name = "";
  const std::string address = inv.args.back();
  const auto path = s.root().Register(name, address, s.mutation_options());
  const Objects objs = Objects::fetch(s.root());
  const json d = objs.device_json(must_find(objs.device(path), "the new device"));
  if (inv.json) {
    out << d.dump(2) << '\n';
    return kExitOk;
  }
  out << "Registered " << cell(d, "name") << ": " << cell(d, "pci_address") << " (" << cell(d, "vendor_id") << ":"
      << cell(d, "device_id") << " " << describe(d) << "), driver " << cell(d, "driver") << ".\n";
  return kExitOk;
}

int cmd_devices(Session &s, const Invocation &inv, std::ostream &out) {
  const Objects objs = Objects::fetch(s.root());
  json arr = json::array();
  for (const auto &o : objs.devices)
    arr.push_back(objs.device_json(o));
  if (inv.json) {
    out << arr.dump(2) << '\n';
    return kExitOk;
  }
  if (arr.empty()) {
    out << "No registered devices; see 'hostdevctl available' and 'hostdevctl register NAME ADDRESS'.\n";
    return kExitOk;
  }
  Table t({"NAME", "ADDRESS", "ID", "DRIVER", "VFIO", "GROUP", "INSTANCE", "DESCRIPTION"});
  for (const auto &d : arr)
    t.add({cell(d, "name"), cell(d, "pci_address"), cell(d, "vendor_id") + ":" + cell(d, "device_id"),
           cell(d, "driver"), cell(d, "bound_to_vfio"), cell(d, "iommu_group"), cell(d, "attached_to_name"),
           describe(d)});
  t.print(out);
  return kExitOk;
}

json device_by_name(Session &s, const std::string &name) {
  const auto path = s.root().GetDevice(name);
  const Objects objs = Objects::fetch(s.root());
  return objs.device_json(must_find(objs.device(path), "device '" + name + "'"));
}

int cmd_device(Session &s, const Invocation &inv, std::ostream &out) {
  const json d = device_by_name(s, inv.args[0]);
  if (inv.json)
    out << d.dump(2) << '\n';
  else
    print_device(out, d);
  return kExitOk;
}

int cmd_device_action(Session &s, const Invocation &inv, std::ostream &out) {
  const auto path = s.root().GetDevice(inv.args[0]);
  {
    DeviceProxy dev(s.connection(), path);
    const auto opts = s.mutation_options();
    if (inv.command == "bind")
      dev.BindVfio(opts);
    else if (inv.command == "unbind")
      dev.UnbindVfio(opts);
    else
      dev.Restore(opts);
  }
  const Objects objs = Objects::fetch(s.root());
  const json d = objs.device_json(must_find(objs.device(path), "device '" + inv.args[0] + "'"));
  if (inv.json) {
    out << d.dump(2) << '\n';
    return kExitOk;
  }
  const std::string who = cell(d, "name") + " (" + cell(d, "pci_address") + ")";
  if (inv.command == "bind")
    out << who << " is bound to vfio-pci.\n";
  else if (inv.command == "unbind")
    out << who << " is back on its host driver: " << cell(d, "driver") << ".\n";
  else
    out << who << " is restored; driver: " << cell(d, "driver") << ".\n";
  return kExitOk;
}

int cmd_unregister(Session &s, const Invocation &inv, std::ostream &out) {
  s.root().Unregister(inv.args[0], s.mutation_options());
  if (inv.json)
    out << json{{"device", inv.args[0]}, {"unregistered", true}}.dump(2) << '\n';
  else
    out << "Unregistered " << inv.args[0] << ".\n";
  return kExitOk;
}

int cmd_profiles(Session &s, const Invocation &inv, std::ostream &out) {
  const json res = map_json(s.root().GetGpuResources());
  const auto profiles = res.value("profiles", json::array());
  if (inv.json) {
    out << profiles.dump(2) << '\n';
    return kExitOk;
  }
  if (profiles.empty()) {
    out << "No vGPU profiles (GPU mode " << cell(res, "mode") << "); 'hostdevctl status' says why.\n";
    return kExitOk;
  }
  print_profiles_table(out, profiles, "");
  return kExitOk;
}

int cmd_create(Session &s, const Invocation &inv, std::ostream &out) {
  VariantMap spec = s.mutation_options();
  if (!inv.devices.empty())
    spec["devices"] = sdbus::Variant(inv.devices);
  if (!inv.gpu_profile.empty())
    spec["gpu_profile"] = sdbus::Variant(inv.gpu_profile);
  if (!inv.image.empty())
    spec["image"] = sdbus::Variant(inv.image);
  if (inv.transient)
    spec["persistent"] = sdbus::Variant(false);
  const auto path = s.root().Create(inv.args[0], spec);
  const Objects objs = Objects::fetch(s.root());
  const json i = objs.instance_json(must_find(objs.instance(path), "the new instance"));
  if (inv.json) {
    out << i.dump(2) << '\n';
    return kExitOk;
  }
  out << "Created instance " << cell(i, "name") << ".\n\n";
  print_instance(out, i, objs);
  return kExitOk;
}

int cmd_instances(Session &s, const Invocation &inv, std::ostream &out) {
  const Objects objs = Objects::fetch(s.root());
  json arr = json::array();
  for (const auto &o : objs.instances)
    arr.push_back(objs.instance_json(o));
  if (inv.json) {
    out << arr.dump(2) << '\n';
    return kExitOk;
  }
  if (arr.empty()) {
    out << "No instances; create one with 'hostdevctl create NAME --device D' or '--gpu-profile P'.\n";
    return kExitOk;
  }
  Table t({"NAME", "STATE", "DEVICES", "GPU PROFILE", "MDEV", "OWNER", "CREATED"});
  for (const auto &i : arr) {
    std::vector<std::string> names;
    for (const auto &n : i["device_names"])
      names.push_back(n.get<std::string>());
    t.add({cell(i, "name"), cell(i, "state"), names.empty() ? "-" : join(names, ","), cell(i, "gpu_profile"),
           cell(i, "mdev_uuid"), owner_name(i.value("owner", json())), local_time(i.value("created_at", json()))});
  }
  t.print(out);
  return kExitOk;
}

int cmd_instance(Session &s, const Invocation &inv, std::ostream &out) {
  const auto path = s.root().GetInstance(inv.args[0]);
  const Objects objs = Objects::fetch(s.root());
  const json i = objs.instance_json(must_find(objs.instance(path), "instance '" + inv.args[0] + "'"));
  if (inv.json)
    out << i.dump(2) << '\n';
  else
    print_instance(out, i, objs);
  return kExitOk;
}

int cmd_delete(Session &s, const Invocation &inv, std::ostream &out) {
  s.root().Delete(inv.args[0], s.mutation_options());
  if (inv.json)
    out << json{{"instance", inv.args[0]}, {"deleted", true}}.dump(2) << '\n';
  else
    out << "Deleted instance " << inv.args[0] << ".\n";
  return kExitOk;
}

int cmd_reconcile(Session &s, const Invocation &inv, std::ostream &out) {
  const json st = map_json(s.root().Reconcile(s.mutation_options()));
  const auto errors = st.value("errors", json::array());
  if (inv.json) {
    out << st.dump(2) << '\n';
  } else {
    out << "Reconciled: " << cell(st, "destroyed") << " orphaned mdevs destroyed, " << cell(st, "skipped_not_ours")
        << " not ours and " << cell(st, "skipped_in_use") << " in use left alone, " << cell(st, "cleared_attachments")
        << " stale attachments cleared.\n";
    for (const auto &e : errors)
      out << "  error: " << e.get<std::string>() << '\n';
  }
  return errors.empty() ? kExitOk : kExitFailure;
}

int cmd_restore_instance(Session &s, const Invocation &inv, std::ostream &out) {
  const auto path = s.root().GetInstance(inv.args[0]);
  {
    InstanceProxy inst(s.connection(), path);
    inst.Restore(s.mutation_options());
  }
  const Objects objs = Objects::fetch(s.root());
  const json i = objs.instance_json(must_find(objs.instance(path), "instance '" + inv.args[0] + "'"));
  if (inv.json) {
    out << i.dump(2) << '\n';
    return kExitOk;
  }
  out << "Instance " << cell(i, "name") << " is " << cell(i, "state");
  if (i.value("state_reason", json()).is_string())
    out << ": " << i["state_reason"].get<std::string>();
  out << ".\n";
  return i.value("state", std::string()) == "active" ? kExitOk : kExitFailure;
}

// The child VMM of `run`: SIGINT and SIGTERM reach it, and hostdevctl stays to hold the lease.
volatile sig_atomic_t g_vmm_pid = 0;
extern "C" void forward_signal(int sig) {
  if (g_vmm_pid > 0)
    ::kill(g_vmm_pid, sig);
}

// In the forked child of `run`, before its exec.
[[noreturn]] void vmm_setup_failed(const char *what) {
  std::fprintf(stderr, "hostdevctl: %s to the VMM: %s\n", what, std::strerror(errno));
  ::_exit(127);
}

int cmd_run(Session &s, const Invocation &inv, std::ostream &out) {
  VariantMap spec = s.mutation_options();
  if (!inv.devices.empty())
    spec["devices"] = sdbus::Variant(inv.devices);
  if (!inv.gpu_profile.empty())
    spec["gpu_profile"] = sdbus::Variant(inv.gpu_profile);
  spec["lease"] = sdbus::Variant(true);
  const std::string name = inv.name.empty() ? "run-" + std::to_string(::getpid()) : inv.name;
  // The instance belongs to this connection: it ends when hostdevctl does, however that happens.
  const auto path = s.root().Create(name, spec);
  InstanceProxy inst(s.connection(), path);
  VariantMap vfio_options = s.mutation_options();
  const VariantMap memlock_options = vfio_options; // made now: pkttyagent must never inherit the fds below
  // Without a VMM to hand descriptors to, the access must be the uid's own: ACLs.
  const bool own_vmm = !inv.args.empty();
  if (!inv.vfio_mode.empty() || !own_vmm)
    vfio_options["mode"] = sdbus::Variant(own_vmm ? inv.vfio_mode : std::string("acl"));
  auto [fds, layout] = inst.OpenVfio(vfio_options);
  for (const auto &fd : fds) // sdbus-c++ copies received fds with a plain dup
    ::fcntl(fd.get(), F_SETFD, FD_CLOEXEC);
  const json lay = map_json(layout);
  const int fd_base = lay.value("fd_base", 3);
  std::vector<std::string> hostdev_args;
  for (const auto &a : lay.value("qemu_args", json::array()))
    hostdev_args.push_back(a.get<std::string>());
  std::vector<std::string> argv;
  bool placed = false;
  for (const auto &a : inv.args) {
    if (a == "{hostdev}") {
      argv.insert(argv.end(), hostdev_args.begin(), hostdev_args.end());
      placed = true;
    } else {
      argv.push_back(a);
    }
  }
  if (!placed && !argv.empty())
    argv.insert(argv.end(), hostdev_args.begin(), hostdev_args.end());
  if (inv.print_args || argv.empty()) {
    if (inv.json)
      out << json{{"instance", name},
                  {"mode", lay.value("mode", "")},
                  {"nodes", lay.value("nodes", json::array())},
                  {"fds_of", lay.value("fds_of", json::array())},
                  {"qemu_args", hostdev_args}}
                 .dump(2)
          << '\n';
    else
      out << join_args(json(hostdev_args)) << '\n';
    out.flush();
  }
  if (argv.empty()) {
    // Nothing to start: hold the lease until told to stop (a script starts its VMM meanwhile).
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, nullptr);
    int sig = 0;
    sigwait(&set, &sig);
    return kExitOk;
  }
  out.flush();
  // The child waits at a gate until its locked-memory limit is raised (--memory), then execs the VMM.
  int gate[2];
  if (::pipe2(gate, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string("cannot start the VMM: ") + std::strerror(errno));
  const pid_t child = ::fork();
  if (child < 0) {
    const int err = errno;
    ::close(gate[0]);
    ::close(gate[1]);
    throw std::runtime_error(std::string("cannot start the VMM: ") + std::strerror(err));
  }
  if (child == 0) {
    ::close(gate[1]);
    char go = 0;
    while (::read(gate[0], &go, 1) < 0 && errno == EINTR) {
    }
    if (go != 'g')
      ::_exit(127); // hostdevctl gave up (its error is on stderr)
    ::close(gate[0]);
    // cdev mode: fd i of the reply becomes fd_base + i, the numbers the arguments name, and is inherited.
    std::vector<int> moved;
    for (const auto &fd : fds) {
      moved.push_back(::fcntl(fd.get(), F_DUPFD_CLOEXEC, fd_base + static_cast<int>(fds.size())));
      if (moved.back() < 0)
        vmm_setup_failed("cannot pass the VFIO descriptors");
    }
    for (std::size_t i = 0; i < moved.size(); ++i)
      if (::dup2(moved[i], fd_base + static_cast<int>(i)) < 0)
        vmm_setup_failed("cannot pass the VFIO descriptors");
    for (const int fd : moved) // the received copies are close-on-exec (see above)
      ::close(fd);
    std::vector<char *> cargv;
    for (auto &a : argv)
      cargv.push_back(a.data());
    cargv.push_back(nullptr);
    ::execvp(cargv[0], cargv.data());
    std::fprintf(stderr, "hostdevctl: cannot run %s: %s\n", cargv[0], std::strerror(errno));
    ::_exit(127);
  }
  ::close(gate[0]);
  try {
    if (inv.memory != 0) {
      const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, child, 0));
      if (pidfd < 0)
        throw std::runtime_error(std::string("cannot open a pidfd of the VMM: ") + std::strerror(errno));
      inst.RaiseMemlock(sdbus::UnixFd(pidfd, sdbus::adopt_fd), inv.memory, memlock_options);
    }
    if (::write(gate[1], "g", 1) != 1)
      throw std::runtime_error(std::string("cannot start the VMM: ") + std::strerror(errno));
  } catch (...) {
    ::kill(child, SIGKILL);
    while (::waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
    }
    throw;
  }
  ::close(gate[1]);
  for (auto &fd : fds) // the VMM's are the only copies: they close when it ends
    fd.reset();
  g_vmm_pid = child;
  struct sigaction sa {};
  sa.sa_handler = forward_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  g_vmm_pid = 0;
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : kExitFailure;
}

int cmd_sriov(Session &s, const Invocation &inv, std::ostream &out) {
  unsigned long count = 0;
  std::size_t used = 0;
  try {
    count = std::stoul(inv.args[1], &used);
  } catch (const std::exception &) {
    used = 0;
  }
  if (used == 0 || used != inv.args[1].size() || count > 65535 || inv.args[1][0] == '-')
    throw sdbus::Error(std::string(names::kErrorPrefix) + "InvalidArgument",
                       "the VF count must be a number from 0 to 65535, not '" + inv.args[1] + "'");
  const json r =
      map_json(s.root().ConfigureSriov(inv.args[0], static_cast<std::uint32_t>(count), s.mutation_options()));
  if (inv.json) {
    out << r.dump(2) << '\n';
    return kExitOk;
  }
  out << cell(r, "pf") << " has " << cell(r, "num_vfs") << " VFs now";
  if (!r.value("drivers_autoprobe", true))
    out << " (sriov_drivers_autoprobe is 0: they have no driver until one is bound)";
  out << ".\n";
  for (const auto &vf : r.value("vfs", json::array()))
    out << "  " << vf.get<std::string>() << '\n';
  return kExitOk;
}

int cmd_report_init(Session &s, const Invocation &inv, std::ostream &out) {
  const auto &verdict = inv.args[1];
  if (verdict != "ok" && verdict != "failed")
    throw sdbus::Error(std::string(names::kErrorPrefix) + "InvalidArgument",
                       "the guest's verdict is 'ok' or 'failed', not '" + verdict + "'");
  const bool quarantined = s.root().ReportGuestInit(inv.args[0], verdict == "ok", s.mutation_options());
  if (inv.json)
    out << json{{"instance", inv.args[0]}, {"ok", verdict == "ok"}, {"vf_quarantined", quarantined}}.dump(2) << '\n';
  else
    out << "Reported " << verdict << " for instance " << inv.args[0] << "."
        << (quarantined ? " Its VF is quarantined: placement skips it until 'hostdevctl unquarantine VF'." : "")
        << '\n';
  return kExitOk;
}

int cmd_unquarantine(Session &s, const Invocation &inv, std::ostream &out) {
  s.root().Unquarantine(inv.args[0], s.mutation_options());
  if (inv.json)
    out << json{{"vf", inv.args[0]}, {"quarantined", false}}.dump(2) << '\n';
  else
    out << "Lifted the quarantine of " << inv.args[0] << ".\n";
  return kExitOk;
}

std::string context_of(const Invocation &inv) {
  std::string c = inv.command;
  for (const auto &a : inv.args)
    c += " " + a;
  return c;
}

} // namespace

int run_bus_command(const Invocation &inv, std::ostream &out, std::ostream &err) {
  static const std::map<std::string, std::function<int(Session &, const Invocation &, std::ostream &)>> commands{
      {"status", cmd_status},
      {"available", cmd_available},
      {"register", cmd_register},
      {"devices", cmd_devices},
      {"device", cmd_device},
      {"bind", cmd_device_action},
      {"unbind", cmd_device_action},
      {"restore", cmd_device_action},
      {"unregister", cmd_unregister},
      {"profiles", cmd_profiles},
      {"create", cmd_create},
      {"instances", cmd_instances},
      {"instance", cmd_instance},
      {"delete", cmd_delete},
      {"reconcile", cmd_reconcile},
      {"sriov", cmd_sriov},
      {"run", cmd_run},
      {"restore-instance", cmd_restore_instance},
      {"report-init", cmd_report_init},
      {"unquarantine", cmd_unquarantine},
  };
  const auto it = commands.find(inv.command);
  if (it == commands.end())
    return report_error(err, "", "", "unknown command '" + inv.command + "'"), kExitUsage;
  std::unique_ptr<Session> session;
  try {
    session = std::make_unique<Session>(inv);
  } catch (const sdbus::Error &e) {
    err << "hostdevctl: cannot connect to the " << inv.bus << " bus: " << e.getMessage()
        << "; hint: is dbus running? (--bus ADDRESS for another bus)\n";
    return kExitNoDaemon;
  }
  try {
    return it->second(*session, inv, out);
  } catch (const sdbus::Error &e) {
    return report_error(err, context_of(inv), e.getName(), e.getMessage());
  } catch (const std::exception &e) {
    return report_error(err, context_of(inv), "", e.what());
  }
}

} // namespace hostdev::cli
