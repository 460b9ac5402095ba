#!/bin/bash
# Boot ONE systemd lab VM: the Debian root image of prepare-root.sh (booted
# snapshot=on, never modified) with a DESTDIR tree (what `meson install
# --destdir` makes) unpacked over it, and a test script run by the unit
# hostdev-labtest.service once multi-user.target is up.  Same machine and
# devices as tests/lab/boot.sh (q35 + intel-iommu, edu, e1000e, pci-testdev,
# SR-IOV NVMe; mtty loaded by systemd-modules-load).
#
# Usage: tests/lab/systemd/boot.sh --destdir DIR --test SCRIPT --out OUT
#                                  [--cache DIR] [--timeout SECONDS]
#
# In the guest: SCRIPT is /lab/run (runs as root under systemd, cwd /lab,
# stdout+stderr on ttyS0), /lab/lib.sh is tests/lab/guest/lib.sh (lab_test
# prints the === LAB-TEST BEGIN/END markers).  When it exits the unit prints
# rc=$EXIT_STATUS and powers off.  A boot that ends in a soft lockup (seen
# about once in 18 boots under TCG) is retried once.
#
# Writes OUT/console.log, OUT/rc (the guest's rc, or "boot-failed: REASON" /
# "lab-unavailable: REASON"), OUT/qemu.log, OUT/secs, OUT/boot-secs (QEMU
# start to the first LAB-TEST line).
# Exit: the guest's rc; 77 lab unavailable; 125 boot failed.
# Env: HOSTDEV_LAB_ACCEL=tcg|kvm (default: the busybox lab's cached KVM probe, else tcg).
set -euo pipefail
umask 022

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB=$(cd "$HERE/.." && pwd)
REPO=$(cd "$LAB/../.." && pwd)

usage() { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

DESTDIR="" TEST="" OUT="" CACHE="$REPO/.cache/lab" TIMEOUT=600
while (($#)); do
    case $1 in
    --destdir) DESTDIR=$2; shift 2 ;;
    --test) TEST=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --cache) CACHE=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    -h | --help) usage ;;
    *) echo "boot.sh: unknown argument $1" >&2; usage ;;
    esac
done
[[ -n $DESTDIR && -n $TEST && -n $OUT ]] || usage
[[ -d $DESTDIR ]] || { echo "boot.sh: no destdir $DESTDIR" >&2; exit 2; }
[[ -f $TEST ]] || { echo "boot.sh: no test script $TEST" >&2; exit 2; }
mkdir -p "$OUT" "$CACHE"
OUT=$(cd "$OUT" && pwd)
CACHE=$(cd "$CACHE" && pwd)
rm -f "$OUT"/{rc,console.log,qemu.log,secs,boot-secs,prepare.log}

log() { printf 'lab-sd-boot: %s\n' "$*" >&2; }
fail_rc() { # CODE REASON
    echo "$2" >"$OUT/rc"
    log "$2"
    exit "$1"
}

prc=0
"$HERE/prepare-root.sh" "$CACHE" 2>"$OUT/prepare.log" || prc=$?
cat "$OUT/prepare.log" >&2
if ((prc == 77)); then
    fail_rc 77 "lab-unavailable: $(sed -n 's/^lab-[a-z]*: SKIP: //p' "$OUT/prepare.log" | tail -n1)"
elif ((prc != 0)); then
    fail_rc 125 "boot-failed: prepare-root.sh failed (exit $prc): $(tail -n3 "$OUT/prepare.log" | tr '\n' ' ')"
fi
read -r ABI _ KDIR <"$CACHE/current"
KVER=$ABI-amd64
SD=$CACHE/systemd

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/hostdev-lab-sd.XXXXXX")
QPID=""
# shellcheck disable=SC2317 # invoked by trap
cleanup() {
    if [[ -n $QPID ]]; then kill -TERM "$QPID" 2>/dev/null || true; fi
    rm -rf "$STAGE"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP

# ---- initramfs: busybox, the boot modules, init ---------------------------------
I=$STAGE/initrd
mkdir -p "$I"/{usr/bin,usr/lib/modules,proc,sys,dev,newroot,lab}
for d in bin sbin; do ln -s usr/bin "$I/$d"; done
ln -s usr/bin "$I/usr/sbin"
ln -s usr/lib "$I/lib"
cp "$KDIR/busybox" "$I/usr/bin/busybox"
while read -r a; do
    a=/usr/bin/${a##*/}
    [[ $a == */busybox || -e $I$a || -L $I$a ]] || ln -s busybox "$I$a"
done < <("$KDIR/busybox" --list-full)
cp -a "$SD/boot-mods" "$I/usr/lib/modules/$KVER"
cp "$SD/bootload.list" "$I/lab/bootload.list"
install -m 755 "$HERE/guest/init" "$I/init"
(cd "$I" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -1 >"$STAGE/initrd.cpio"

# ---- second disk: DESTDIR + the test unit, as a plain tar -------------------------
T=$STAGE/tree
mkdir -p "$T"
cp -a "$DESTDIR/." "$T/"
# The root is merged-usr: a top-level bin/ or lib/ in the tar would replace its symlinks.
for d in bin sbin lib lib64; do
    if [[ -d $T/$d && ! -L $T/$d ]]; then
        mkdir -p "$T/usr/$d"
        cp -a "$T/$d/." "$T/usr/$d/"
        rm -rf "${T:?}/$d"
    fi
done
mkdir -p "$T/lab" "$T/etc/systemd/system/multi-user.target.wants"
install -m 755 "$TEST" "$T/lab/run"
install -m 644 "$LAB/guest/lib.sh" "$T/lab/lib.sh"
install -m 644 "$HERE/guest/hostdev-labtest.service" "$T/etc/systemd/system/hostdev-labtest.service"
ln -s ../hostdev-labtest.service "$T/etc/systemd/system/multi-user.target.wants/hostdev-labtest.service"
chmod 755 "$T"
# Name the top-level entries (not "."), so the root directory's own mode is left alone.
mapfile -t top < <(cd "$T" && find . -mindepth 1 -maxdepth 1 -printf '%P\n' | LC_ALL=C sort)
tar -C "$T" --owner=0 --group=0 --numeric-owner -cf "$STAGE/destdir.tar" "${top[@]}"

# ---- machine (as tests/lab/boot.sh) ------------------------------------------------
ACCEL=${HOSTDEV_LAB_ACCEL:-}
if [[ -z $ACCEL ]]; then
    key=$CACHE/accel-$ABI-$(uname -r | tr -c 'A-Za-z0-9.\n-' _)
    ACCEL=tcg
    [[ -f $key ]] && ACCEL=$(<"$key")
fi
case $ACCEL in
kvm) ACCEL_ARGS=(-accel kvm -cpu host) ;;
tcg) ACCEL_ARGS=(-accel tcg -cpu max) ;;
*) echo "boot.sh: HOSTDEV_LAB_ACCEL must be tcg or kvm" >&2; exit 2 ;;
esac
APPEND="console=ttyS0 intel_iommu=on iommu=pt panic=-1 quiet softlockup_panic=1 systemd.getty_auto=0"
# shellcheck disable=SC2054 # commas are QEMU's
QARGS=(
    -M q35,kernel-irqchip=split "${ACCEL_ARGS[@]}" -device intel-iommu,intremap=on
    -m 1024 -smp 2 -nodefaults -display none -no-reboot
    -kernel "$KDIR/vmlinux" -initrd "$STAGE/initrd.cpio" -append "$APPEND"
    -drive "file=$SD/root.img,if=virtio,format=raw,snapshot=on"
    -drive "file=$STAGE/destdir.tar,if=virtio,format=raw,readonly=on"
    -device edu
    -device e1000e,netdev=n0 -netdev user,id=n0,restrict=on
    -device pci-testdev
    -device pcie-root-port,id=rp1,chassis=1
    -device nvme-subsys,id=subsys0
    -device nvme,serial=deadbeef,subsys=subsys0,bus=rp1,sriov_max_vfs=4,sriov_vq_flexible=8,sriov_vi_flexible=4,max_ioqpairs=10,msix_qsize=8
)
ird=$(du -k "$STAGE/initrd.cpio" | cut -f1)
tsz=$(du -k "$STAGE/destdir.tar" | cut -f1)
log "kernel $KVER, accel $ACCEL, initramfs ${ird} KB, destdir tar ${tsz} KB, timeout ${TIMEOUT} s"

attempt=0
while :; do
    attempt=$((attempt + 1))
    t0=$(date +%s.%N)
    rm -f "$OUT/console.log"
    set +e
    timeout -k 10 "$TIMEOUT" qemu-system-x86_64 "${QARGS[@]}" -serial "file:$OUT/console.log" \
        </dev/null >"$OUT/qemu.log" 2>&1 &
    QPID=$!
    # Time to the first test marker (the console file grows while QEMU runs).
    first=""
    while kill -0 "$QPID" 2>/dev/null; do
        if [[ -z $first ]] && grep -q '^=== LAB-TEST BEGIN' "$OUT/console.log" 2>/dev/null; then
            first=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
        fi
        sleep 0.2
    done
    wait "$QPID"
    qrc=$?
    QPID=""
    set -e
    t1=$(date +%s.%N)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    echo "$secs" >"$OUT/secs"
    echo "${first:-?}" >"$OUT/boot-secs"
    touch "$OUT/console.log"
    rcline=$(tr -d '\r' <"$OUT/console.log" | grep -E '^rc=[0-9]+$' | tail -n1 || true)
    [[ -n $rcline ]] && break
    if ((attempt == 1)) && grep -q 'soft lockup' "$OUT/console.log"; then
        log "soft lockup after $secs s: retrying once"
        cp "$OUT/console.log" "$OUT/console.lockup.log"
        continue
    fi
    break
done

if [[ -n $rcline ]]; then
    rc=${rcline#rc=}
    echo "$rc" >"$OUT/rc"
    log "guest rc=$rc after $secs s (first test at ${first:-?} s; console: $OUT/console.log)"
    exit "$rc"
fi
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
