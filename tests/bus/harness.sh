#!/bin/bash
# A private system bus (scripts/private-bus.sh) with the real polkitd and a bus-activated hostdevd-fake, inside
# private mount and PID namespaces: nothing on the machine changes, and everything dies with the namespace.
#   harness.sh FIXTURE CMD ARGS...     (as root; HOSTDEV_FAKE = the hostdevd-fake binary, HOSTDEV_SRC = the source)
# CMD runs with DBUS_SYSTEM_BUS_ADDRESS set, HOSTDEV_FIXTURE = FIXTURE and HOSTDEV_TEST_DIR = the temp dir (run/,
# gen/, state/, daemon.log, kernel.log, crash-at). Users: hdtest (4711, not in hostdev), hdadmin (4712, in group
# hostdev 4710).
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: the bus suite needs root (mount and PID namespaces, bind mounts)"
  exit 77
fi
if [ -z "${HOSTDEV_IN_NAMESPACE:-}" ]; then
  export HOSTDEV_IN_NAMESPACE=1
  exec unshare --mount --pid --fork --mount-proc --propagation private "$0" "$@"
fi

fixture=$1; shift
# Fixture trees (hostdevd-fake builds one under /dev/shm) go to a tmpfs of this mount namespace, which goes with
# it: the namespace's end SIGKILLs the daemon, so its own clean-up never runs, and trees left on the machine's
# /dev/shm filled its inodes after a few hundred runs.
mount -t tmpfs -o mode=1777 hostdev-fixtures /dev/shm
: "${HOSTDEV_FAKE:?HOSTDEV_FAKE must name the hostdevd-fake binary}"
: "${HOSTDEV_SRC:?HOSTDEV_SRC must name the source tree}"
# shellcheck source=scripts/private-bus.sh
. "$(dirname "$(readlink -f "$0")")/../../scripts/private-bus.sh"

private_bus_dirs /tmp/hostdev-bus.XXXXXX
export HOSTDEV_TEST_DIR=$T HOSTDEV_FIXTURE=$fixture
# The namespace dies with this script (PID 1 of it); the temp dir is ours to remove.
# shellcheck disable=SC2154 # status is set by the trap itself
trap 'status=$?; if [ $status -ne 0 ] && [ -s "$T/daemon.log" ]; then echo "--- hostdevd-fake log:"; tail -n 40 "$T/daemon.log"; fi; rm -rf "$T"' EXIT

# Test users, without touching the machine: copies of passwd/group bind-mounted over the originals.
private_bus_users 'hdtest:x:4711:4711:hostdev test user:/nonexistent:/usr/sbin/nologin
hdadmin:x:4712:4712:hostdev admin user:/nonexistent:/usr/sbin/nologin
' 'hdtest:x:4711:
hdadmin:x:4712:
hostdev:x:4710:hdadmin
'
private_bus_polkit "$HOSTDEV_SRC"
private_bus_config "$HOSTDEV_SRC"
# The fake daemon's output goes to daemon.log.
private_bus_script "$GEN/hostdevd-fake.sh" <<EOT
exec "$HOSTDEV_FAKE" --fixture $fixture --state-dir "$STATE" --kernel-log "$T/kernel.log" \\
  --crash-file "$T/crash-at" --bus system \${HOSTDEV_FAKE_EXTRA:-} >>"$T/daemon.log" 2>&1
EOT
private_bus_service org.hostdev.Passthrough1 "$GEN/hostdevd-fake.sh"
# The benchmark's floor (tests/bench/anchor.cpp), bus-activated beside the daemon.
if [ -n "${HOSTDEV_BENCH_ANCHOR:-}" ]; then
  cat >"$GEN/system.d/org.hostdev.BenchAnchor.conf" <<'EOT'
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <policy user="root"><allow own="org.hostdev.BenchAnchor"/></policy>
  <policy context="default"><allow send_destination="org.hostdev.BenchAnchor"/></policy>
</busconfig>
EOT
  private_bus_service org.hostdev.BenchAnchor "$HOSTDEV_BENCH_ANCHOR"
fi
private_bus_start harness

"$@"
