#!/bin/bash
# Boot ONE lab VM (Debian kernel, q35 + intel-iommu, edu, e1000e, pci-testdev,
# SR-IOV NVMe, mtty mdev parent, two NVMe PFs on the vGPU simulator) that runs
# a payload and powers off.
#
# Usage: tests/lab/boot.sh --payload DIR --out DIR [--cache DIR] [--kernel 6.1|6.12]
#                          [--timeout SECONDS] [--with-qemu] [--qemu-arg ARG]...
#                          [--append WORDS] [--drop-device NAME]... [--state-disk FILE]
#   --kernel: the kernel flavour (default 6.1, Debian 12's; 6.12 is bookworm-backports'), see prepare.sh.
#   --append: more words for the kernel command line (e.g. lab.reboot=2, lab.nomod=mtty: guest/init).
#   --drop-device: boot without that lab device (edu, e1000e, pci-testdev, rp1: lib/machine.sh's
#     LAB_SLOTS), the other devices pinned to their usual slots, so no PCI address moves.
#   --state-disk: FILE (a raw image, kept across boots) as a virtio disk, /dev/vda in the guest, at a
#     fixed slot after all lab devices (LAB_STATE_SLOT).
#
# Payload contract: DIR is copied to /payload in the guest; /payload/run (a
# busybox sh script) is run with cwd /payload, stdout+stderr on the serial
# console.  Symlinks in DIR are dereferenced; every ELF under DIR/bin gets its
# ldd libraries (and the loader) copied in at the same paths.  /lab/lib.sh
# has helpers (lab_test ...); env LAB_KVER, LAB_KERNEL, LAB_WITH_QEMU,
# LAB_NESTED_BOOT, LAB_NVSIM_PFS.  /lab/bin/holdvf and /lab/nvsim/ (the
# simulator's ABI test and fixtures) are there for every payload.
# With --with-qemu (outer VM 2048 MB) /lab/nested/nested-boot.sh boots a
# second-level guest (see tests/lab/nested/nested-boot.sh).
#
# Writes OUT/console.log (full serial), OUT/rc (the guest's "rc=N" value, or
# "boot-failed: REASON"), OUT/qemu.log, OUT/secs.
# Exit: the guest's rc when it printed one; 77 when the lab is unavailable on
# this machine; 125 when the boot failed (timeout, panic, no rc line).
# Env: HOSTDEV_LAB_ACCEL=tcg|kvm overrides the accelerator probe.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_TAG=lab-boot
# shellcheck source=tests/lab/lib/machine.sh
. "$HERE/lib/machine.sh"

usage() { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

PAYLOAD="" OUT="" CACHE="$REPO/.cache/lab" TIMEOUT=600 WITH_QEMU=0 KERNEL=$LAB_DEFAULT_KERNEL
EXTRA=() DROP=() APPEND_MORE="" STATE_DISK=""
while (($#)); do
    case $1 in
    --payload) PAYLOAD=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --cache) CACHE=$2; shift 2 ;;
    --kernel) KERNEL=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --with-qemu) WITH_QEMU=1; shift ;;
    --qemu-arg) EXTRA+=("$2"); shift 2 ;;
    --append) APPEND_MORE+=" $2"; shift 2 ;;
    --drop-device) DROP+=("$2"); shift 2 ;;
    --state-disk) STATE_DISK=$2; shift 2 ;;
    -h | --help) usage ;;
    *) echo "boot.sh: unknown argument $1" >&2; usage ;;
    esac
done
[[ -n $PAYLOAD && -n $OUT ]] || usage
lab_flavour "$KERNEL" || usage
if ((${#DROP[@]})); then lab_devices_without "${DROP[@]}" >/dev/null || usage; fi
if [[ -n $STATE_DISK ]]; then
    [[ -f $STATE_DISK ]] || { echo "boot.sh: no state disk $STATE_DISK" >&2; exit 2; }
    STATE_DISK=$(cd "$(dirname "$STATE_DISK")" && pwd)/${STATE_DISK##*/}
fi
LAB_PREPARE_ARGS=(--kernel "$KERNEL")
[[ -d $PAYLOAD ]] || { echo "boot.sh: no payload dir $PAYLOAD" >&2; exit 2; }
PAYLOAD=$(cd "$PAYLOAD" && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
rm -f "$OUT/rc" "$OUT/console.log" "$OUT/qemu.log" "$OUT/secs" "$OUT/prepare.log"

lab_prepare "$HERE/prepare.sh" '^lab-prepare: [a-z]'
lab_stage hostdev-lab

# ---- initramfs --------------------------------------------------------------
new_root() { # DIR: skeleton with the host's /usr-merge layout
    local r=$1 d
    mkdir -p "$r"/{usr/bin,usr/sbin,usr/lib,usr/lib64,etc,proc,sys,dev,tmp,run,root,mnt}
    for d in bin sbin lib lib64; do
        if [[ -L /$d ]]; then
            ln -sfn "$(readlink "/$d")" "$r/$d"
        else
            mkdir -p "$r/$d"
        fi
    done
}
put() { # ROOT HOSTPATH [DESTPATH]: copy a host file (dereferenced) into ROOT
    local r=$1 src=$2 dst=${3:-$2}
    [[ -e $r$dst ]] && return 0
    mkdir -p "$(dirname "$r$dst")"
    cp -L "$src" "$r$dst"
}
is_elf() { [[ -f $1 && $(head -c4 "$1" | od -An -tx1 | tr -d ' \n') == 7f454c46 ]]; }
put_libs() { # ROOT ELF...: copy ldd libraries and the loader at the same paths
    local r=$1 f l
    shift
    for f; do
        is_elf "$f" || continue
        while read -r l; do
            [[ -e $l ]] && put "$r" "$l"
        done < <(ldd "$f" 2>/dev/null | grep -oE '/[^ ()]+' || true)
    done
}
put_busybox() { # ROOT
    local r=$1 a
    put "$r" "$KDIR/busybox" /usr/bin/busybox
    while read -r a; do
        [[ $a == */busybox || -z $a ]] && continue
        [[ -e $r/$a || -L $r/$a ]] && continue
        mkdir -p "$(dirname "$r/$a")"
        ln -s /usr/bin/busybox "$r/$a"
    done < <("$KDIR/busybox" --list-full)
}
mkcpio() { # DIR OUTFILE
    (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$2"
}

# Base: busybox, modules, mdevctl, hwdb, init.
B=$STAGE/base
new_root "$B"
put_busybox "$B"
cp -a "$KDIR/mods/lib/modules" "$B/usr/lib/"
mkdir -p "$B/lab"
cp "$KDIR/modload.list" "$B/lab/modload.list"
cp "$HERE/guest/init" "$B/init"
cp "$HERE/guest/lib.sh" "$B/lab/lib.sh"
chmod 755 "$B/init"
mkdir -p "$B/lab/bin" "$B/lab/nvsim"
cp "$KDIR/nvsim/holdvf" "$B/lab/bin/holdvf"
cp "$HERE/nvsim/abi-test.sh" "$B/lab/nvsim/"
cp -r "$HERE/nvsim/fixtures" "$B/lab/nvsim/"
cp -a "$KDIR/mdevctl-root/usr/." "$B/usr/"
cp -a "$KDIR/mdevctl-root/etc/." "$B/etc/"
put_libs "$B" "$KDIR/mdevctl-root/usr/bin/mdevctl"
[[ -f /usr/lib/udev/hwdb.bin ]] && put "$B" /usr/lib/udev/hwdb.bin
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$B/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$B/etc/group"
printf '127.0.0.1 localhost lab\n' >"$B/etc/hosts"
{
    echo "export LAB_KVER=$KVER"
    echo "export LAB_KERNEL=$KERNEL"
    echo "export LAB_NVSIM_PFS=\"$LAB_NVSIM_PFS\""
    echo "export LAB_WITH_QEMU=$WITH_QEMU"
    if ((WITH_QEMU)); then echo "export LAB_NESTED_BOOT=/lab/nested/nested-boot.sh"; fi
} >"$B/lab/env"
mkcpio "$B" "$STAGE/base.cpio"

# Payload (+ its libraries).
P=$STAGE/payload
new_root "$P"
cp -rL --preserve=mode,timestamps "$PAYLOAD" "$P/payload" # symlinks dereferenced
if [[ -d $PAYLOAD/bin ]]; then
    while IFS= read -r -d '' f; do
        put_libs "$P" "$f"
    done < <(find -L "$PAYLOAD/bin" -type f -print0)
fi
# The base already has the merged-usr symlinks; don't let them clash.
for d in bin sbin lib lib64; do [[ -L $P/$d ]] && rm "$P/$d"; done
mkcpio "$P" "$STAGE/payload.cpio"

# Nested QEMU (optional).
if ((WITH_QEMU)); then
    Q=$STAGE/qemu
    new_root "$Q"
    qbin=$(command -v qemu-system-x86_64)
    put "$Q" "$qbin" /usr/bin/qemu-system-x86_64
    put_libs "$Q" "$qbin"
    tcg=/usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so
    if [[ -e $tcg ]]; then
        put "$Q" "$tcg"
        put_libs "$Q" "$tcg"
    fi
    for f in kvmvapic.bin linuxboot.bin linuxboot_dma.bin multiboot.bin multiboot_dma.bin pvh.bin; do
        [[ -e /usr/share/qemu/$f ]] && put "$Q" "/usr/share/qemu/$f"
    done
    for f in bios-256k.bin bios.bin; do
        [[ -e /usr/share/seabios/$f ]] && put "$Q" "/usr/share/seabios/$f"
    done
    mkdir -p "$Q/lab/nested"
    cp "$KDIR/vmlinux" "$Q/lab/nested/vmlinux"
    cp "$HERE/nested/nested-boot.sh" "$Q/lab/nested/nested-boot.sh"
    chmod 755 "$Q/lab/nested/nested-boot.sh"
    # Second-level initramfs: busybox + the nested init.
    N=$STAGE/nested-root
    new_root "$N"
    put_busybox "$N"
    cp "$HERE/nested/init" "$N/init"
    chmod 755 "$N/init"
    cp -a "$N" "$Q/lab/nested/root" # the builder input, for payloads that want their own
    mkcpio "$N" "$Q/lab/nested/initrd.cpio"
    for d in bin sbin lib lib64; do [[ -L $Q/$d ]] && rm "$Q/$d"; done
    mkcpio "$Q" "$STAGE/qemu.cpio"
fi

cat "$STAGE"/base.cpio "$STAGE"/payload.cpio >"$STAGE/initrd.cpio"
((WITH_QEMU)) && cat "$STAGE/qemu.cpio" >>"$STAGE/initrd.cpio"

# ---- machine ----------------------------------------------------------------
MEM=1024
((WITH_QEMU)) && MEM=2048
lab_accel "$STAGE/base.cpio"
mapfile -t MARGS < <(lab_machine_args "${ACCEL_ARGS[@]}")
DEVICES=("${LAB_DEVICES[@]}")
if ((${#DROP[@]})); then mapfile -t DEVICES < <(lab_devices_without "${DROP[@]}"); fi
if [[ -n $STATE_DISK ]]; then
    # shellcheck disable=SC2054 # commas are QEMU's
    DEVICES+=(-drive "file=$STATE_DISK,format=raw,if=none,id=labstate,cache=writeback"
        -device "virtio-blk-pci,drive=labstate,addr=$LAB_STATE_SLOT")
fi

size=$(du -m "$STAGE/initrd.cpio" | cut -f1)
log "kernel $KVER ($VER), accel $ACCEL, ${MEM} MB, initramfs ${size} MB, timeout ${TIMEOUT} s${DROP[*]:+, without ${DROP[*]}}${APPEND_MORE:+, kernel line +$APPEND_MORE}"
lab_qemu "${MARGS[@]}" -initrd "$STAGE/initrd.cpio" -append "$LAB_APPEND$APPEND_MORE" \
    "${DEVICES[@]}" ${EXTRA[@]+"${EXTRA[@]}"}
lab_finish ""
