// `hostdevctl inspect`: the host report and candidate devices straight from sysfs, read-only, no daemon.
#pragma once

#include <ostream>
#include <string>

namespace hostdev::cli {

struct InspectOptions {
  std::string sysfs_root = "/";
  bool json = false;
  bool all = false;
};

// Returns the process exit code.
int run_inspect(const InspectOptions &options, std::ostream &out, std::ostream &err);

} // namespace hostdev::cli
