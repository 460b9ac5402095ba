// hostdevctl's commands that talk to hostdevd over D-Bus.
#pragma once

#include <ostream>
#include <cstdint>
#include <string>
#include <vector>

namespace hostdev::cli {

struct Invocation {
  std::string command;
  std::vector<std::string> args; // positional arguments after the command
  std::string bus = "system";    // system | session | a D-Bus address
  bool json = false;
  bool no_ask_password = false;
  bool all = false;                 // available --all
  std::vector<std::string> devices; // create --device (repeatable, or comma separated)
  std::string gpu_profile;          // create --gpu-profile
  std::string image;                // create --image
  bool transient = false;           // create --transient: not restored after a reboot
  std::string name;                 // run --name
  bool print_args = false;          // run --print-args
  std::string vfio_mode;            // run --vfio-mode auto|cdev|acl (OpenVfio's mode option)
  std::uint64_t memory = 0;         // run --memory, in bytes (0: not asked)
};

// Runs one bus command; returns the exit code (see cli/errors.hpp).
int run_bus_command(const Invocation &inv, std::ostream &out, std::ostream &err);

// `monitor`: prints the daemon's signals, one line each, until SIGINT or SIGTERM.
int run_monitor(const Invocation &inv, std::ostream &out, std::ostream &err);

} // namespace hostdev::cli
