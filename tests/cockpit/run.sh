#!/usr/bin/env bash
# One test of the cockpit suite: installs what it needs (install.sh, outside any namespace: apt must see the real
# /etc), then runs serve.sh inside tests/bus/harness.sh: a private system bus, the real polkitd, hostdevd-fake.
#   run.sh FIXTURE USER SCENARIO
# env (from meson): HOSTDEV_HARNESS, HOSTDEV_NODE, HOSTDEV_FAKE, HOSTDEV_SRC, HOSTDEV_COCKPIT_FILES,
#                   HOSTDEV_COCKPIT_CACHE, HOSTDEV_COCKPIT_ARTIFACTS
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: the cockpit suite needs root (package installs, mount and PID namespaces, test users)"
  exit 77
fi
if [ -z "${HOSTDEV_NODE:-}" ] || [ ! -x "$HOSTDEV_NODE" ]; then
  echo "SKIP: no node (Node.js 20 or newer) was found when meson configured the build"
  exit 77
fi
"$here/install.sh"
mkdir -p "$HOSTDEV_COCKPIT_ARTIFACTS"
exec "$HOSTDEV_HARNESS" "$1" "$here/serve.sh" "$2" "$3"
