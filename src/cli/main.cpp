// hostdevctl — the command line of hostdev.
#include "cli/bus.hpp"
#include "cli/commands.hpp"
#include "cli/errors.hpp"
#include "cli/inspect.hpp"
#include "core/validate.hpp"

#include "config.h"

#include <cstring>
#include <iostream>
#include <string>
#include <vector>

namespace {

using hostdev::cli::Invocation;
using hostdev::cli::kExitUsage;

void usage(std::ostream &out) {
  out << "Usage: hostdevctl [OPTIONS] COMMAND [ARGUMENTS]\n"
         "\n"
         "Commands (ask hostdevd over D-Bus):\n"
         "  status                    host report (IOMMU, vfio, hugepages, problems) and GPU resources\n"
         "  available [--all]         passthrough candidates (GPUs; --all: every PCI function)\n"
         "  register [NAME|-] ADDRESS register a PCI function; without NAME (or \"-\") it is named pci-DDDD-BB-DD-F\n"
         "  devices                   registered devices\n"
         "  device NAME               one device\n"
         "  bind NAME                 bind a device to vfio-pci\n"
         "  unbind NAME               give a device back to its host driver\n"
         "  restore NAME              recovery: unbind, clear the override, re-probe (also clears a busy mark)\n"
         "  unregister NAME           forget a device (refused while an instance uses it)\n"
         "  profiles                  vGPU profiles with their free slots\n"
         "  create NAME [--device D]... [--gpu-profile P] [--image I] [--transient]\n"
         "                            create an instance with devices and/or a vGPU (--transient: dropped,\n"
         "                            not restored, at the next boot)\n"
         "  restore-instance NAME     restore what a degraded instance is missing (after a reboot)\n"
         "  run [--device D]... [--gpu-profile P] [--name N] [--print-args] [--vfio-mode auto|cdev|acl]\n"
         "      [--memory SIZE] -- VMM ARGS...\n"
         "                            an instance leased to this command, its VFIO devices handed to the VMM\n"
         "                            (iommufd and cdev descriptors, or ACLs on the group nodes), VMM started\n"
         "                            with {hostdev} in ARGS (or the end) replaced by its arguments, its\n"
         "                            locked-memory limit raised to SIZE (MiB, or K/M/G/T) for guest RAM;\n"
         "                            when the VMM exits (or this command dies) the instance goes\n"
         "  instances                 instances\n"
         "  instance NAME             one instance: device paths, QEMU and Cloud Hypervisor arguments\n"
         "  delete NAME               delete an instance (unbinds its devices, destroys its vGPU)\n"
         "  reconcile                 destroy orphaned mdevs and vGPUs, clear stale attachments\n"
         "  sriov PF COUNT            set the number of SR-IOV VFs of a physical function\n"
         "  report-init INSTANCE ok|failed\n"
         "                            whether the guest driver came up on the instance's vGPU (VF health)\n"
         "  unquarantine VF           lift the quarantine of a VF\n"
         "  monitor                   print the daemon's signals live, one line each, until Ctrl-C\n"
         "\n"
         "Command without the daemon:\n"
         "  inspect [--sysfs-root DIR] [--json] [--all]\n"
         "      The host report (IOMMU, vfio, hugepages, GPU mode, problems) and the passthrough candidates,\n"
         "      read straight from sysfs without the daemon. --all lists every PCI function, --sysfs-root reads a\n"
         "      captured tree (DIR/sys/...) instead of this machine's.\n"
         "\n"
         "Options:\n"
         "  --json                    machine-readable output (see hostdevctl(1) for the keys)\n"
         "  --bus system|session|ADDRESS\n"
         "                            the bus to use (default: system; DBUS_SYSTEM_BUS_ADDRESS is honoured)\n"
         "  --no-ask-password         never ask for a password (on a terminal polkit may ask by default)\n"
         "  -h, --help                this text\n"
         "  --version                 the version\n"
         "\n"
         "Exit status: 0 success, 1 failure, 2 usage error or invalid argument, 3 not found, 4 not authorized,\n"
         "5 busy or in use (or exists already), 6 kernel error or timeout, 7 unavailable on this host (IOMMU, vfio,\n"
         "profile, capacity), 8 daemon or bus not reachable.\n";
}

int bad_usage(const std::string &message) {
  std::cerr << "hostdevctl: " << message << "\nTry 'hostdevctl --help'.\n";
  return kExitUsage;
}

int cmd_inspect(const std::vector<std::string> &args, bool json) {
  hostdev::cli::InspectOptions options;
  options.json = json;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto &a = args[i];
    if (a == "--json") {
      options.json = true;
    } else if (a == "--all") {
      options.all = true;
    } else if (a == "--sysfs-root") {
      if (i + 1 >= args.size())
        return bad_usage("--sysfs-root needs a directory");
      options.sysfs_root = args[++i];
    } else if (a.rfind("--sysfs-root=", 0) == 0) {
      options.sysfs_root = a.substr(std::strlen("--sysfs-root="));
    } else {
      return bad_usage("inspect: unknown argument '" + a + "'");
    }
  }
  if (options.sysfs_root.empty())
    return bad_usage("--sysfs-root needs a directory");
  return hostdev::cli::run_inspect(options, std::cout, std::cerr);
}

struct CommandSpec {
  const char *name;
  std::size_t min_args, max_args;
  bool all_option;    // --all
  bool create_option; // --device, --gpu-profile, --image
  const char *synopsis;
};

constexpr CommandSpec kCommands[] = {
    {"status", 0, 0, false, false, "status"},
    {"available", 0, 0, true, false, "available [--all]"},
    {"register", 1, 2, false, false, "register [NAME|-] ADDRESS"},
    {"devices", 0, 0, false, false, "devices"},
    {"device", 1, 1, false, false, "device NAME"},
    {"bind", 1, 1, false, false, "bind NAME"},
    {"unbind", 1, 1, false, false, "unbind NAME"},
    {"restore", 1, 1, false, false, "restore NAME"},
    {"unregister", 1, 1, false, false, "unregister NAME"},
    {"profiles", 0, 0, false, false, "profiles"},
    {"create", 1, 1, false, true, "create NAME [--device D]... [--gpu-profile P] [--image I] [--transient]"},
    {"restore-instance", 1, 1, false, false, "restore-instance NAME"},
    {"run", 0, 4096, false, true,
     "run [--device D]... [--gpu-profile P] [--name N] [--print-args] [--vfio-mode M] [--memory SIZE] "
     "[-- VMM ARGS...]"},
    {"instances", 0, 0, false, false, "instances"},
    {"instance", 1, 1, false, false, "instance NAME"},
    {"delete", 1, 1, false, false, "delete NAME"},
    {"reconcile", 0, 0, false, false, "reconcile"},
    {"sriov", 2, 2, false, false, "sriov PF COUNT"},
    {"report-init", 2, 2, false, false, "report-init INSTANCE ok|failed"},
    {"unquarantine", 1, 1, false, false, "unquarantine VF"},
    {"monitor", 0, 0, false, false, "monitor"},
};

// "--opt VALUE" or "--opt=VALUE"; returns false when `a` is not this option.
bool take_value(const std::vector<std::string> &args, std::size_t &i, const std::string &opt, std::string &value,
                std::string &error) {
  const auto &a = args[i];
  if (a == opt) {
    if (i + 1 >= args.size() || args[i + 1].empty()) {
      error = opt + " needs a value";
      return true;
    }
    value = args[++i];
    return true;
  }
  if (a.rfind(opt + "=", 0) == 0) {
    value = a.substr(opt.size() + 1);
    if (value.empty())
      error = opt + " needs a value";
    return true;
  }
  return false;
}

} // namespace

int main(int argc, char **argv) {
  const std::vector<std::string> raw(argv + 1, argv + argc);
  Invocation inv;
  std::vector<std::string> rest; // the command's own arguments, in order (for inspect)
  bool help = false, version = false, options_end = false;
  bool saw_all = false, saw_create = false, saw_bus = false, saw_ask = false, saw_run = false;
  std::string error;
  for (std::size_t i = 0; i < raw.size() && error.empty(); ++i) {
    const auto &a = raw[i];
    std::string value;
    if (options_end || a == "-" || a.empty() || a[0] != '-') {
      if (inv.command.empty())
        inv.command = a;
      else
        rest.push_back(a);
      continue;
    }
    if (inv.command == "inspect") { // inspect keeps its own parser; the global options it shares are --json, --help
      if (a == "-h" || a == "--help")
        help = true;
      else
        rest.push_back(a);
      continue;
    }
    if (a == "--") {
      options_end = true;
    } else if (a == "-h" || a == "--help") {
      help = true;
    } else if (a == "--version") {
      version = true;
    } else if (a == "--json") {
      inv.json = true;
    } else if (a == "--no-ask-password") {
      inv.no_ask_password = saw_ask = true;
    } else if (take_value(raw, i, "--bus", value, error)) {
      if (error.empty() && !hostdev::cli::valid_bus_option(value))
        error = "--bus wants system, session or a D-Bus address such as unix:path=/run/dbus/system_bus_socket";
      inv.bus = value;
      saw_bus = true;
    } else if (a == "--all") {
      inv.all = saw_all = true;
    } else if (take_value(raw, i, "--device", value, error)) {
      saw_create = true;
      std::size_t start = 0;
      while (error.empty() && start <= value.size()) { // "a,b" is two devices
        const auto comma = value.find(',', start);
        const auto part = value.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        if (part.empty())
          error = "--device wants device names separated by commas";
        else
          inv.devices.push_back(part);
        if (comma == std::string::npos)
          break;
        start = comma + 1;
      }
    } else if (take_value(raw, i, "--gpu-profile", value, error)) {
      inv.gpu_profile = value;
      saw_create = true;
    } else if (take_value(raw, i, "--image", value, error)) {
      inv.image = value;
      saw_create = true;
    } else if (a == "--transient") {
      inv.transient = true;
      saw_create = true;
    } else if (take_value(raw, i, "--name", value, error)) {
      inv.name = value;
      saw_run = true;
    } else if (a == "--print-args") {
      inv.print_args = saw_run = true;
    } else if (take_value(raw, i, "--vfio-mode", value, error)) {
      if (error.empty() && value != "auto" && value != "cdev" && value != "acl")
        error = "--vfio-mode wants auto, cdev or acl";
      inv.vfio_mode = value;
      saw_run = true;
    } else if (take_value(raw, i, "--memory", value, error)) {
      if (const auto bytes = hostdev::core::parse_memory_size(value); bytes)
        inv.memory = *bytes;
      else if (error.empty())
        error = "--memory wants a size such as 2048 (MiB), 512M or 8G";
      saw_run = true;
    } else {
      error = "unknown option '" + a + "'";
    }
  }
  if (!error.empty())
    return bad_usage(error);
  if (help || inv.command == "help") {
    usage(std::cout);
    return 0;
  }
  if (version) {
    std::cout << "hostdevctl " << HOSTDEV_VERSION << '\n';
    return 0;
  }
  if (inv.command.empty())
    return usage(std::cerr), kExitUsage;
  if (inv.command == "inspect") {
    if (saw_bus || saw_ask)
      return bad_usage("inspect reads sysfs directly: --bus and --no-ask-password do not apply");
    return cmd_inspect(rest, inv.json);
  }
  const CommandSpec *spec = nullptr;
  for (const auto &c : kCommands)
    if (inv.command == c.name)
      spec = &c;
  if (spec == nullptr)
    return bad_usage("unknown command '" + inv.command + "'");
  const std::string synopsis = std::string("usage: hostdevctl ") + spec->synopsis;
  if (saw_all && !spec->all_option)
    return bad_usage(inv.command + ": --all does not apply; " + synopsis);
  if (saw_create && !spec->create_option)
    return bad_usage(inv.command + ": --device, --gpu-profile, --image and --transient belong to create; " + synopsis);
  if (saw_run && inv.command != "run")
    return bad_usage(inv.command + ": --name, --print-args, --vfio-mode and --memory belong to run; " + synopsis);
  if (inv.command == "run" && rest.empty() && (inv.memory != 0 || inv.vfio_mode == "cdev"))
    return bad_usage("run: --memory and --vfio-mode cdev are for the VMM that run starts: give one after --; " +
                     synopsis);
  if (inv.command == "run" && (inv.transient || !inv.image.empty()))
    return bad_usage("run: its instance is leased (it ends with hostdevctl): --transient and --image do not apply; " +
                     synopsis);
  if (rest.size() < spec->min_args)
    return bad_usage(inv.command + ": missing argument; " + synopsis);
  if (rest.size() > spec->max_args)
    return bad_usage(inv.command + ": too many arguments; " + synopsis);
  for (const auto &a : rest)
    if (inv.command != "run" && // a VMM's arguments are its own business
        (a.empty() || (a == "-" && !(inv.command == "register" && &a == &rest.front() && rest.size() == 2))))
      return bad_usage(inv.command + ": empty or '-' argument; " + synopsis);
  inv.args = rest;
  if (inv.command == "monitor")
    return hostdev::cli::run_monitor(inv, std::cout, std::cerr);
  return hostdev::cli::run_bus_command(inv, std::cout, std::cerr);
}
