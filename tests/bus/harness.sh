#!/bin/bash
# A private system bus with the real polkitd and a bus-activated hostdevd-fake, inside private mount and PID
# namespaces: nothing on the machine changes, and everything dies with the namespace.
#   harness.sh FIXTURE CMD ARGS...     (as root; HOSTDEV_FAKE = the hostdevd-fake binary, HOSTDEV_SRC = the source)
# CMD runs with DBUS_SYSTEM_BUS_ADDRESS set and HOSTDEV_TEST_DIR = the temp dir (run/, gen/, state/,
# daemon.log, kernel.log, crash-at). Users: hdtest (4711, not in hostdev), hdadmin (4712, in group hostdev 4710).
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
: "${HOSTDEV_FAKE:?HOSTDEV_FAKE must name the hostdevd-fake binary}"
: "${HOSTDEV_SRC:?HOSTDEV_SRC must name the source tree}"

T=$(mktemp -d /tmp/hostdev-bus.XXXXXX)
chmod 755 "$T"
export HOSTDEV_TEST_DIR=$T
RUN=$T/run GEN=$T/gen STATE=$T/state
mkdir -p "$RUN" "$GEN/services" "$GEN/system.d" "$GEN/actions" "$GEN/rules.d" "$GEN/vendor-rules.d" "$STATE"
chmod 755 "$RUN" "$GEN" "$GEN/services" "$GEN/system.d" "$GEN/actions" "$GEN/rules.d" "$GEN/vendor-rules.d"
# The namespace dies with this script (PID 1 of it); the temp dir is ours to remove.
trap 'status=$?; if [ $status -ne 0 ] && [ -s "$T/daemon.log" ]; then echo "--- hostdevd-fake log:"; tail -n 40 "$T/daemon.log"; fi; rm -rf "$T"' EXIT

# Test users, without touching the machine: copies of passwd/group bind-mounted over the originals.
cp /etc/passwd "$T/passwd"; cp /etc/group "$T/group"
grep -q '^polkitd:' "$T/passwd" || echo 'polkitd:x:996:996:polkit:/nonexistent:/usr/sbin/nologin' >>"$T/passwd"
grep -q '^polkitd:' "$T/group" || echo 'polkitd:x:996:' >>"$T/group"
cat >>"$T/passwd" <<'EOT'
hdtest:x:4711:4711:hostdev test user:/nonexistent:/usr/sbin/nologin
hdadmin:x:4712:4712:hostdev admin user:/nonexistent:/usr/sbin/nologin
EOT
cat >>"$T/group" <<'EOT'
hdtest:x:4711:
hdadmin:x:4712:
hostdev:x:4710:hdadmin
EOT
chmod 644 "$T/passwd" "$T/group"
mount --bind "$T/passwd" /etc/passwd
mount --bind "$T/group" /etc/group

# polkit: only the repository's real policy and example rules.
cp "$HOSTDEV_SRC/polkit/org.hostdev.passthrough1.policy" "$GEN/actions/"
cp "$HOSTDEV_SRC/polkit/50-hostdev-group.rules.example" "$GEN/rules.d/50-hostdev.rules"
chmod 644 "$GEN/actions/"* "$GEN/rules.d/"*
mount --bind "$GEN/actions" /usr/share/polkit-1/actions
mkdir -p /etc/polkit-1/rules.d
mount --bind "$GEN/rules.d" /etc/polkit-1/rules.d
mount --bind "$GEN/vendor-rules.d" /usr/share/polkit-1/rules.d

# The bus: the default system policy, our socket, our service dir, no <user>, no <servicehelper>.
cp "$HOSTDEV_SRC/dbus/org.hostdev.Passthrough1.conf" "$GEN/system.d/"
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
# The fake daemon's output goes to daemon.log (dbus-daemon would drop it).
cat >"$GEN/hostdevd-fake.sh" <<EOT
#!/bin/sh
exec "$HOSTDEV_FAKE" --fixture $fixture --state-dir "$STATE" --kernel-log "$T/kernel.log" \\
  --crash-file "$T/crash-at" --bus system \${HOSTDEV_FAKE_EXTRA:-} >>"$T/daemon.log" 2>&1
EOT
chmod 755 "$GEN/hostdevd-fake.sh"
cat >"$GEN/services/org.hostdev.Passthrough1.service" <<EOT
[D-BUS Service]
Name=org.hostdev.Passthrough1
Exec=$GEN/hostdevd-fake.sh
User=root
EOT

export DBUS_SYSTEM_BUS_ADDRESS="unix:path=$RUN/system_bus_socket"
dbus-daemon --config-file="$GEN/system.conf" --nofork --nosyslog --nopidfile 2>"$T/dbus-daemon.log" &
for _ in $(seq 200); do [ -S "$RUN/system_bus_socket" ] && break; sleep 0.01; done
if [ ! -S "$RUN/system_bus_socket" ]; then
  echo "harness: dbus-daemon did not start:"; cat "$T/dbus-daemon.log"; exit 1
fi

"$@"
