// `hostdevctl inspect`: the host report and candidate devices straight from sysfs, read-only, no daemon.
#pragma once

#include "core/mdev.hpp"
#include "core/pci.hpp"

#include <nlohmann/json.hpp>

#include <ostream>
#include <string>

namespace hostdev::cli {

struct InspectOptions {
  std::string sysfs_root = "/";
  bool json = false;
  bool all = false;
};

// The JSON document of `inspect --json` (also the schema of the daemon's ListAvailable entries).
nlohmann::json device_json(const core::PciFunction &fn);
nlohmann::json inspect_json(const core::HostReport &report, const std::vector<core::PciFunction> &devices,
                            const std::vector<core::MdevParent> &parents);

// Returns the process exit code.
int run_inspect(const InspectOptions &options, std::ostream &out, std::ostream &err);

} // namespace hostdev::cli
