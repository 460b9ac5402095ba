# shellcheck shell=bash disable=SC2034 # what is set here is for the callers
# Sourced by tests/lab/boot.sh and tests/lab/systemd/boot.sh (bash): the machine both boot and the steps around
# QEMU.  Sets LAB (tests/lab) and REPO (the repository).  The caller sets LAB_TAG (its log prefix), OUT, CACHE
# (an absolute path), TIMEOUT and MEM, and may set LAB_PREPARE_ARGS (e.g. --kernel 6.12) and LAB_CURRENT (the
# cache file naming the kernel set, lib/flavour.sh); lab_prepare sets ABI, VER, KDIR and KVER, lab_stage STAGE.
#   lab_prepare SCRIPT [NOISE_RE]   runs a prepare script (log in OUT/prepare.log); stops with 77 or 125 on failure
#   lab_stage NAME                  STAGE = a temp dir, removed on exit with QEMU stopped
#   lab_accel PROBE_INITRD          ACCEL and ACCEL_ARGS
#   lab_machine_args ACCEL-ARGS...  q35 + intel-iommu, MEM, the kernel: one word a line (for mapfile)
#   LAB_DEVICES, LAB_APPEND         the lab's devices (edu, e1000e, pci-testdev, SR-IOV NVMe, the two NVMe PFs
#                                   that play GPUs for the vGPU simulator), the kernel command line
#   LAB_NVSIM_PFS                   the addresses of those two PFs in the guest
#   lab_devices_without NAME...     LAB_DEVICES without `-device NAME`, the others pinned to their usual slots
#   LAB_STATE_SLOT                  the root-bus slot of boot.sh's --state-disk (after every lab device)
#   lab_qemu ARGS...                one QEMU run with the serial console on OUT/console.log
#   lab_finish NOTE                 exits with the guest's rc, or writes the boot failure to OUT/rc and exits 125
LAB=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO=$(cd "$LAB/../.." && pwd)
# shellcheck source=tests/lab/lib/flavour.sh
. "$LAB/lib/flavour.sh"

log() { printf '%s: %s\n' "$LAB_TAG" "$*" >&2; }
fail_rc() { # CODE REASON
    echo "$2" >"$OUT/rc"
    log "$2"
    exit "$1"
}

# SCRIPT's SKIP line makes "lab-unavailable: …" (77); another failure "boot-failed: …" (125) with the last lines of
# its log that do not match NOISE_RE.
lab_prepare() { # SCRIPT [NOISE_RE]
    local prc=0 name
    name=${1##*/}
    "$1" ${LAB_PREPARE_ARGS[@]+"${LAB_PREPARE_ARGS[@]}"} "$CACHE" 2>"$OUT/prepare.log" || prc=$?
    cat "$OUT/prepare.log" >&2
    if ((prc == 77)); then
        fail_rc 77 "lab-unavailable: $(sed -n 's/^lab-[a-z]*: SKIP: //p' "$OUT/prepare.log" | tail -n1)"
    elif ((prc != 0)); then
        fail_rc 125 "boot-failed: $name failed (exit $prc): $(lab_log_tail "${2:-}" "$OUT/prepare.log")"
    fi
    read -r ABI VER KDIR <"$CACHE/${LAB_CURRENT:-current}"
    KVER=$ABI-amd64
}

lab_log_tail() { # NOISE_RE FILE: its last three lines (without those matching NOISE_RE, unless empty), on one
    if [[ -n $1 ]]; then grep -v "$1" "$2"; else cat "$2"; fi | tail -n3 | tr '\n' ' '
}

lab_stage() { # NAME
    STAGE=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    QPID=""
    trap lab_cleanup EXIT
    trap 'exit 143' TERM INT HUP
}
# shellcheck disable=SC2317 # invoked by trap
lab_cleanup() {
    # QPID is `timeout`, which forwards TERM to QEMU (and KILLs it 10 s later).
    if [[ -n $QPID ]]; then kill -TERM "$QPID" 2>/dev/null || true; fi
    rm -rf "$STAGE"
}

lab_machine_args() { # ACCEL-ARGS...
    printf '%s\n' -M q35,kernel-irqchip=split "$@" -device intel-iommu,intremap=on \
        -m "$MEM" -smp 2 -nodefaults -display none -no-reboot \
        -kernel "$KDIR/vmlinux"
}
# shellcheck disable=SC2054 # commas are QEMU's
LAB_DEVICES=(
    -device edu
    -device e1000e,netdev=n0 -netdev user,id=n0,restrict=on
    -device pci-testdev
    -device pcie-root-port,id=rp1,chassis=1
    -device nvme-subsys,id=subsys0
    -device nvme,serial=deadbeef,subsys=subsys0,bus=rp1,sriov_max_vfs=4,sriov_vq_flexible=8,sriov_vi_flexible=4,max_ioqpairs=10,msix_qsize=8
    # Two more SR-IOV NVMe PFs, each behind its own root port (buses 02 and 03), that the vGPU simulator
    # (nvsim/nvidia_vgpu_sim.c) drives as two GPUs; their VFs are 0000:0N:00.1-4.
    -device pcie-root-port,id=rp2,chassis=2,addr=0x5
    -device nvme-subsys,id=subsys1
    -device nvme,serial=nvsim0,subsys=subsys1,bus=rp2,sriov_max_vfs=4,sriov_vq_flexible=8,sriov_vi_flexible=4,max_ioqpairs=10,msix_qsize=8
    -device pcie-root-port,id=rp3,chassis=3,addr=0x6
    -device nvme-subsys,id=subsys2
    -device nvme,serial=nvsim1,subsys=subsys2,bus=rp3,sriov_max_vfs=4,sriov_vq_flexible=8,sriov_vi_flexible=4,max_ioqpairs=10,msix_qsize=8
)
LAB_NVSIM_PFS="0000:02:00.0 0000:03:00.0"
# The slots QEMU gives the root-bus devices of LAB_DEVICES that have no addr= when nothing comes before them
# (tests/lab/boot.sh): edu 00:01.0, e1000e 00:02.0, pci-testdev 00:03.0, rp1 00:04.0 (rp2, rp3: 0x5, 0x6).
LAB_SLOTS="edu=0x1 e1000e=0x2 pci-testdev=0x3 rp1=0x4"
LAB_STATE_SLOT=0x7
# A machine that lacks some of the lab's devices, as a host after a card was pulled: LAB_DEVICES, one word a
# line (for mapfile), without the `-device NAME,...` of each NAME, and every remaining device of LAB_SLOTS pinned
# with addr= to its usual slot, so that no PCI address moves into the gap (a test expects "missing", not another
# card at the address).
lab_devices_without() { # NAME...
    local i=0 n=${#LAB_DEVICES[@]} dev name key slot drop
    for key; do
        [[ " $LAB_SLOTS " == *" $key="* ]] || { echo "lab_devices_without: $key is not one of LAB_SLOTS" >&2; return 2; }
    done
    while ((i < n)); do
        if [[ ${LAB_DEVICES[i]} != -device ]]; then
            printf '%s\n' "${LAB_DEVICES[i]}"
            i=$((i + 1))
            continue
        fi
        dev=${LAB_DEVICES[i + 1]}
        name=${dev%%,*}
        i=$((i + 2))
        drop=0
        for key; do [[ $name == "$key" ]] && drop=1; done
        ((drop)) && continue
        key=$name
        [[ $dev =~ (^|,)id=([^,]+) ]] && [[ $name == pcie-root-port ]] && key=${BASH_REMATCH[2]}
        slot=$(tr ' ' '\n' <<<"$LAB_SLOTS" | sed -n "s/^$key=//p")
        [[ -n $slot && $dev != *addr=* && $dev != *bus=* ]] && dev+=",addr=$slot"
        printf '%s\n' -device "$dev"
    done
}
# nvidia_vgpu_sim.pfs: the guest's init passes MODULE.PARAM=VALUE words to insmod, as modprobe would.
# no_timer_check: under TCG on a loaded host the kernel's early check of the timer IRQ can miss its window and
# panic ("timer doesn't work through Interrupt-remapped IO-APIC"); it was seen once on a reboot boot.
LAB_APPEND="console=ttyS0 intel_iommu=on iommu=pt panic=-1 quiet no_timer_check nvidia_vgpu_sim.pfs=${LAB_NVSIM_PFS// /,}"

lab_probe_kvm() { # INITRD -> 0 when a trivial KVM boot prints the probe marker
    [[ -r /dev/kvm && -w /dev/kvm ]] || return 1
    local m plog=$STAGE/probe.log
    mapfile -t m < <(lab_machine_args -accel kvm -cpu host)
    timeout -k 5 20 qemu-system-x86_64 "${m[@]}" -initrd "$1" \
        -append "$LAB_APPEND lab.probe=1" -serial "file:$plog" </dev/null >/dev/null 2>&1 || true
    grep -q LAB-PROBE-OK "$plog" 2>/dev/null
}
# HOSTDEV_LAB_ACCEL, else the KVM probe's answer cached per host kernel in CACHE; when none is cached, probed
# (booting PROBE_INITRD, whose init answers lab.probe=1) and cached, or tcg when PROBE_INITRD is "".
lab_accel() { # PROBE_INITRD
    ACCEL=${HOSTDEV_LAB_ACCEL:-}
    if [[ -z $ACCEL ]]; then
        local key
        key=$CACHE/accel-$ABI-$(uname -r | tr -c 'A-Za-z0-9.\n-' _)
        if [[ -f $key ]]; then
            ACCEL=$(<"$key")
        elif [[ -n $1 ]]; then
            log "probing KVM (up to 20 s, once per host kernel)"
            if lab_probe_kvm "$1"; then ACCEL=kvm; else ACCEL=tcg; fi
            echo "$ACCEL" >"$key"
        else
            ACCEL=tcg
        fi
    fi
    case $ACCEL in
    kvm) ACCEL_ARGS=(-accel kvm -cpu host) ;;
    tcg) ACCEL_ARGS=(-accel tcg -cpu max) ;;
    *) echo "boot.sh: HOSTDEV_LAB_ACCEL must be tcg or kvm" >&2; exit 2 ;;
    esac
}

# Sets qrc (timeout's exit), secs (also in OUT/secs), first (seconds to the first LAB-TEST line, with
# LAB_WATCH_FIRST=1; else empty) and rcline (the guest's last "rc=N" line, or empty).
lab_qemu() { # ARGS...
    local t0 t1
    t0=$(date +%s.%N)
    set +e
    timeout -k 10 "$TIMEOUT" qemu-system-x86_64 "$@" -serial "file:$OUT/console.log" \
        </dev/null >"$OUT/qemu.log" 2>&1 &
    QPID=$!
    first=""
    if ((${LAB_WATCH_FIRST:-0})); then # the console file grows while QEMU runs
        while kill -0 "$QPID" 2>/dev/null; do
            if [[ -z $first ]] && grep -q '^=== LAB-TEST BEGIN' "$OUT/console.log" 2>/dev/null; then
                first=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
            fi
            sleep 0.2
        done
    fi
    wait "$QPID"
    qrc=$?
    QPID=""
    set -e
    t1=$(date +%s.%N)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    echo "$secs" >"$OUT/secs"
    touch "$OUT/console.log"
    rcline=$(tr -d '\r' <"$OUT/console.log" | grep -E '^rc=[0-9]+$' | tail -n1 || true)
}

lab_finish() { # NOTE: goes into the log line of a guest rc ("" for none)
    if [[ -n $rcline ]]; then
        local rc=${rcline#rc=}
        echo "$rc" >"$OUT/rc"
        log "guest rc=$rc after $secs s (${1}console: $OUT/console.log)"
        exit "$rc"
    fi
    local reason
    if ((qrc == 137 || qrc == 124)); then
        reason="boot-failed: timeout after $TIMEOUT s"
    elif grep -q 'Kernel panic' "$OUT/console.log"; then
        reason="boot-failed: kernel panic: $(tr -d '\r' <"$OUT/console.log" | grep -m1 'Kernel panic')"
    else
        reason="boot-failed: qemu exited $qrc without an rc line: $(tail -n3 "$OUT/qemu.log" | tr '\n' ' ')"
    fi
    echo "$reason" >"$OUT/rc"
    log "$reason after $secs s"
    exit 125
}
