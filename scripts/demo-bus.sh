#!/bin/bash
# The daemon part of ./demo.sh: the REAL hostdevd on a private system bus, against this machine's real /sys.
#   scripts/demo-bus.sh BUILD_DIR       (as root; TOUR_DEVICE and TOUR_PROFILE as in scripts/tour.sh)
# Inside `unshare --mount --pid --fork --mount-proc --propagation private`: a dbus-daemon of type system on a
# socket in a temp dir, the real polkitd (bus-activated) seeing only this repository's polkit policy and example
# group rule (bind mounts that vanish with the namespace), and hostdevd bus-activated on first call with its store
# in the temp dir. The machine's own bus, polkit and /var/lib/hostdev are never touched, and every process dies
# with the namespace. hostdevd itself can change sysfs like on a real host: what the tour asks for is what happens.
# There it runs the tour (scripts/tour.sh), shows polkit refusing user nobody, reads the service with busctl, and
# prints the namespace's processes and hostdevd's log.
# (tests/bus/harness.sh is the test version of this bus, with test users and the fake kernel; both use
# scripts/private-bus.sh.)
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 BUILD_DIR" >&2
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

ctl=$1/src/cli/hostdevctl # as given: the tour prints the commands it runs
ctl_abs=$(readlink -f "$ctl")
hostdevd=$(readlink -f "$1/src/daemon/hostdevd")
src=$(dirname "$(dirname "$(readlink -f "$0")")")
# shellcheck source=scripts/private-bus.sh
. "$src/scripts/private-bus.sh"

private_bus_dirs "${TMPDIR:-/tmp}/hostdev-demo-bus.XXXXXX"
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

# DBUS_SYSTEM_BUS_ADDRESS names the private bus now; hostdevd is activated by the first call.
B=$'\033[1m' N=$'\033[0m'
[ -t 1 ] || B='' N=''
step() { printf '\n%s== %s%s\n$ %s\n' "$B" "$1" "$N" "${*:2}"; "${@:2}"; }

rc=0
HOSTDEVCTL=$ctl "$src/scripts/tour.sh" || rc=$?
if getent passwd nobody >/dev/null; then
  as_nobody=(setpriv --reuid=nobody --regid="$(id -gn nobody)" --clear-groups)
  step "polkit at work: user nobody (not root, not in group hostdev) may look..." \
    "${as_nobody[@]}" "$ctl_abs" devices || rc=1
  nobody_rc=0
  step "...but not change anything: hostdevd asks polkitd, which says no (exit 4)" \
    "${as_nobody[@]}" "$ctl_abs" --no-ask-password register - "${TOUR_DEVICE:-0000:00:00.0}" ||
    nobody_rc=$?
  [ $nobody_rc -eq 4 ] || { printf '%s%s%s\n' "$B" "!! expected NotAuthorized (exit 4), got exit $nobody_rc" "$N"; rc=1; }
fi
step "The same service over plain D-Bus, without hostdevctl" \
  busctl --system get-property org.hostdev.Passthrough1 /org/hostdev/Passthrough1 \
  org.hostdev.Passthrough1.Devices Version GpuMode IommuEnabled VfioAvailable || rc=1
step "What runs in the namespace: the private bus, the real hostdevd (bus-activated, its store in a temp dir), polkitd" \
  ps -o pid,user,args -C dbus-daemon,hostdevd,polkitd || true
printf '\n%s== hostdevd'\''s log%s (on an installed host: journalctl -u hostdevd)\n' "$B" "$N"
sed 's/ HOSTDEV_[A-Z_]*=.*$//; s/^/   /' "$T/hostdevd.log"
exit $rc
