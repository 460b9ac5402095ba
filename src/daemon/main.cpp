// hostdevd: parse the command line, run the service (everything else is in hostdevd-lib).
#include "daemon/daemon.hpp"

int main(int argc, char **argv) {
  hostdev::daemon::DaemonOptions options;
  if (int rc = hostdev::daemon::parse_command_line(argc, argv, options); rc >= 0)
    return rc;
  return hostdev::daemon::run_daemon(options);
}
