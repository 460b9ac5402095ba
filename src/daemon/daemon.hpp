// hostdevd: the D-Bus system service org.hostdev.Passthrough1. main() parses the command line (cmdline.hpp) and
// calls run_daemon(); tests/bus builds a fake-kernel daemon around the same function.
#pragma once

#include "core/sysfs.hpp"
#include "daemon/cmdline.hpp"

namespace hostdev::daemon {

// Load the store (warnings logged), discover, reconcile (MdevsReconciled), export the objects, then request the
// name; serve until SIGTERM/SIGINT or idle. `hook` is for the fake kernel of tests only. Returns the exit status.
int run_daemon(const DaemonOptions &options, core::Sysfs::WriteHook hook = {});

} // namespace hostdev::daemon
