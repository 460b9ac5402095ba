// hostdevd's command line: the options of the service and their parsing.
#pragma once

#include "core/sysfs.hpp"

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace hostdev::daemon {

struct DaemonOptions {
  std::string sysfs_root = "/";
  std::string state_dir;             // default names::kDefaultStateDir
  std::string bus = "system";        // "system", "session" or a D-Bus address ("unix:path=...")
  std::chrono::seconds idle_exit{0}; // 0 = stay
  std::chrono::milliseconds write_timeout = core::Sysfs::kDefaultDeadline; // per kernel write (--write-timeout)
  std::chrono::milliseconds restore_wait{10000};                           // --restore-wait
  std::uint64_t memlock_max = 0; // --memlock-max, bytes; 0 = half of the host's RAM
  // Over a fixture tree (tests only, no command-line option): where uevents are taken from in place of the
  // kernel's (UeventMonitor's AF_UNIX socket). "": none, changes made outside hostdev are not seen.
  std::string uevent_socket;
};

// Parses argv into `options`. Returns -1 to go on, else the exit status (0 after --help/--version, 2 on a usage
// error, with the message written). `extra_usage` is appended to --help (the fake daemon's own options).
int parse_command_line(int argc, char **argv, DaemonOptions &options, std::vector<std::string> *unparsed = nullptr,
                       const std::string &extra_usage = "");

// "10", "0.25": a duration as hostdevd writes it, in seconds.
std::string seconds_text(std::chrono::milliseconds ms);

} // namespace hostdev::daemon
