// hostdevctl's exit codes and the one table that maps D-Bus error names to them, with a hint for each.
#pragma once

#include <ostream>
#include <string>

namespace hostdev::cli {

enum Exit : int {
  kExitOk = 0,
  kExitFailure = 1,  // anything not listed below
  kExitUsage = 2,    // bad command line, or an invalid name, address or argument
  kExitNotFound = 3, // no such device, instance or PCI address
  kExitNotAuthorized = 4,
  kExitBusy = 5,        // in use, already exists, wrong state, IOMMU group conflict
  kExitKernel = 6,      // the kernel failed or did not answer in time
  kExitUnavailable = 7, // IOMMU, vfio, profile or capacity not available on this host
  kExitNoDaemon = 8,    // the bus or hostdevd cannot be reached
};

struct ErrorClass {
  int exit_code = kExitFailure;
  std::string short_name; // "NotFound" for org.hostdev.Passthrough1.Error.NotFound, else the full name
  std::string hint;       // may be empty
};

// The single mapping from a D-Bus error name to an exit code and hint.
ErrorClass classify_error(const std::string &dbus_error_name);

// Prints "hostdevctl: CONTEXT: MESSAGE [ShortName]; hint: HINT" (one line) and returns the exit code.
int report_error(std::ostream &err, const std::string &context, const std::string &dbus_error_name,
                 const std::string &message);

} // namespace hostdev::cli
