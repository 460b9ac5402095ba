# shellcheck shell=bash
# A private system bus with the real polkitd, for scripts/demo-bus.sh and tests/bus/harness.sh (sourced; bash).
# Meant for a script running as root inside `unshare --mount --pid --fork --mount-proc --propagation private`:
# every bind mount vanishes with the namespace, and every process started here dies with it.
#   private_bus_dirs TEMPLATE          T = a new temp dir (mktemp template); RUN, GEN, STATE below it
#   private_bus_users [PASSWD GROUP]   a passwd/group copy with user polkitd (and these extra lines), bind-mounted
#   private_bus_polkit SRC             polkit sees only SRC's policy and example group rule
#   private_bus_config SRC             the bus configuration, SRC's bus policy, polkitd's activation file
#   private_bus_script FILE <BODY      an executable /bin/sh script: BODY after the #! line
#   private_bus_service NAME EXEC      an activation file: dbus-daemon starts EXEC (as root) for NAME
#   private_bus_start WHO              starts dbus-daemon and exports DBUS_SYSTEM_BUS_ADDRESS (WHO: for errors)

private_bus_dirs() { # TEMPLATE
  T=$(mktemp -d "$1")
  chmod 755 "$T"
  RUN=$T/run GEN=$T/gen STATE=$T/state
  mkdir -p "$RUN" "$GEN/services" "$GEN/system.d" "$GEN/actions" "$GEN/rules.d" "$GEN/vendor-rules.d" "$STATE"
  chmod 755 "$RUN" "$GEN" "$GEN/services" "$GEN/system.d" "$GEN/actions" "$GEN/rules.d" "$GEN/vendor-rules.d"
}

# polkitd drops to user polkitd: it gets one if the machine has none. With PASSWD/GROUP (lines to append), or
# without a polkitd user, the copies are bind-mounted over /etc/passwd and /etc/group; else nothing changes.
private_bus_users() { # [PASSWD GROUP]
  if [ $# -eq 0 ] && getent passwd polkitd >/dev/null; then return 0; fi
  cp /etc/passwd "$T/passwd"; cp /etc/group "$T/group"
  grep -q '^polkitd:' "$T/passwd" || echo 'polkitd:x:996:996:polkit:/nonexistent:/usr/sbin/nologin' >>"$T/passwd"
  grep -q '^polkitd:' "$T/group" || echo 'polkitd:x:996:' >>"$T/group"
  if [ $# -gt 0 ]; then
    printf '%s' "$1" >>"$T/passwd"
    printf '%s' "$2" >>"$T/group"
  fi
  chmod 644 "$T/passwd" "$T/group"
  mount --bind "$T/passwd" /etc/passwd
  mount --bind "$T/group" /etc/group
}

# polkit: the repository's policy (root is an administrator: allowed) and the example rule for group hostdev.
private_bus_polkit() { # SRC
  cp "$1/polkit/org.hostdev.passthrough1.policy" "$GEN/actions/"
  cp "$1/polkit/50-hostdev-group.rules.example" "$GEN/rules.d/50-hostdev.rules"
  chmod 644 "$GEN/actions/"* "$GEN/rules.d/"*
  mount --bind "$GEN/actions" /usr/share/polkit-1/actions
  mkdir -p /etc/polkit-1/rules.d /usr/share/polkit-1/rules.d
  mount --bind "$GEN/rules.d" /etc/polkit-1/rules.d
  mount --bind "$GEN/vendor-rules.d" /usr/share/polkit-1/rules.d
}

# The bus: Debian's default system policy, our socket and service dir, hostdev's bus policy; no <user>, no
# <servicehelper> (dbus-daemon then starts the activated services itself, as root).
private_bus_config() { # SRC
  cp "$1/dbus/org.hostdev.Passthrough1.conf" "$GEN/system.d/"
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
  private_bus_service org.freedesktop.PolicyKit1 "/usr/lib/polkit-1/polkitd --no-debug"
}

# dbus-daemon drops an activated service's output: a daemon's wrapper script sends it to a log file.
private_bus_script() { # FILE <BODY
  { echo '#!/bin/sh'; cat; } >"$1"
  chmod 755 "$1"
}

private_bus_service() { # NAME EXEC
  cat >"$GEN/services/$1.service" <<EOT
[D-BUS Service]
Name=$1
Exec=$2
User=root
EOT
}

private_bus_start() { # WHO
  export DBUS_SYSTEM_BUS_ADDRESS="unix:path=$RUN/system_bus_socket"
  dbus-daemon --config-file="$GEN/system.conf" --nofork --nosyslog --nopidfile 2>"$T/dbus-daemon.log" &
  for _ in $(seq 300); do [ -S "$RUN/system_bus_socket" ] && break; sleep 0.01; done
  if [ ! -S "$RUN/system_bus_socket" ]; then
    echo "$1: dbus-daemon did not start:" >&2; cat "$T/dbus-daemon.log" >&2; exit 1
  fi
}
