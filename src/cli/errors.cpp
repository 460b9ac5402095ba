#include "cli/errors.hpp"

#include "names.hpp"

#include <array>
#include <string_view>

namespace hostdev::cli {
namespace {

struct Row {
  std::string_view name; // suffix after org.hostdev.Passthrough1.Error. or a full foreign name
  int exit_code;
  std::string_view hint;
};

// The one place where error names become exit codes. Keep man/hostdevctl.1 (EXIT STATUS) in step.
constexpr std::array kHostdevErrors{
    Row{"NotFound", kExitNotFound, "see 'hostdevctl devices' and 'hostdevctl instances' for the names"},
    Row{"DeviceNotFound", kExitNotFound, "see 'hostdevctl available --all' for the PCI addresses of this host"},
    Row{"NameExists", kExitBusy, "choose another name ('hostdevctl devices', 'hostdevctl instances')"},
    Row{"AlreadyExists", kExitBusy, "it is registered already: see 'hostdevctl devices'"},
    Row{"InvalidName", kExitUsage,
        "a name starts with a letter or digit and has only letters, digits, '_', '.' and '-' (2 characters or more)"},
    Row{"InvalidPciAddress", kExitUsage, "give an address like 0000:01:00.0 (see 'hostdevctl available')"},
    Row{"InvalidArgument", kExitUsage, "see 'hostdevctl --help'"},
    Row{"InUse", kExitBusy, "delete the instance that uses it first ('hostdevctl instances')"},
    Row{"NotBound", kExitBusy, "the device is not on vfio-pci ('hostdevctl device NAME')"},
    Row{"AlreadyBound", kExitBusy, "the device is on vfio-pci already ('hostdevctl device NAME')"},
    Row{"IommuGroupConflict", kExitBusy,
        "another function of the IOMMU group has a host driver: 'hostdevctl inspect --all' shows the group"},
    Row{"VfioUnavailable", kExitUnavailable, "load the modules: modprobe vfio-pci vfio_iommu_type1"},
    Row{"IommuUnavailable", kExitUnavailable,
        "enable VT-d / AMD-Vi in the firmware and boot with intel_iommu=on (or amd_iommu=on) iommu=pt"},
    Row{"ProfileUnavailable", kExitUnavailable, "see 'hostdevctl profiles' for the profiles of this host"},
    Row{"NoCapacity", kExitUnavailable,
        "no free slot: delete an instance or choose another profile ('hostdevctl profiles')"},
    Row{"Timeout", kExitKernel,
        "a process still holds the device (the message names it); stop it, then run 'hostdevctl restore NAME'"},
    Row{"NotAuthorized", kExitNotAuthorized, "run as root or join group hostdev (see README)"},
    Row{"KernelError", kExitKernel, "see 'journalctl -u hostdevd' and 'dmesg'"},
};

constexpr std::string_view kNoDaemonHint =
    "is hostdevd installed and the bus running? ('systemctl status hostdevd'; --bus ADDRESS for another bus)";

constexpr std::array kBusErrors{
    Row{"org.freedesktop.DBus.Error.ServiceUnknown", kExitNoDaemon, kNoDaemonHint},
    Row{"org.freedesktop.DBus.Error.NameHasNoOwner", kExitNoDaemon, kNoDaemonHint},
    Row{"org.freedesktop.DBus.Error.Disconnected", kExitNoDaemon, kNoDaemonHint},
    Row{"org.freedesktop.DBus.Error.NoServer", kExitNoDaemon, kNoDaemonHint},
    Row{"org.freedesktop.DBus.Error.FileNotFound", kExitNoDaemon, kNoDaemonHint},
    Row{"System.Error.ENOENT", kExitNoDaemon, kNoDaemonHint},
    Row{"System.Error.ECONNREFUSED", kExitNoDaemon, kNoDaemonHint},
    Row{"System.Error.ECONNRESET", kExitNoDaemon, kNoDaemonHint},
    Row{"System.Error.ENOTCONN", kExitNoDaemon, kNoDaemonHint},
    Row{"org.freedesktop.DBus.Error.NoReply", kExitKernel, "hostdevd did not answer in time: 'journalctl -u hostdevd'"},
    Row{"org.freedesktop.DBus.Error.Timeout", kExitKernel, "hostdevd did not answer in time: 'journalctl -u hostdevd'"},
    Row{"System.Error.ETIMEDOUT", kExitKernel, "hostdevd did not answer in time: 'journalctl -u hostdevd'"},
    Row{"org.freedesktop.DBus.Error.AccessDenied", kExitNotAuthorized,
        "the bus policy refused the call; is org.hostdev.Passthrough1.conf installed in /usr/share/dbus-1/system.d?"},
    Row{"org.freedesktop.DBus.Error.InteractiveAuthorizationRequired", kExitNotAuthorized,
        "run as root or join group hostdev (see README)"},
    Row{"org.freedesktop.DBus.Error.UnknownObject", kExitNotFound, "it was removed meanwhile; list again"},
    Row{"org.freedesktop.DBus.Error.UnknownMethod", kExitFailure, "hostdevctl and hostdevd are different versions"},
    Row{"org.freedesktop.DBus.Error.UnknownInterface", kExitFailure, "hostdevctl and hostdevd are different versions"},
    Row{"org.freedesktop.DBus.Error.UnknownProperty", kExitFailure, "hostdevctl and hostdevd are different versions"},
};

} // namespace

ErrorClass classify_error(const std::string &name) {
  const std::string_view prefix = names::kErrorPrefix;
  if (name.rfind(prefix, 0) == 0) {
    const std::string_view suffix = std::string_view(name).substr(prefix.size());
    for (const auto &row : kHostdevErrors)
      if (row.name == suffix)
        return {row.exit_code, std::string(suffix), std::string(row.hint)};
    return {kExitFailure, std::string(suffix), ""};
  }
  for (const auto &row : kBusErrors)
    if (row.name == name)
      return {row.exit_code, name, std::string(row.hint)};
  if (name.rfind("org.freedesktop.DBus.Error.Spawn.", 0) == 0)
    return {kExitNoDaemon, name, "hostdevd failed to start: 'journalctl -u hostdevd'"};
  return {kExitFailure, name, ""};
}

int report_error(std::ostream &err, const std::string &context, const std::string &name, const std::string &message) {
  const auto cls = classify_error(name);
  std::string msg = message;
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == '.'))
    msg.pop_back();
  err << "hostdevctl: " << (context.empty() ? "" : context + ": ") << (msg.empty() ? "failed" : msg);
  if (!cls.short_name.empty())
    err << " [" << cls.short_name << "]";
  if (!cls.hint.empty())
    err << "; hint: " << cls.hint;
  err << '\n';
  return cls.exit_code;
}

} // namespace hostdev::cli
