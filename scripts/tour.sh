#!/bin/sh
# The hostdev quick start, narrated: every step prints the hostdevctl command it runs and what it does.
# POSIX sh (runs under busybox sh in the lab VM). Needs a running bus where hostdevd answers (or is activated).
#   HOSTDEVCTL=PATH      the hostdevctl binary (default: hostdevctl from PATH)
#   TOUR_DEVICE=ADDR     a PCI function (0000:01:00.0) to register and pass to an instance; it is really bound
#                        to vfio-pci and given back to its host driver. Empty: the device steps are skipped.
#   TOUR_PROFILE=NAME    a vGPU profile (name or mdev type) for an instance; an mdev is really created and
#                        destroyed. Empty: the vGPU steps are skipped.
#   NO_COLOR=1           no bold text even on a terminal
# What this host cannot do (no IOMMU, no vfio-pci, no mdev parents) is said, with the daemon's own refusal where
# one is instructive, and never counted as success. Exit status: 0 when every step that should work here worked.
set -u

ctl=${HOSTDEVCTL:-hostdevctl}
dev=${TOUR_DEVICE:-}
prof=${TOUR_PROFILE:-}
DEV_NAME=tour-dev VM=tour-vm VGPU=tour-vgpu

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then B=$(printf '\033[1m') D=$(printf '\033[2m') N=$(printf '\033[0m'); else B='' D='' N=''; fi
ran=0 failed=0 skipped=0
failures=''
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hostdev-tour.XXXXXX") || exit 1
registered='' vm_created='' vgpu_created='' vgpu_made='' mon_pid=''

# Undo what the tour made if it stops early (a failed step does not stop it; Ctrl-C or a kill does).
# shellcheck disable=SC2317  # called by the trap
cleanup() {
    [ -n "$mon_pid" ] && kill -TERM "$mon_pid" 2>/dev/null
    [ -n "$vgpu_created" ] && "$ctl" --no-ask-password delete "$VGPU" >/dev/null 2>&1
    [ -n "$vm_created" ] && "$ctl" --no-ask-password delete "$VM" >/dev/null 2>&1
    [ -n "$registered" ] && "$ctl" --no-ask-password unregister "$DEV_NAME" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

show() { # ARGS... -> the command line as one would type it (hostdevctl's path as given)
    _line=''
    for _a in "$@"; do
        case $_a in
            '' | *[!A-Za-z0-9_./:=,@+-]*) _a="'$_a'" ;;
        esac
        _line="$_line${_line:+ }$_a"
    done
    printf '%s' "$_line"
}
header() { # WHAT, ARGS...
    _what=$1; shift
    printf '\n%s== %s%s\n$ %s\n' "$B" "$_what" "$N" "$(show "$ctl" "$@")"
}
# step WHAT ARGS...: run hostdevctl ARGS; a failure is counted (the tour goes on) and returns non-zero.
step() {
    header "$@"; shift
    ran=$((ran + 1))
    "$ctl" --no-ask-password "$@"
    _rc=$?
    if [ $_rc -ne 0 ]; then
        printf '%s!! this step failed (exit %s)%s\n' "$B" "$_rc" "$N"
        failed=$((failed + 1)); failures="$failures${failures:+, }$(show hostdevctl "$@")"
    fi
    return $_rc
}
# refused CODE WHAT ARGS...: a step this host cannot do; shows hostdevd's refusal, which must have exit code CODE.
refused() {
    _want=$1; shift
    header "$@"; shift
    ran=$((ran + 1))
    "$ctl" --no-ask-password "$@"
    _rc=$?
    if [ $_rc -eq "$_want" ]; then
        printf '%s(refused as expected on this host: exit %s)%s\n' "$D" "$_rc" "$N"
        return 0
    fi
    printf '%s!! expected a refusal with exit %s, got exit %s%s\n' "$B" "$_want" "$_rc" "$N"
    failed=$((failed + 1)); failures="$failures${failures:+, }$(show hostdevctl "$@")"
    return 1
}
skip() { # STEPS, WHY
    skipped=$((skipped + 1))
    printf '\n%s-- skipped: %s%s\n   %s\n' "$B" "$1" "$N" "$2"
}
note() { printf '%s   %s%s\n' "$D" "$*" "$N"; }
# The first value of "KEY" in pretty-printed JSON on stdin (strings without their quotes).
json() { sed -n "s/^ *\"$1\": *\"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" | head -n 1; }
wait_for() { # TRIES(of 0.1 s) CMD...
    _n=$1; shift
    while [ "$_n" -gt 0 ]; do
        "$@" 2>/dev/null && return 0
        sleep 0.1 2>/dev/null || sleep 1
        _n=$((_n - 1))
    done
    return 1
}

printf '%sThe hostdev tour%s: the quick start with hostdevctl, a client of the D-Bus service org.hostdev.Passthrough1.\n' "$B" "$N"
printf 'Device: %s   vGPU profile: %s\n' "${dev:-(none: TOUR_DEVICE is empty)}" "${prof:-(none: TOUR_PROFILE is empty)}"

# ---- 1. what the host offers
if ! step "Is this host ready? IOMMU, vfio, hugepages, GPU mode, and what can be handed out (the first call starts hostdevd)" status; then
    printf '\nhostdevd does not answer on this bus, so the tour cannot go on.\n'
    exit 1
fi
"$ctl" --json status >"$tmp/status.json" 2>/dev/null
iommu=$(json iommu_enabled <"$tmp/status.json")
vfio=$(json vfio_available <"$tmp/status.json")
parents=$(json mdev_parent_count <"$tmp/status.json")
vendor_vfs=$(json vendor_vf_count <"$tmp/status.json")
mode=$(json gpu_mode <"$tmp/status.json")
[ "$iommu" = true ] || why_no_pt="the IOMMU is off (no IOMMU groups under /sys/kernel/iommu_groups), so no device can be handed to a VM"
[ "$iommu" = true ] && [ "$vfio" != true ] && why_no_pt="the vfio-pci driver is not available (modprobe vfio-pci), so no device can be bound for a VM"
why_no_pt=${why_no_pt:-}
why_no_vgpu=''
[ "${parents:-0}" = 0 ] && [ "${vendor_vfs:-0}" = 0 ] && why_no_vgpu="there are no mdev parents and no vendor-VFIO VFs (GPU mode '$mode': no vGPU or other mediated-device driver is loaded), so there is no profile to create a vGPU from"

gpus=$(json gpu_count <"$tmp/status.json")
if [ "${gpus:-0}" != 0 ]; then
    step "The passthrough candidates: the GPUs of this host (--all lists every PCI function)" available
    if [ -n "$dev" ] && ! "$ctl" --json available 2>/dev/null | grep -q "\"pci_address\": \"$dev\""; then
        step "$dev is not a GPU: every PCI function" available --all
    fi
else
    step "The passthrough candidates: this host has no GPU, so every PCI function" available --all
fi

# ---- 2. a device: register, instance with it, paths, delete
dev_ok=''
if [ -z "$dev" ]; then
    if [ -n "$why_no_pt" ]; then
        skip "register, create --device, instance, delete, unregister" "Not possible on this host: $why_no_pt."
    else
        skip "register, create --device, instance, delete, unregister" \
            "TOUR_DEVICE is empty: set it to a PCI address from the list above to pass that device through (it is really bound to vfio-pci, then given back)."
    fi
elif ! "$ctl" --json available --all 2>/dev/null | grep -q "\"pci_address\": \"$dev\""; then
    printf '\n%s!! TOUR_DEVICE=%s is not a PCI function of this host (see the list above)%s\n' "$B" "$dev" "$N"
    failed=$((failed + 1)); failures="$failures${failures:+, }TOUR_DEVICE=$dev"
elif [ "$iommu" != true ]; then
    printf '\n%sCannot register %s here:%s %s. This is what hostdevd answers:\n' "$B" "$dev" "$N" "$why_no_pt"
    refused 7 "Register a device under a name (refused: IommuUnavailable)" register "$DEV_NAME" "$dev"
    skip "devices, create --device, instance, delete, unregister" "nothing could be registered: $why_no_pt."
else
    if step "Register the device under a name: hostdev now manages it (nothing is bound yet)" register "$DEV_NAME" "$dev"; then
        registered=1
        step "The registered devices" devices
        if [ -n "$why_no_pt" ]; then
            printf '\n%sCannot create an instance with %s here:%s %s. This is what hostdevd answers:\n' "$B" "$DEV_NAME" "$N" "$why_no_pt"
            refused 7 "Create an instance with the device (refused: VfioUnavailable)" create "$VM" --device "$DEV_NAME"
            skip "instance, delete" "no instance could be created: $why_no_pt."
        elif step "Create an instance with the device: hostdevd binds it to vfio-pci (all or nothing) and attaches it" \
            create "$VM" --device "$DEV_NAME" --image debian-12.qcow2; then
            vm_created=1 dev_ok=1
            step "The device now: on vfio-pci, attached to $VM" device "$DEV_NAME"
            step "The instance: the device paths and the arguments for QEMU and Cloud Hypervisor" instance "$VM"
            step "Delete the instance: the device goes back to its host driver" delete "$VM" && vm_created=''
            step "The device after the delete: free again, off vfio-pci (back on its host driver, if it had one)" device "$DEV_NAME"
        fi
    fi
fi

# ---- 3. a vGPU: profiles, instance with a profile (watched by monitor), paths, delete
step "The vGPU profiles (mdev types) and their free slots" profiles
if [ -z "$prof" ]; then
    if [ -n "$why_no_vgpu" ]; then
        skip "create --gpu-profile, instance, delete (with monitor)" "Not possible on this host: $why_no_vgpu."
    else
        skip "create --gpu-profile, instance, delete (with monitor)" \
            "TOUR_PROFILE is empty: set it to a profile from the list above to create a vGPU (a real mdev, destroyed again)."
    fi
elif [ -n "$why_no_vgpu" ]; then
    printf '\n%sCannot create a vGPU here:%s %s. This is what hostdevd answers:\n' "$B" "$N" "$why_no_vgpu"
    refused 7 "Create an instance with a vGPU profile (refused: ProfileUnavailable)" create "$VGPU" --gpu-profile "$prof"
    skip "instance, delete (with monitor)" "no vGPU could be created: $why_no_vgpu."
else
    printf '\n%s== Watch the daemon meanwhile: its signals, one line each, in the background%s\n$ %s &\n' \
        "$B" "$N" "$(show "$ctl" monitor)"
    "$ctl" monitor >"$tmp/monitor.out" 2>"$tmp/monitor.err" &
    mon_pid=$!
    wait_for 50 grep -q Monitoring "$tmp/monitor.err" || note "(monitor did not say it was ready: $(cat "$tmp/monitor.err"))"
    if step "Create an instance with a vGPU: hostdevd creates an mdev of that profile with a fresh UUID on a free parent" \
        create "$VGPU" --gpu-profile "$prof" --image debian-12.qcow2; then
        vgpu_created=1 vgpu_made=1
        step "The instance: the mdev path and the arguments for QEMU and Cloud Hypervisor" instance "$VGPU"
        step "The profiles again: fewer free slots while the mdev exists" profiles
        step "Delete the instance: the mdev is destroyed, the slot is free again" delete "$VGPU" && vgpu_created=''
        wait_for 50 grep -q MdevDestroyed "$tmp/monitor.out"
    fi
    # monitor stops on SIGINT (Ctrl-C) or SIGTERM; TERM too in case this shell started it with SIGINT ignored.
    kill -INT "$mon_pid" 2>/dev/null
    wait_for 30 sh -c "! kill -0 $mon_pid" || kill -TERM "$mon_pid" 2>/dev/null
    wait "$mon_pid" 2>/dev/null
    mon_pid=''
    printf '\n%s== What monitor printed meanwhile%s\n' "$B" "$N"
    awk '{ if (length($0) > 240) print "   " substr($0, 1, 237) "..."; else print "   " $0 }' "$tmp/monitor.out"
    if [ -n "$vgpu_made" ] && ! { grep -q MdevCreated "$tmp/monitor.out" && grep -q MdevDestroyed "$tmp/monitor.out"; }; then
        printf '%s!! monitor did not show MdevCreated and MdevDestroyed%s\n' "$B" "$N"
        failed=$((failed + 1)); failures="$failures${failures:+, }hostdevctl monitor"
    fi
fi

# ---- 4. forget the device
if [ -n "$registered" ]; then
    step "Unregister the device: hostdev forgets it" unregister "$DEV_NAME" && registered=''
    step "The registered devices: none left from the tour" devices
fi

# ---- summary
printf '\n%s== Tour done:%s %s steps run, %s failed, %s part(s) skipped.\n' "$B" "$N" "$ran" "$failed" "$skipped"
[ -n "$why_no_pt" ] && printf '   Not possible on this host: passthrough — %s.\n' "$why_no_pt"
[ -n "$why_no_vgpu" ] && printf '   Not possible on this host: vGPU — %s.\n' "$why_no_vgpu"
[ -n "$dev_ok" ] && printf '   %s was really bound to vfio-pci and given back.\n' "$dev"
if [ "$failed" -ne 0 ]; then
    printf '%s   Failed: %s%s\n' "$B" "$failures" "$N"
    exit 1
fi
exit 0
