#!/usr/bin/env bash
# Inside tests/bus/harness.sh: cockpit-ws and its bridge as USER serve the page on a private loopback (a network
# namespace of its own), and page_test.mjs drives headless Chromium through SCENARIO.
#   serve.sh USER SCENARIO
# The page is served the way Cockpit finds packages: a copy of the installed files (HOSTDEV_COCKPIT_FILES, the
# list cockpit/meson.build installs) in $HOSTDEV_TEST_DIR/share/cockpit/hostdev, first in XDG_DATA_DIRS.
set -euo pipefail
if [ -z "${HOSTDEV_IN_NETNS:-}" ]; then
  export HOSTDEV_IN_NETNS=1
  exec unshare --net "$0" "$@"
fi
user=$1 scenario=$2
T=$HOSTDEV_TEST_DIR
ip link set lo up

share=$T/share
install -d -m 755 "$share" "$share/cockpit" "$share/cockpit/hostdev"
IFS=: read -r -a files <<<"$HOSTDEV_COCKPIT_FILES"
install -m 644 "${files[@]}" "$share/cockpit/hostdev/"

uid=$(id -u "$user")
gid=$(id -g "$user")
home=$T/home-$user
install -d -m 700 -o "$uid" -g "$gid" "$home" "$home/runtime"
install -d -m 755 "$T/cockpit-config"   # an empty XDG_CONFIG_DIRS: no cockpit.conf of the machine

port=9090
(
  cd "$home"
  exec env HOME="$home" XDG_RUNTIME_DIR="$home/runtime" XDG_DATA_DIRS="$share:/usr/share" \
    XDG_CONFIG_DIRS="$T/cockpit-config" \
    setpriv --reuid="$uid" --regid="$gid" --init-groups \
    /usr/lib/cockpit/cockpit-ws --local-session=cockpit-bridge --no-tls --address 127.0.0.1 --port $port
) >"$T/cockpit-ws.log" 2>&1 &
ws=$!
for _ in $(seq 200); do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then break; fi
  sleep 0.05
done

rc=0
"$HOSTDEV_NODE" "$HOSTDEV_SRC/tests/cockpit/page_test.mjs" "$scenario" "$user" \
  "http://127.0.0.1:$port/cockpit/@localhost/hostdev/index.html" || rc=$?
kill "$ws" 2>/dev/null || true
wait "$ws" 2>/dev/null || true
if [ $rc -ne 0 ]; then
  echo "--- cockpit-ws and bridge log:"
  tail -n 40 "$T/cockpit-ws.log"
fi
exit $rc
