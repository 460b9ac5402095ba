#!/bin/sh
# Boot a second-level guest inside the lab VM (only with boot.sh --with-qemu).
# Installed at /lab/nested/nested-boot.sh; runs under busybox sh.
#
# Usage: nested-boot.sh [QEMU_ARGS...]
#   e.g. nested-boot.sh -device vfio-pci,host=0000:00:03.0
#        nested-boot.sh -device vfio-pci,sysfsdev=/sys/bus/mdev/devices/<uuid>
# Boots the lab kernel (TCG) with a busybox init that prints one line per PCI
# function, "NESTED-PCI <addr> <vendor>:<device>" (e.g. "... 1234:11e8"), then
# "NESTED-DONE".  Prints those lines on stdout; QEMU's own output goes to stderr.
# Exit: 0 when NESTED-DONE was seen, else QEMU's status (124/137 = timeout) or 1.
# Env: NESTED_TIMEOUT (s, default 600), NESTED_MEM (MB, default 256),
#      NESTED_LOG (serial log file, default /tmp/nested-console.<pid>.log),
#      NESTED_INITRD (default /lab/nested/initrd.cpio; /lab/nested/root is its
#      busybox tree, to build another with `cd DIR && find . | cpio -o -H newc`).
set -eu

dir=/lab/nested
timeout=${NESTED_TIMEOUT:-600}
mem=${NESTED_MEM:-256}
log=${NESTED_LOG:-/tmp/nested-console.$$.log}
initrd=${NESTED_INITRD:-$dir/initrd.cpio}

t0=$(cut -d' ' -f1 /proc/uptime)
qrc=0
timeout -s KILL "$timeout" qemu-system-x86_64 \
    -M q35 -accel tcg -cpu max -m "$mem" -smp 1 \
    -nodefaults -display none -no-reboot -net none \
    -kernel "$dir/vmlinux" -initrd "$initrd" \
    -append "console=ttyS0 panic=-1 quiet" \
    -serial "file:$log" \
    "$@" </dev/null >&2 || qrc=$?
t1=$(cut -d' ' -f1 /proc/uptime)
tr -d '\r' <"$log" | grep -E '^NESTED-' || true
echo "nested-boot: qemu rc=$qrc in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s" >&2
if tr -d '\r' <"$log" | grep -q '^NESTED-DONE'; then
    exit 0
fi
echo "nested-boot: no NESTED-DONE; console tail:" >&2
tail -n 20 "$log" >&2 || true
[ "$qrc" -ne 0 ] && exit "$qrc"
exit 1
