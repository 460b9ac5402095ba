#!/bin/bash
# The systemd lab's tests, run inside the guest as /lab/run by
# hostdev-labtest.service (root, under systemd, after multi-user.target) with
# hostdev installed from a DESTDIR (prefix /usr).  Each lab_test NAME is one
# meson test of the suite 'systemd'.  Order matters: sd-boot must not touch
# hostdevd, and unit-activation makes the very first call to it.
# Two boots on one root (run-test.sh): the first runs every test, then
# sd-restore-setup (an mdev instance, hostdev-restore.service and the stand-in
# VM unit lab-vm.service enabled); the second (kernel line lab.boot=2) is the
# reboot and runs only sd-restore-order.
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
    grep -q '^CapabilityBoundingSet=.*cap_sys_resource' <<<"$show" || lab_fail "no CAP_SYS_RESOURCE for RaiseMemlock"
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

# ---- the reboot: hostdev-restore.service before the VM units ---------------------------------
RESTORE=hostdev-restore.service
VM=lab-vm.service
LAB_DIR=/var/lib/lab # on the root, which the second boot keeps
json_field() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" | head -n 1; } # FIELD < json
json_list() { awk -v k="\"$1\": \\[" '$0 ~ k { on = 1; next } on && /\]/ { on = 0 } on' | sed 's/^ *"\(.*\)",\{0,1\}$/\1/'; }
mono() { systemctl show -p "$2" --value "$1"; } # UNIT PROPERTY: a *TimestampMonotonic, in microseconds
journal_usec() { # UNIT PATTERN: the monotonic time (us) of the first journal line of UNIT matching PATTERN
    { journalctl -b -u "$1" -o short-monotonic --no-pager | grep -m1 -- "$2" || true; } |
        sed -n 's/^\[ *\([0-9]*\)\.\([0-9]\{6\}\)\].*/\1\2/p'
}

t_sd_restore_setup() {
    need_daemon
    local json uuid paths u
    [ -f "/usr/lib/systemd/system/$RESTORE" ] || lab_fail "$RESTORE is not installed next to $UNIT"
    systemctl cat --no-pager "$RESTORE" | grep -E '^(Wants|After|Before|Type|RemainAfterExit|ExecStart|WantedBy)='
    [ "$(systemctl is-enabled "$RESTORE" || true)" = disabled ] || lab_fail "meson install enabled $RESTORE"
    echo "ok: $RESTORE installed, not enabled"
    hostdevctl create lab-vm --gpu-profile mtty-2 >/dev/null
    json=$(hostdevctl instance lab-vm --json)
    uuid=$(json_field mdev_uuid <<<"$json")
    paths=$(json_list device_paths <<<"$json" | xargs)
    echo "lab-vm: mdev $uuid, device paths: $paths"
    if [ -z "$uuid" ] || [ ! -e "/sys/bus/mdev/devices/$uuid" ]; then lab_fail "no mdev for lab-vm"; fi
    case " $paths " in
    *" /sys/bus/mdev/devices/$uuid "* | *" /sys/bus/mdev/devices/$uuid/ "*) ;;
    *) lab_fail "lab-vm's device paths do not name its mdev" ;;
    esac
    grep -q '"persistent": true' <<<"$json" || lab_fail "lab-vm is not persistent"
    # The stand-in VM: its unit, and its definition (the device paths, as a VM's XML would name them).
    printf 'LAB_VM_PATHS="%s"\n' "$paths" >/etc/lab-vm.env
    install -m 644 /lab/lab-vm.service "/etc/systemd/system/$VM"
    systemctl daemon-reload
    systemctl enable "$RESTORE" "$VM"
    for u in "$RESTORE" "$VM"; do
        [ "$(systemctl is-enabled "$u")" = enabled ] || lab_fail "$u is not enabled"
    done
    systemd-analyze verify --man=no "/etc/systemd/system/$VM" "/usr/lib/systemd/system/$RESTORE" 2>&1 | grep -v '^$' || true
    mkdir -p "$LAB_DIR"
    echo "$uuid" >"$LAB_DIR/mdev-uuid"
    cat /proc/sys/kernel/random/boot_id >"$LAB_DIR/boot-id-1"
    echo "ok: lab-vm (mtty-2, mdev $uuid) made; $RESTORE and $VM enabled; the reboot comes next"
}

t_sd_restore_order() {
    need_daemon
    local uuid boot1 u v json r_start r_done v_start d_up restored n=0
    [ -f "$LAB_DIR/mdev-uuid" ] || lab_fail "the first boot left no $LAB_DIR/mdev-uuid (did its sd-restore-setup pass?)"
    uuid=$(<"$LAB_DIR/mdev-uuid")
    boot1=$(<"$LAB_DIR/boot-id-1")
    [ "$(cat /proc/sys/kernel/random/boot_id)" != "$boot1" ] || lab_fail "the boot id did not change"
    echo "boot 2, boot id $(cat /proc/sys/kernel/random/boot_id) (boot 1: $boot1); lab-vm's mdev $uuid"
    # Both are oneshots wanted by multi-user.target (hence before it, and before this unit): be sure anyway.
    for u in "$RESTORE" "$VM"; do
        while [ "$(systemctl show -p ActiveState --value "$u")" = activating ] && ((n < 300)); do sleep 0.1; n=$((n + 1)); done
    done
    for u in "$UNIT" "$RESTORE" "$VM"; do
        echo "$u: $(systemctl show -p ActiveState,Result,ExecMainStatus,InactiveExitTimestampMonotonic,ExecMainStartTimestampMonotonic,ActiveEnterTimestampMonotonic "$u" | xargs)"
    done
    for u in "$RESTORE" "$VM"; do
        [ "$(systemctl is-enabled "$u")" = enabled ] || lab_fail "$u is not enabled after the reboot"
        [ "$(systemctl show -p ActiveState --value "$u")" = active ] || lab_fail "$u is not active"
        [ "$(systemctl show -p Result --value "$u")" = success ] || lab_fail "$u did not succeed"
    done
    echo "--- what $VM saw at its start (/var/lib/lab-vm/result)"
    cat /var/lib/lab-vm/result
    grep -qE "^present /sys/bus/mdev/devices/$uuid/?\$" /var/lib/lab-vm/result || lab_fail "$VM did not see the mdev $uuid"
    grep -qx "hostdev-restore.service active" /var/lib/lab-vm/result || lab_fail "$RESTORE was not done when $VM started"
    grep -q "boot_id $(cat /proc/sys/kernel/random/boot_id)" /var/lib/lab-vm/result || lab_fail "the result is not of this boot"
    d_up=$(mono "$UNIT" ActiveEnterTimestampMonotonic)
    r_start=$(mono "$RESTORE" ExecMainStartTimestampMonotonic)
    r_done=$(mono "$RESTORE" ActiveEnterTimestampMonotonic)
    v_start=$(mono "$VM" ExecMainStartTimestampMonotonic)
    restored=$(journal_usec "$UNIT" 'restored after a reboot')
    [ -n "$restored" ] || lab_fail "no 'restored after a reboot' in $UNIT's journal"
    for v in "$d_up" "$r_start" "$r_done" "$v_start"; do [ "${v:-0}" -gt 0 ] || lab_fail "a timestamp is missing"; done
    # (The journal's time is journald's receipt of hostdevd's line: shown, not compared.)
    echo "MEASURE monotonic us: $UNIT up $d_up (its 'restored after a reboot' line received $restored), $RESTORE start $r_start done $r_done, $VM start $v_start"
    ((d_up <= r_start)) || lab_fail "$RESTORE started before $UNIT was up"
    ((r_start <= r_done)) || lab_fail "$RESTORE was done before it started"
    ((r_done <= v_start)) || lab_fail "$VM started before $RESTORE was done"
    echo "ok: $UNIT up (after its restore) -> $RESTORE done -> $VM started, $(((v_start - d_up) / 1000)) ms after $UNIT"
    json=$(hostdevctl instance lab-vm --json)
    [ "$(json_field state <<<"$json")" = active ] || lab_fail "lab-vm is $(json_field state <<<"$json")"
    [ "$(json_field mdev_uuid <<<"$json")" = "$uuid" ] || lab_fail "lab-vm's mdev_uuid changed"
    [ -e "/sys/bus/mdev/devices/$uuid" ] || lab_fail "no /sys/bus/mdev/devices/$uuid"
    echo "--- $RESTORE's output"
    journalctl -b -u "$RESTORE" -o cat --no-pager
    journalctl -b -u "$RESTORE" -o cat --no-pager | grep -qE '^lab-vm +active' || lab_fail "$RESTORE did not list lab-vm active"
    echo "--- $UNIT's start-up"
    journalctl -b -u "$UNIT" -o short-monotonic --no-pager | grep -E 'start-up|restored|serving' || true
    hostdevctl delete lab-vm
}

# ---- hostdevctl run as an unprivileged user: a nested QEMU with real polkit, ACLs and a lease ---------------
RUN_DIR=/tmp/lab-run # hdadmin's: the nested guests' serial logs
# The nested (L2) guest: TCG (a 64 MB translation cache: the VM has 1 GB), the lab's vmlinux and ../nested/init's
# initramfs (prints NESTED-PCI lines), 128 MB.
# shellcheck disable=SC2054 # QEMU's own commas
NESTED=(-M q35 -accel tcg,tb-size=64 -cpu max -m 128 -smp 1 -nodefaults -display none -no-reboot -net none
    -kernel /lab/nested/vmlinux -initrd /lab/nested/initrd.cpio -append "console=ttyS0 panic=-1 quiet")
# As hdadmin (group hostdev), not root: setpriv changes uid, gid and groups without PAM (and execs: "${AS_HDADMIN[@]}"
# CMD & leaves CMD's pid in $!). VFIO pins all guest RAM, which counts against RLIMIT_MEMLOCK (8 MB here, soft and
# hard): hostdevctl run --memory has hostdevd raise it for the VMM.
AS_HDADMIN=(setpriv --reuid=hdadmin --regid=hdadmin --init-groups --reset-env --)
VMM_MEMLOCK=256M # the nested guest's 128 MB and what QEMU maps besides
group_of() { basename "$(readlink "$1/iommu_group")"; } # SYSFS_DEVICE_DIR -> IOMMU group number
instance_listed() { hostdevctl instances | awk 'NR > 1 { print $1 }' | grep -qx "$1"; }
acl_users() { getfacl -cp "$1" 2>/dev/null | sed -n 's/^user:\([^:][^:]*\):.*/\1/p' | xargs; } # NODE -> named users
wait_gone() { # NAME ADDR UUID LIMIT_MS: poll until the instance, the edu's driver and the mdev are gone; prints ms
    local t0 ms
    t0=$(ns)
    while :; do
        ms=$(ms_since "$t0")
        if ! instance_listed "$1" && [ "$(driver_of "$2")" = none ] && [ ! -e "/sys/bus/mdev/devices/$3" ]; then
            echo "$ms"
            return 0
        fi
        [ "${ms%.*}" -lt "$4" ] || { echo "$ms"; return 1; }
        sleep 0.05
    done
}
vfio_fds() { # PID: the /dev/vfio/ nodes (and /dev/iommu) it holds open, one a line
    local f l
    for f in /proc/"$1"/fd/*; do
        l=$(readlink "$f" 2>/dev/null) || continue
        case $l in /dev/vfio/* | /dev/iommu) echo "$l" ;; esac
    done
}
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l; } # PID
# OpenVfio's mode on this kernel: cdev where /dev/iommu and VFIO device cdevs exist (the 6.12 flavour), else acl.
VFIO_MODE=acl
[ -c /dev/iommu ] && VFIO_MODE=cdev
# HOSTDEVCTL_PID: the VMM it forked, once it holds its VFIO nodes (acl: the container and 2 groups; cdev: /dev/iommu
# and 2 device cdevs), 60 s at most
qemu_of() {
    local n=0 q
    while ((n < 1200)); do
        q=$(pgrep -P "$1" | head -n1 || true)
        if [ -n "$q" ] && [ "$(vfio_fds "$q" | wc -l)" -ge 3 ]; then
            echo "$q"
            return 0
        fi
        kill -0 "$1" 2>/dev/null || return 1
        sleep 0.05
        n=$((n + 1))
    done
    return 1
}

t_sd_unprivileged_run() {
    need_daemon
    local addr ex rules=/etc/polkit-1/rules.d/50-hostdev.rules t0 n=0 out hpid qpid rc json uuid ipath g_edu g_mdev
    local node ms secs c_edu c_mdev dpid dfds held
    addr=$(edu_addr) || lab_fail "no edu device (1234:11e8)"
    command -v qemu-system-x86_64 >/dev/null || lab_fail "no qemu-system-x86_64 in the root"
    qemu-system-x86_64 --version | head -n1
    echo "memlock limit of this unit: $(ulimit -l) KB soft, $(ulimit -Hl) KB hard"
    # Root registers the device; the shipped example rule lets group hostdev do the rest.
    hostdevctl register edu "$addr"
    ex=$(find /usr/share/doc/hostdev /usr/share/hostdev -name '*.rules.example' 2>/dev/null | head -n1 || true)
    [ -n "$ex" ] || lab_fail "no shipped *.rules.example installed"
    install -m 644 "$ex" "$rules"
    t0=$(ns)
    while :; do
        out=$(gcall hdadmin "$OBJ" "$IF.Devices.Unregister" "'lab-none'" '@a{sv} {}' 2>&1 || true)
        case $out in
        *"$IF.Error.NotAuthorized"*) ;;
        *"$IF.Error.NotFound"* | *"$IF.Error.DeviceNotFound"*) break ;;
        *) echo "$out"; lab_fail "unexpected answer while polling for the rule" ;;
        esac
        [ "$(ms_since "$t0" | cut -d. -f1)" -lt 20000 ] || lab_fail "the rule did not take effect in 20 s"
        sleep 0.05
    done
    echo "ok: example rule installed, effective after $(ms_since "$t0") ms"
    rm -rf "$RUN_DIR"
    install -d -o hdadmin -g hdadmin "$RUN_DIR"

    # 0. Without --memory the VMM cannot pin the guest's RAM: QEMU fails at the start, the lease ends anyway.
    echo "--- run 0: hdadmin: hostdevctl run --device edu -- qemu-system-x86_64 ... {hostdev} (no --memory)"
    rc=0
    "${AS_HDADMIN[@]}" timeout -k 10 120 hostdevctl run --device edu --name lab-nomem -- \
        qemu-system-x86_64 "${NESTED[@]}" -serial "file:$RUN_DIR/run0.log" '{hostdev}' >"$RUN_DIR/run0.out" 2>&1 || rc=$?
    grep -m3 -iE 'memory|vfio' "$RUN_DIR/run0.out" | sed 's/^/  /' || true
    [ "$rc" != 0 ] || lab_fail "QEMU ran with a 128 MB guest under an 8 MB RLIMIT_MEMLOCK"
    ms=$(wait_gone lab-nomem "$addr" none 10000) || lab_fail "lab-nomem still there ${ms} ms after its VMM failed"
    echo "ok: without --memory QEMU exits $rc (cannot pin guest RAM); the instance went (${ms} ms)"

    # 1. The nested guest, started by hdadmin through hostdevctl run, sees the edu and the mtty mdev.
    echo "--- run 1: hdadmin: hostdevctl run --device edu --gpu-profile mtty-2 -- qemu-system-x86_64 ... {hostdev}"
    t0=$(ns)
    rc=0
    "${AS_HDADMIN[@]}" timeout -k 10 420 hostdevctl run --device edu --gpu-profile mtty-2 --name lab-run \
        --memory "$VMM_MEMLOCK" -- \
        qemu-system-x86_64 "${NESTED[@]}" -serial "file:$RUN_DIR/run1.log" '{hostdev}' >"$RUN_DIR/run1.out" 2>&1 || rc=$?
    secs=$(ms_since "$t0")
    cat "$RUN_DIR/run1.out"
    tr -d '\r' <"$RUN_DIR/run1.log" | grep -E '^NESTED-' || true
    echo "MEASURE run 1: hostdevctl run rc=$rc after ${secs} ms (nested TCG boot included)"
    [ "$rc" = 0 ] || { tail -n 20 "$RUN_DIR/run1.log"; lab_fail "hostdevctl run exited $rc"; }
    tr -d '\r' <"$RUN_DIR/run1.log" | grep -q '^NESTED-DONE' || lab_fail "the nested guest did not finish"
    tr -d '\r' <"$RUN_DIR/run1.log" | grep -qE '^NESTED-PCI [^ ]+ 1234:11e8$' || lab_fail "the nested guest does not see the edu (1234:11e8)"
    tr -d '\r' <"$RUN_DIR/run1.log" | grep -qE '^NESTED-PCI [^ ]+ 4348:3253$' || lab_fail "the nested guest does not see the mtty mdev (4348:3253)"
    echo "ok: the L2 guest saw 1234:11e8 and 4348:3253"
    ms=$(wait_gone lab-run "$addr" none 10000) || lab_fail "lab-run still there (or edu on $(driver_of "$addr")) ${ms} ms after its VMM exited"
    echo "MEASURE run 1: instance gone and edu driverless ${ms} ms after hostdevctl exited"

    # 2. A VMM that waits (the same nested guest, -S: stopped before its first instruction, devices open):
    # the ACLs while it runs, hdtest refused, then kill -9 and the clean-up.
    echo "--- run 2: hdadmin: hostdevctl run ... -- qemu-system-x86_64 -S ...; kill -9 the QEMU"
    "${AS_HDADMIN[@]}" hostdevctl run --device edu --gpu-profile mtty-2 --name lab-kill --memory "$VMM_MEMLOCK" -- \
        qemu-system-x86_64 "${NESTED[@]}" -S -serial "file:$RUN_DIR/run2.log" '{hostdev}' >"$RUN_DIR/run2.out" 2>&1 &
    hpid=$!
    qpid=$(qemu_of "$hpid") || { cat "$RUN_DIR/run2.out"; kill -9 "$hpid" 2>/dev/null || true; lab_fail "no QEMU holding /dev/vfio nodes"; }
    echo "hostdevctl pid $hpid (uid $(stat -c %U "/proc/$hpid")), QEMU pid $qpid (uid $(stat -c %U "/proc/$qpid")):"
    vfio_fds "$qpid" | sed 's/^/  holds /'
    [ "$(stat -c %U "/proc/$qpid")" = hdadmin ] || lab_fail "the QEMU does not run as hdadmin"
    grep '^Max locked memory' "/proc/$qpid/limits" | sed 's/^/  QEMU: /'
    grep -qE '^Max locked memory +268435456 +268435456 +bytes' "/proc/$qpid/limits" ||
        lab_fail "the QEMU's RLIMIT_MEMLOCK is not 256 MiB soft and hard"
    echo "ok: hostdevd raised the QEMU's RLIMIT_MEMLOCK to 256 MiB, soft and hard (from 8 MB)"
    json=$(hostdevctl instance lab-kill --json)
    uuid=$(json_field mdev_uuid <<<"$json")
    if [ -z "$uuid" ] || [ ! -e "/sys/bus/mdev/devices/$uuid" ]; then lab_fail "lab-kill has no mdev"; fi
    [ "$(driver_of "$addr")" = vfio-pci ] || lab_fail "edu on $(driver_of "$addr") while lab-kill runs"
    g_edu=$(group_of "/sys/bus/pci/devices/$addr")
    g_mdev=$(group_of "/sys/bus/mdev/devices/$uuid")
    echo "lab-kill: edu $addr group $g_edu on vfio-pci, mdev $uuid group $g_mdev"
    tr '\0' ' ' <"/proc/$qpid/cmdline" | grep -oE -- '-(object|device) [^ ]*(iommufd|vfio)[^ ]*' | sed 's/^/  QEMU: /' || true
    if [ "$VFIO_MODE" = cdev ]; then
        # cdev mode: the fds are the access; QEMU holds /dev/iommu and both devices' cdevs, nobody got an ACL.
        c_edu=$(ls "/sys/bus/pci/devices/$addr/vfio-dev")
        c_mdev=$(ls "/sys/bus/mdev/devices/$uuid/vfio-dev")
        held=$(vfio_fds "$qpid") # once: grep -q ending a pipe early would break vfio_fds' echo
        for node in /dev/iommu "/dev/vfio/devices/$c_edu" "/dev/vfio/devices/$c_mdev"; do
            grep -qx "$node" <<<"$held" || lab_fail "the QEMU does not hold $node"
        done
        if grep -qE '^/dev/vfio/([0-9]+|vfio)$' <<<"$held"; then lab_fail "the QEMU holds group or container nodes in cdev mode"; fi
        tr '\0' '\n' <"/proc/$qpid/cmdline" | grep -qx 'iommufd,id=iommufd0,fd=[0-9]*' || lab_fail "no -object iommufd,id=iommufd0,fd=N on the QEMU's command line"
        for node in /dev/vfio/vfio "/dev/vfio/$g_edu" "/dev/vfio/$g_mdev" /dev/iommu "/dev/vfio/devices/$c_edu"; do
            [ -e "$node" ] || continue
            case " $(acl_users "$node") " in *" hdadmin "*) lab_fail "hdadmin has an ACL entry on $node in cdev mode" ;; esac
        done
        echo "ok: cdev mode: the QEMU holds /dev/iommu, /dev/vfio/devices/$c_edu (edu) and /dev/vfio/devices/$c_mdev (mdev), no ACL given"
    else
        for node in /dev/vfio/vfio "/dev/vfio/$g_edu" "/dev/vfio/$g_mdev"; do
            getfacl -p "$node" 2>/dev/null | grep -vE '^(#|$)' | sed "s|^|  $node |"
            getfacl -cp "$node" | grep -qx 'user:hdadmin:rw-' || lab_fail "no ACL user:hdadmin:rw- on $node"
        done
        echo "ok: acl mode: user:hdadmin:rw- on /dev/vfio/vfio, /dev/vfio/$g_edu and /dev/vfio/$g_mdev"
    fi
    ipath=$(call_o "$BUS" "$OBJ" "$IF.Instances" GetInstance s lab-kill)
    [ -n "$ipath" ] || lab_fail "GetInstance lab-kill returned no path"
    dpid=$(systemctl show -p MainPID --value "$UNIT")
    dfds=$(fd_count "$dpid")
    expect_error "$IF.Error.NotAuthorized" gcall hdtest "$ipath" "$IF.Instance.OpenVfio" '@a{sv} {}'
    # Bad input from the owner, on a real kernel: its devices are held by the running QEMU; an unknown option.
    expect_error "$IF.Error.InUse" gcall hdadmin "$ipath" "$IF.Instance.OpenVfio" '@a{sv} {}'
    expect_error "$IF.Error.InvalidArgument" gcall hdadmin "$ipath" "$IF.Instance.OpenVfio" "@a{sv} {'nonsense': <true>}"
    expect_error "$IF.Error.InvalidArgument" gcall hdadmin "$ipath" "$IF.Instance.OpenVfio" "@a{sv} {'mode': <'fds'>}"
    [ "$(fd_count "$dpid")" = "$dfds" ] || lab_fail "hostdevd held $dfds fds before the refused OpenVfio calls, $(fd_count "$dpid") after"
    echo "ok: OpenVfio refused while the QEMU holds the devices (InUse) and for unknown options; hostdevd still holds $dfds fds"
    for node in /dev/vfio/vfio "/dev/vfio/$g_edu" "/dev/vfio/$g_mdev"; do
        case " $(acl_users "$node") " in *" hdtest "*) lab_fail "hdtest has an ACL entry on $node" ;; esac
    done
    echo "ok: hdtest's OpenVfio on $ipath refused, no ACL entry for hdtest"
    kill -9 "$qpid"
    t0=$(ns)
    ms=$(wait_gone lab-kill "$addr" "$uuid" 15000) || lab_fail "15 s after kill -9: lab-kill listed=$(instance_listed lab-kill && echo yes || echo no), edu on $(driver_of "$addr"), mdev $([ -e "/sys/bus/mdev/devices/$uuid" ] && echo present || echo gone)"
    rc=0
    wait "$hpid" || rc=$?
    cat "$RUN_DIR/run2.out"
    echo "MEASURE kill -9 of the QEMU to instance gone, edu driverless, mdev gone: ${ms} ms (hostdevctl rc=$rc)"
    [ "$rc" = 137 ] || lab_fail "hostdevctl exited $rc, not 137 (128+SIGKILL)"
    [ "${ms%.*}" -lt 5000 ] || lab_fail "the clean-up took ${ms} ms (more than 5 s)"
    [ ! -e "/dev/vfio/$g_edu" ] || lab_fail "/dev/vfio/$g_edu still exists"
    case " $(acl_users /dev/vfio/vfio) " in *" hdadmin "*) lab_fail "hdadmin's ACL on /dev/vfio/vfio not revoked" ;; esac
    echo "ok: instance gone, edu without a driver, mdev $uuid destroyed, ACLs revoked"
    expect_error org.freedesktop.DBus.Error.UnknownObject gcall hdadmin "$ipath" "$IF.Instance.OpenVfio" '@a{sv} {}'
    [ "$(fd_count "$dpid")" -le "$dfds" ] || lab_fail "hostdevd holds $(fd_count "$dpid") fds after the lease ended, $dfds before"
    echo "ok: OpenVfio on the ended lease's instance: UnknownObject; hostdevd holds $(fd_count "$dpid") fds ($dfds while it ran)"
    hostdevctl instances
    hostdevctl unregister edu
    rm -f "$rules"
}

if grep -qw lab.boot=2 /proc/cmdline; then
    lab_test sd-restore-order t_sd_restore_order
    lab_test sd-unprivileged-run t_sd_unprivileged_run
    JOURNAL_UNITS=("$UNIT" "$RESTORE" "$VM")
else
    lab_test sd-boot t_sd_boot
    lab_test unit-activation t_unit_activation
    lab_test unit-hardening t_unit_hardening
    lab_test sandbox-vfio-bind t_sandbox_vfio_bind
    lab_test sandbox-mdev-create t_sandbox_mdev_create
    lab_test policy-denies-user t_policy_denies_user
    lab_test policy-group-rule t_policy_group_rule
    lab_test sd-restore-setup t_sd_restore_setup
    JOURNAL_UNITS=("$UNIT" polkit.service)
fi

echo "=== LAB-JOURNAL BEGIN ${JOURNAL_UNITS[*]}"
for u in "${JOURNAL_UNITS[@]}"; do
    journalctl -b -u "$u" --no-pager -o short-monotonic 2>&1 | tail -n 60 || true
done
echo "=== LAB-JOURNAL END"
