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
#                                  [--persistent-root FILE] [--append WORDS]
#                                  [--kernel 6.1|6.12]
#   --kernel: the lab's kernel flavour (../lib/flavour.sh; default 6.1) and its root image
#     (prepare-root.sh --kernel: CACHE/systemd, CACHE/systemd-6.12).
#   --persistent-root: boot FILE, a writable copy of the root image, instead of
#     the image itself snapshot=on; FILE is made (a sparse copy) when it does
#     not exist, and what a boot writes is still there at the next boot of FILE.
#   --append: more words for the kernel command line (lab.boot=2: tests.sh).
#
# In the guest: SCRIPT is /lab/run (runs as root under systemd, cwd /lab,
# stdout+stderr on ttyS0), /lab/lib.sh is tests/lab/guest/lib.sh (lab_test
# prints the === LAB-TEST BEGIN/END markers); /lab/lab-vm.service and
# /lab/lab-vm-start are there for the reboot test, /lab/nested/initrd.cpio (the
# nested guest's busybox initramfs, ../nested/init) for sd-unprivileged-run.  When it exits the unit prints
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
LAB_TAG=lab-sd-boot
# shellcheck source=tests/lab/lib/machine.sh
. "$HERE/../lib/machine.sh"
# shellcheck source=tests/lab/lib/flavour.sh
. "$HERE/../lib/flavour.sh"

usage() { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

DESTDIR="" TEST="" OUT="" CACHE="$REPO/.cache/lab" TIMEOUT=600 ROOT_COPY="" APPEND_MORE="" KERNEL=$LAB_DEFAULT_KERNEL
while (($#)); do
    case $1 in
    --destdir) DESTDIR=$2; shift 2 ;;
    --test) TEST=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --cache) CACHE=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --persistent-root) ROOT_COPY=$2; shift 2 ;;
    --append) APPEND_MORE+=" $2"; shift 2 ;;
    --kernel) KERNEL=$2; shift 2 ;;
    -h | --help) usage ;;
    *) echo "boot.sh: unknown argument $1" >&2; usage ;;
    esac
done
[[ -n $DESTDIR && -n $TEST && -n $OUT ]] || usage
lab_flavour "$KERNEL" || usage
LAB_PREPARE_ARGS=(--kernel "$KERNEL")
[[ -d $DESTDIR ]] || { echo "boot.sh: no destdir $DESTDIR" >&2; exit 2; }
[[ -f $TEST ]] || { echo "boot.sh: no test script $TEST" >&2; exit 2; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
rm -f "$OUT"/{rc,console.log,qemu.log,secs,boot-secs,prepare.log}
if [[ -n $ROOT_COPY ]]; then
    mkdir -p "$(dirname "$ROOT_COPY")"
    ROOT_COPY=$(cd "$(dirname "$ROOT_COPY")" && pwd)/${ROOT_COPY##*/}
fi

lab_prepare "$HERE/prepare-root.sh"
SD=$CACHE/systemd$LAB_SUFFIX
lab_stage hostdev-lab-sd

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
install -m 644 "$HERE/guest/lab-vm.service" "$T/lab/lab-vm.service"
install -m 755 "$HERE/guest/lab-vm-start" "$T/lab/lab-vm-start"
ln -s ../hostdev-labtest.service "$T/etc/systemd/system/multi-user.target.wants/hostdev-labtest.service"
# The nested (L2) guest of sd-unprivileged-run: busybox and ../nested/init, as the busybox lab's --with-qemu has
# it (its kernel, /lab/nested/vmlinux, is in the root image: prepare-root.sh).
N=$STAGE/nested-root
mkdir -p "$N"/{usr/bin,proc,sys,dev} "$T/lab/nested"
for d in bin sbin; do ln -s usr/bin "$N/$d"; done
ln -s bin "$N/usr/sbin"
cp "$KDIR/busybox" "$N/usr/bin/busybox"
while read -r a; do
    a=/usr/bin/${a##*/}
    [[ $a == */busybox || -e $N$a || -L $N$a ]] || ln -s busybox "$N$a"
done < <("$KDIR/busybox" --list-full)
install -m 755 "$LAB/nested/init" "$N/init"
(cd "$N" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$T/lab/nested/initrd.cpio"
chmod 755 "$T"
# Name the top-level entries (not "."), so the root directory's own mode is left alone.
mapfile -t top < <(cd "$T" && find . -mindepth 1 -maxdepth 1 -printf '%P\n' | LC_ALL=C sort)
tar -C "$T" --owner=0 --group=0 --numeric-owner -cf "$STAGE/destdir.tar" "${top[@]}"

# ---- machine (that of tests/lab/boot.sh) -------------------------------------------
lab_accel "" # no probe: tcg unless the busybox lab cached KVM
MEM=1024
mapfile -t QARGS < <(lab_machine_args "${ACCEL_ARGS[@]}")
fresh=0
if [[ -n $ROOT_COPY ]]; then
    if [[ ! -f $ROOT_COPY ]]; then
        cp --sparse=always "$SD/root.img" "$ROOT_COPY"
        fresh=1
    fi
    root_drive="file=$ROOT_COPY,if=virtio,format=raw"
else
    root_drive="file=$SD/root.img,if=virtio,format=raw,snapshot=on"
fi
QARGS+=(
    -initrd "$STAGE/initrd.cpio" -append "$LAB_APPEND softlockup_panic=1 systemd.getty_auto=0$APPEND_MORE"
    -drive "$root_drive"
    -drive "file=$STAGE/destdir.tar,if=virtio,format=raw,readonly=on"
    "${LAB_DEVICES[@]}"
)
ird=$(du -k "$STAGE/initrd.cpio" | cut -f1)
tsz=$(du -k "$STAGE/destdir.tar" | cut -f1)
log "kernel $KVER, accel $ACCEL, initramfs ${ird} KB, destdir tar ${tsz} KB, timeout ${TIMEOUT} s${ROOT_COPY:+, root $ROOT_COPY ($( ((fresh)) && echo fresh || echo kept))}${APPEND_MORE:+, kernel line +$APPEND_MORE}"

attempt=0
LAB_WATCH_FIRST=1 # time to the first test marker: OUT/boot-secs
while :; do
    attempt=$((attempt + 1))
    rm -f "$OUT/console.log"
    lab_qemu "${QARGS[@]}"
    echo "${first:-?}" >"$OUT/boot-secs"
    [[ -n $rcline ]] && break
    if ((attempt == 1)) && grep -q 'soft lockup' "$OUT/console.log"; then
        log "soft lockup after $secs s: retrying once"
        cp "$OUT/console.log" "$OUT/console.lockup.log"
        # A fresh copy is made again: the boot that locked up may have written to it.
        if ((fresh)); then cp --sparse=always "$SD/root.img" "$ROOT_COPY"; fi
        continue
    fi
    break
done
lab_finish "first test at ${first:-?} s; "
