#!/bin/sh
# A system bus inside the lab VM with hostdevd bus-activated from /payload/bin (busybox sh; sourced).
# There is no polkitd in the VM: hostdevd fails closed, so only root (uid 0) is allowed — which is who runs here.
#   lab_bus_start            start dbus-daemon, export DBUS_SYSTEM_BUS_ADDRESS
#   lab_daemon_pid           the running hostdevd's pid (empty when none)
#   lab_daemon_kill          kill -9 hostdevd and wait until its name is gone
#   lab_daemon_stop          SIGTERM to hostdevd (as at a shutdown) and wait until it is gone
# LAB_HOSTDEVD_ARGS (set before lab_bus_start): more options for the bus-activated hostdevd (--restore-wait 2).
LAB_BUS_DIR=/run/hostdev-bus
LAB_STATE_DIR=/var/lib/hostdev

lab_bus_start() {
    mkdir -p "$LAB_BUS_DIR/services" /run/dbus "$LAB_STATE_DIR"
    cat >"$LAB_BUS_DIR/system.conf" <<EOT
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <servicedir>$LAB_BUS_DIR/services</servicedir>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
EOT
    cat >"$LAB_BUS_DIR/services/org.hostdev.Passthrough1.service" <<EOT
[D-BUS Service]
Name=org.hostdev.Passthrough1
Exec=/payload/bin/hostdevd --state-dir $LAB_STATE_DIR${LAB_HOSTDEVD_ARGS:+ $LAB_HOSTDEVD_ARGS}
User=root
EOT
    export DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/dbus/system_bus_socket  # before: activated services inherit it
    dbus-daemon --config-file="$LAB_BUS_DIR/system.conf" --nofork --nosyslog --nopidfile \
        >"$LAB_BUS_DIR/dbus.log" 2>&1 &
    lab_wait_for 10 test -S /run/dbus/system_bus_socket || { cat "$LAB_BUS_DIR/dbus.log"; return 1; }
}

lab_daemon_pid() { pidof hostdevd || true; }

lab_name_owned() {
    busctl --system call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus NameHasOwner s \
        org.hostdev.Passthrough1 | grep -q true
}

lab_daemon_kill() {
    _pid=$(lab_daemon_pid)
    [ -n "$_pid" ] || return 0
    kill -9 "$_pid"
    lab_wait_for 10 sh -c '! pidof hostdevd >/dev/null'
}

lab_daemon_stop() {
    _pid=$(lab_daemon_pid)
    [ -n "$_pid" ] || return 0
    kill -TERM "$_pid"
    lab_wait_for 10 sh -c '! pidof hostdevd >/dev/null'
}
