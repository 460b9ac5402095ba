#!/bin/bash
# The systemd lab's tests, run inside the guest as /lab/run by
# hostdev-labtest.service (root, under systemd, after multi-user.target) with
# hostdev installed from a DESTDIR (prefix /usr).  Each lab_test NAME is one
# meson test of the suite 'systemd'.  Order matters: sd-boot must not touch
# hostdevd, and unit-activation makes the very first call to it.
set -euo pipefail
# shellcheck source=../guest/lib.sh
. /lab/lib.sh

BUS=org.hostdev.Passthrough1
OBJ=/org/hostdev/Passthrough1
IF=org.hostdev.Passthrough1
UNIT=hostdevd.service
DAEMON=""
for f in /usr/libexec/hostdevd /usr/lib/hostdev/hostdevd /usr/sbin/hostdevd; do
    [ -x "$f" ] && DAEMON=$f && break
done

ns() { date +%s%N; }
ms_since() { awk -v a="$1" -v b="$(ns)" 'BEGIN { printf "%.1f", (b - a) / 1e6 }'; }
need_daemon() {
    [ -n "$DAEMON" ] || lab_skip "hostdevd is not installed in the DESTDIR (daemon not built yet)"
}
# A busctl call whose one object-path reply is printed bare.
call_o() { busctl call "$@" | sed -n 's/^o "\(.*\)"$/\1/p'; }
# gdbus prints the D-Bus error name (busctl only prints its message).
gcall() { # USER OBJECT METHOD ARGS...
    local u=$1 o=$2 m=$3
    shift 3
    runuser -u "$u" -- gdbus call --system --dest "$BUS" --object-path "$o" --method "$m" "$@"
}
# Runs CMD, expects it to fail with D-Bus error NAME in its output.
expect_error() { # NAME CMD...
    local want=$1 out
    shift
    if out=$("$@" 2>&1); then
        echo "$out"
        lab_fail "expected $want, but the call succeeded: $*"
    fi
    echo "$out"
    case $out in
    *"$want"*) echo "ok: refused with $want" ;;
    *) lab_fail "expected $want, got: $out" ;;
    esac
}
edu_addr() {
    local d
    for d in /sys/bus/pci/devices/*; do
        if [ "$(cat "$d/vendor")" = 0x1234 ] && [ "$(cat "$d/device")" = 0x11e8 ]; then
            basename "$d"
            return 0
        fi
    done
    return 1
}
driver_of() { # ADDR -> driver name or "none"
    local l=/sys/bus/pci/devices/$1/driver
    if [ -e "$l" ]; then basename "$(readlink "$l")"; else echo none; fi
}

t_sd_boot() {
    [ "$(cat /proc/1/comm)" = systemd ]
    systemctl is-system-running --wait || true
    echo "test unit started at uptime $(cut -d' ' -f1 /proc/uptime) s"
    systemd-analyze time || true
    # polkitd is bus-activated too.
    busctl call org.freedesktop.PolicyKit1 /org/freedesktop/PolicyKit1/Authority org.freedesktop.DBus.Peer Ping
    systemctl is-active dbus.service polkit.service
    [ "$(stat -c %U "/proc/$(systemctl show -p MainPID --value polkit.service)")" = polkitd ]
    echo "ok: polkitd runs as polkitd"
    systemd-run --wait --quiet --unit=lab-trivial -p ProtectSystem=strict -p NoNewPrivileges=yes /bin/true
    grep -E '^(vfio_pci|mdev|mtty) ' /proc/modules | cut -d' ' -f1
    ls /sys/class/mdev_bus
    id hdtest
    id hdadmin
    echo "installed: daemon ${DAEMON:-(none)}"
    ls -l /usr/share/dbus-1/system-services/*hostdev* /usr/share/dbus-1/system.d/*hostdev* \
        /usr/share/polkit-1/actions/*hostdev* 2>&1 || true
    systemctl cat --no-pager "$UNIT" 2>/dev/null | head -n 3 || true
}

t_unit_activation() {
    need_daemon
    systemctl show -p FragmentPath,ActiveState "$UNIT"
    case $(systemctl show -p FragmentPath --value "$UNIT") in
    "/usr/lib/systemd/system/$UNIT" | "/lib/systemd/system/$UNIT") ;; # the same file: the root is merged-usr
    *) lab_fail "$UNIT is not the installed unit" ;;
    esac
    grep -H '' /usr/share/dbus-1/system-services/$BUS.service
    if busctl status "$BUS" >/dev/null 2>&1; then lab_fail "$BUS is already on the bus before the first call"; fi
    echo "ok: $BUS not on the bus; $UNIT $(systemctl is-active "$UNIT" || true)"
    local t0 first second
    t0=$(ns)
    busctl call "$BUS" "$OBJ" "$IF.Devices" ListDevices
    first=$(ms_since "$t0")
    t0=$(ns)
    busctl call "$BUS" "$OBJ" "$IF.Devices" ListDevices >/dev/null
    second=$(ms_since "$t0")
    echo "MEASURE activation-to-first-reply ${first} ms (second call ${second} ms)"
    [ "$(systemctl is-active "$UNIT")" = active ] || lab_fail "$UNIT not active after the first call"
    systemctl show -p MainPID,ExecMainStartTimestamp,ActiveEnterTimestamp,Type,BusName "$UNIT"
    busctl status "$BUS" | grep -E '^(PID|Comm|Unit|UID|EUID)='
    [ "$(busctl status "$BUS" | sed -n 's/^Unit=//p')" = "$UNIT" ] || lab_fail "$BUS is not owned by $UNIT"
    t0=$(ns)
    busctl call "$BUS" "$OBJ" org.freedesktop.DBus.Peer Ping
    echo "MEASURE Peer.Ping $(ms_since "$t0") ms (busctl start-up included)"
}

t_unit_hardening() {
    need_daemon
    local show pid
    show=$(systemctl show "$UNIT")
    grep -E '^(ProtectSystem|NoNewPrivileges|RestrictAddressFamilies|DeviceAllow|DevicePolicy|CapabilityBoundingSet|ProtectKernelTunables|PrivateDevices|StateDirectory|User)=' <<<"$show"
    grep -qx 'ProtectSystem=strict' <<<"$show" || lab_fail "ProtectSystem is not strict"
    grep -qx 'NoNewPrivileges=yes' <<<"$show" || lab_fail "NoNewPrivileges is not yes"
    [ "$(sed -n 's/^RestrictAddressFamilies=//p' <<<"$show" | tr ' ' '\n' | sort | xargs)" = "AF_NETLINK AF_UNIX" ] ||
        lab_fail "RestrictAddressFamilies is not AF_UNIX AF_NETLINK"
    grep -q '^DeviceAllow=.*/dev/vfio/vfio rw' <<<"$show" || lab_fail "no DeviceAllow for /dev/vfio/vfio"
    grep -q '^DeviceAllow=.*char-vfio rw' <<<"$show" || lab_fail "no DeviceAllow for char-vfio"
    grep -qx 'ProtectKernelTunables=no' <<<"$show" || lab_fail "ProtectKernelTunables would make /sys read-only"
    pid=$(systemctl show -p MainPID --value "$UNIT")
    if [ "$pid" != 0 ]; then
        grep -E '^(NoNewPrivs|CapBnd|CapEff|Seccomp):' "/proc/$pid/status"
        grep -q '^NoNewPrivs:[[:space:]]*1' "/proc/$pid/status" || lab_fail "the running daemon lacks NoNewPrivs"
    fi
    systemd-analyze security --no-pager "$UNIT" | tail -n 1 | sed 's/^/MEASURE /'
    systemd-analyze verify "/usr/lib/systemd/system/$UNIT" 2>&1 | grep -v '^$' || true
}

t_sandbox_vfio_bind() {
    need_daemon
    local addr dev
    addr=$(edu_addr) || lab_fail "no edu device (1234:11e8) in /sys/bus/pci/devices"
    echo "edu at $addr, driver $(driver_of "$addr"), group $(basename "$(readlink "/sys/bus/pci/devices/$addr/iommu_group")")"
    dev=$(call_o "$BUS" "$OBJ" "$IF.Devices" Register 'ssa{sv}' lab-edu "$addr" 0)
    [ -n "$dev" ] || lab_fail "Register returned no object path"
    echo "registered: $dev"
    busctl call "$BUS" "$dev" "$IF.Device" BindVfio 'a{sv}' 0
    [ "$(driver_of "$addr")" = vfio-pci ] || lab_fail "edu is on $(driver_of "$addr") after BindVfio"
    busctl get-property "$BUS" "$dev" "$IF.Device" BoundToVfio Driver
    echo "ok: $addr on vfio-pci (bound by the sandboxed $UNIT, pid $(systemctl show -p MainPID --value "$UNIT"))"
    ls -l /dev/vfio/
    busctl call "$BUS" "$dev" "$IF.Device" UnbindVfio 'a{sv}' 0
    [ "$(driver_of "$addr")" = none ] || lab_fail "edu is on $(driver_of "$addr") after UnbindVfio"
    echo "ok: $addr back to no driver"
    busctl call "$BUS" "$OBJ" "$IF.Devices" Unregister 'sa{sv}' lab-edu 0
}

t_sandbox_mdev_create() {
    need_daemon
    local inst uuid
    ls /sys/class/mdev_bus/*/mdev_supported_types/
    inst=$(call_o "$BUS" "$OBJ" "$IF.Instances" Create 'sa{sv}' lab-mtty 1 gpu_profile s mtty-2)
    [ -n "$inst" ] || lab_fail "Create returned no object path"
    echo "created: $inst"
    uuid=$(busctl get-property "$BUS" "$inst" "$IF.Instance" MdevUuid | sed -n 's/^s "\(.*\)"$/\1/p')
    [ -n "$uuid" ] || lab_fail "the instance has no MdevUuid"
    [ -e "/sys/bus/mdev/devices/$uuid" ] || lab_fail "no /sys/bus/mdev/devices/$uuid"
    echo "ok: mdev $uuid type $(basename "$(readlink "/sys/bus/mdev/devices/$uuid/mdev_type")")"
    busctl get-property "$BUS" "$inst" "$IF.Instance" DevicePaths
    busctl call "$BUS" "$OBJ" "$IF.Instances" Delete 'sa{sv}' lab-mtty 0
    [ ! -e "/sys/bus/mdev/devices/$uuid" ] || lab_fail "mdev $uuid still exists after Delete"
    echo "ok: mdev $uuid gone"
}

t_policy_denies_user() {
    need_daemon
    local addr
    addr=$(edu_addr)
    runuser -u hdtest -- busctl call "$BUS" "$OBJ" "$IF.Devices" ListDevices
    gcall hdtest "$OBJ" "$IF.Devices.ListDevices"
    echo "ok: hdtest may read"
    expect_error "$IF.Error.NotAuthorized" gcall hdtest "$OBJ" "$IF.Devices.Register" "'lab-denied'" "'$addr'" '@a{sv} {}'
    expect_error "$IF.Error.NotAuthorized" gcall hdtest "$OBJ" "$IF.Instances.Create" "'lab-denied'" "{'gpu_profile': <'mtty-1'>}"
    [ "$(driver_of "$addr")" = none ] || lab_fail "edu changed driver after a refused call"
}

t_policy_group_rule() {
    need_daemon
    local addr ex rules=/etc/polkit-1/rules.d/50-hostdev.rules t0 n=0 out
    addr=$(edu_addr)
    ex=$(find /usr/share/doc/hostdev /usr/share/hostdev -name '*.rules.example' 2>/dev/null | head -n1 || true)
    [ -n "$ex" ] || lab_fail "no shipped *.rules.example installed"
    expect_error "$IF.Error.NotAuthorized" gcall hdadmin "$OBJ" "$IF.Devices.Register" "'lab-admin'" "'$addr'" '@a{sv} {}'
    echo "installing $ex as $rules"
    install -m 644 "$ex" "$rules"
    t0=$(ns)
    # polkitd reloads rules on inotify: poll for the effect, with a call that needs no device (Unregister of an
    # unknown name answers NotFound once the bouncer lets hdadmin through, NotAuthorized before).
    while :; do
        n=$((n + 1))
        out=$(gcall hdadmin "$OBJ" "$IF.Devices.Unregister" "'lab-none'" '@a{sv} {}' 2>&1 || true)
        case $out in
        *"$IF.Error.NotAuthorized"*) ;;
        *"$IF.Error.NotFound"* | *"$IF.Error.DeviceNotFound"*) break ;;
        *) echo "$out"; lab_fail "unexpected answer while polling" ;;
        esac
        [ "$(ms_since "$t0" | cut -d. -f1)" -lt 20000 ] || { echo "$out"; lab_fail "the rule did not take effect in 20 s"; }
        sleep 0.05
    done
    echo "$out"
    echo "MEASURE rule-effective after ${n} tries, $(ms_since "$t0") ms after install"
    # And a real mutating call end to end.
    gcall hdadmin "$OBJ" "$IF.Devices.Register" "'lab-admin'" "'$addr'" '@a{sv} {}'
    gcall hdadmin "$OBJ" "$IF.Devices.Unregister" "'lab-admin'" '@a{sv} {}'
    echo "ok: hdadmin (group hostdev) allowed by the shipped example rule"
    expect_error "$IF.Error.NotAuthorized" gcall hdtest "$OBJ" "$IF.Devices.Register" "'lab-denied'" "'$addr'" '@a{sv} {}'
    rm -f "$rules"
}

lab_test sd-boot t_sd_boot
lab_test unit-activation t_unit_activation
lab_test unit-hardening t_unit_hardening
lab_test sandbox-vfio-bind t_sandbox_vfio_bind
lab_test sandbox-mdev-create t_sandbox_mdev_create
lab_test policy-denies-user t_policy_denies_user
lab_test policy-group-rule t_policy_group_rule

echo "=== LAB-JOURNAL BEGIN $UNIT"
journalctl -b -u "$UNIT" --no-pager -o short-monotonic 2>&1 | tail -n 60 || true
journalctl -b -u polkit.service --no-pager -o short-monotonic 2>&1 | tail -n 20 || true
echo "=== LAB-JOURNAL END"
