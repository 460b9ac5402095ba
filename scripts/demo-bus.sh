#!/bin/bash
# Runs a command next to the REAL hostdevd on a private system bus, against this machine's real /sys:
#   scripts/demo-bus.sh HOSTDEVD CMD ARGS...        (as root)
# Inside `unshare --mount --pid --fork --mount-proc --propagation private`: a dbus-daemon of type system on a
# socket in a temp dir, the real polkitd (bus-activated) seeing only this repository's polkit policy and example
# group rule (bind mounts that vanish with the namespace), and hostdevd bus-activated on first call with its store
# in the temp dir. The machine's own bus, polkit and /var/lib/hostdev are never touched, and every process dies
# with the namespace. hostdevd itself can change sysfs like on a real host: what CMD asks for is what happens.
# CMD runs with DBUS_SYSTEM_BUS_ADDRESS set and HOSTDEV_DEMO_DIR = the temp dir (hostdevd.log, state/).
# (tests/bus/harness.sh is the test version of this, with test users and the fake kernel; both use the bus of
# scripts/private-bus.sh.)
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 HOSTDEVD CMD [ARGS...]" >&2
  exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "demo-bus: needs root (mount and PID namespaces, bind mounts over polkit's directories)" >&2
  exit 1
fi
if [ -z "${HOSTDEV_DEMO_IN_NAMESPACE:-}" ]; then
  export HOSTDEV_DEMO_IN_NAMESPACE=1
  exec unshare --mount --pid --fork --mount-proc --propagation private "$0" "$@"
fi

hostdevd=$(readlink -f "$1"); shift
src=$(dirname "$(dirname "$(readlink -f "$0")")")
# shellcheck source=scripts/private-bus.sh
. "$src/scripts/private-bus.sh"

private_bus_dirs "${TMPDIR:-/tmp}/hostdev-demo-bus.XXXXXX"
export HOSTDEV_DEMO_DIR=$T
trap 'rm -rf "$T"' EXIT

# shellcheck disable=SC2119 # no extra users here
private_bus_users
private_bus_polkit "$src"
private_bus_config "$src"
# hostdevd as installed, but with its store in the temp dir; its log goes to a file.
private_bus_script "$GEN/hostdevd.sh" <<EOT
exec "$hostdevd" --state-dir "$STATE" --bus system >>"$T/hostdevd.log" 2>&1
EOT
private_bus_service org.hostdev.Passthrough1 "$GEN/hostdevd.sh"
private_bus_start demo-bus

"$@"
