#!/bin/bash
# Runs a command next to the REAL hostdevd on a private system bus, against this machine's real /sys:
#   scripts/demo-bus.sh HOSTDEVD CMD ARGS...        (as root)
# Inside `unshare --mount --pid --fork --mount-proc --propagation private`: a dbus-daemon of type system on a
# socket in a temp dir, the real polkitd (bus-activated) seeing only this repository's polkit policy and example
# group rule (bind mounts that vanish with the namespace), and hostdevd bus-activated on first call with its store
# in the temp dir. The machine's own bus, polkit and /var/lib/hostdev are never touched, and every process dies
# with the namespace. hostdevd itself can change sysfs like on a real host: what CMD asks for is what happens.
# CMD runs with DBUS_SYSTEM_BUS_ADDRESS set and HOSTDEV_DEMO_DIR = the temp dir (hostdevd.log, state/).
# (tests/bus/harness.sh is the test version of this, with test users and the fake kernel.)
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

T=$(mktemp -d "${TMPDIR:-/tmp}/hostdev-demo-bus.XXXXXX")
chmod 755 "$T"
export HOSTDEV_DEMO_DIR=$T
RUN=$T/run GEN=$T/gen STATE=$T/state
mkdir -p "$RUN" "$GEN/services" "$GEN/system.d" "$GEN/actions" "$GEN/rules.d" "$GEN/vendor-rules.d" "$STATE"
chmod 755 "$RUN" "$GEN" "$GEN"/*
trap 'rm -rf "$T"' EXIT

# polkitd drops to user polkitd; give it one (in a bind-mounted copy of passwd/group) if the machine has none.
if ! getent passwd polkitd >/dev/null; then
  cp /etc/passwd "$T/passwd"; cp /etc/group "$T/group"
  echo 'polkitd:x:996:996:polkit:/nonexistent:/usr/sbin/nologin' >>"$T/passwd"
  echo 'polkitd:x:996:' >>"$T/group"
  chmod 644 "$T/passwd" "$T/group"
  mount --bind "$T/passwd" /etc/passwd
  mount --bind "$T/group" /etc/group
fi

# polkit: the repository's policy (root is an administrator: allowed) and the example rule for group hostdev.
cp "$src/polkit/org.hostdev.passthrough1.policy" "$GEN/actions/"
cp "$src/polkit/50-hostdev-group.rules.example" "$GEN/rules.d/50-hostdev.rules"
chmod 644 "$GEN/actions/"* "$GEN/rules.d/"*
mount --bind "$GEN/actions" /usr/share/polkit-1/actions
mkdir -p /etc/polkit-1/rules.d /usr/share/polkit-1/rules.d
mount --bind "$GEN/rules.d" /etc/polkit-1/rules.d
mount --bind "$GEN/vendor-rules.d" /usr/share/polkit-1/rules.d

# The bus: Debian's default system policy, our socket and service dir, hostdev's bus policy; no <user>, no
# <servicehelper> (dbus-daemon then starts the activated services itself, as root).
cp "$src/dbus/org.hostdev.Passthrough1.conf" "$GEN/system.d/"
cat >"$GEN/system.conf" <<EOT
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path=$RUN/system_bus_socket</listen>
  <servicedir>$GEN/services</servicedir>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <include>/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf</include>
  <includedir>$GEN/system.d</includedir>
</busconfig>
EOT

cat >"$GEN/services/org.freedesktop.PolicyKit1.service" <<EOT
[D-BUS Service]
Name=org.freedesktop.PolicyKit1
Exec=/usr/lib/polkit-1/polkitd --no-debug
User=root
EOT
# hostdevd as installed, but with its store in the temp dir; its log goes to a file (dbus-daemon would drop it).
cat >"$GEN/hostdevd.sh" <<EOT
#!/bin/sh
exec "$hostdevd" --state-dir "$STATE" --bus system >>"$T/hostdevd.log" 2>&1
EOT
chmod 755 "$GEN/hostdevd.sh"
cat >"$GEN/services/org.hostdev.Passthrough1.service" <<EOT
[D-BUS Service]
Name=org.hostdev.Passthrough1
Exec=$GEN/hostdevd.sh
User=root
EOT

export DBUS_SYSTEM_BUS_ADDRESS="unix:path=$RUN/system_bus_socket"
dbus-daemon --config-file="$GEN/system.conf" --nofork --nosyslog --nopidfile 2>"$T/dbus-daemon.log" &
for _ in $(seq 300); do [ -S "$RUN/system_bus_socket" ] && break; sleep 0.01; done
if [ ! -S "$RUN/system_bus_socket" ]; then
  echo "demo-bus: dbus-daemon did not start:" >&2; cat "$T/dbus-daemon.log" >&2; exit 1
fi

"$@"
