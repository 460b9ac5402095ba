#!/bin/bash
# The harness leaves nothing behind: the fixture tree a bus-activated hostdevd-fake builds (on tmpfs, thousands of
# files) is gone once harness.sh returns, although the namespace's end SIGKILLs the daemon (no destructor runs).
# Trees left behind used to fill /dev/shm's inodes after a few hundred runs, and every test then failed.
#   test_harness_cleanup.sh HARNESS       (env as for harness.sh)
set -euo pipefail
harness=$1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# Inside: activate the daemon, then note the sysfs root it serves (its log says it) for the check outside.
# shellcheck disable=SC2016 # expanded inside the harness
"$harness" passthrough bash -c '
  busctl --system call org.hostdev.Passthrough1 /org/hostdev/Passthrough1 org.freedesktop.DBus.Peer Ping >/dev/null
  sed -n "s/.*(sysfs root \([^,]*\),.*/\1/p" "$HOSTDEV_TEST_DIR/daemon.log" | head -n 1 >"$1"' _ "$out"
root=$(cat "$out")
if [ -z "$root" ]; then
  echo "FAIL: the daemon's log names no sysfs root"
  exit 1
fi
if [ -e "$root" ]; then
  echo "FAIL: the fixture tree $root is still there after the harness ended"
  rm -rf "$root"
  exit 1
fi
echo "ok: the fixture tree $root went with the harness"
