#!/usr/bin/env bash
# The README tour inside the lab VM, where devices are really bound and vGPU (mtty) instances really created:
# boots the VM with the real hostdevd bus-activated on a system bus there and runs scripts/tour.sh against the
# edu device and the mtty-2 profile. Used by `./demo.sh --lab`.
# Usage: tests/lab/tour.sh BUILD_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$(cd "${1:?usage: tour.sh BUILD_DIR}" && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/hostdev-tour.XXXXXX")
trap 'rm -rf "$work"' EXIT
payload=$work/payload
mkdir -p "$payload/bin"
cp "$build/src/cli/hostdevctl" "$build/src/daemon/hostdevd" "$(command -v dbus-daemon)" "$(command -v busctl)" \
  "$payload/bin/"
cp "$here/payload/bus.sh" "$repo/scripts/tour.sh" "$payload/"
printf 'export NO_COLOR=%s\n' "${NO_COLOR:-}" >"$payload/env.sh"  # the VM console is a terminal
cat >"$payload/run" <<'EOT'
#!/bin/sh
. /payload/env.sh
. /lab/lib.sh
. /payload/bus.sh
export PATH="/payload/bin:$PATH"
lab_bus_start
edu=""
for d in /sys/bus/pci/devices/*; do
    if [ "$(cat "$d/vendor")" = 0x1234 ] && [ "$(cat "$d/device")" = 0x11e8 ]; then edu=${d##*/}; fi
done
echo "=== TOUR BEGIN"
TOUR_DEVICE=$edu TOUR_PROFILE=mtty-2 HOSTDEVCTL=hostdevctl sh /payload/tour.sh
rc=$?
echo "=== TOUR END rc=$rc"
exit $rc
EOT
chmod +x "$payload/run"

echo "Booting the lab VM (Debian's kernel under QEMU with an IOMMU, vfio-pci and the mtty mdev driver)..." >&2
rc=0
"$here/boot.sh" --payload "$payload" --out "$work/out" >"$work/boot.log" 2>&1 || rc=$?
if [ ! -f "$work/out/console.log" ] || ! grep -q '^=== TOUR BEGIN' "$work/out/console.log"; then
  cat "$work/boot.log" >&2
  [ -f "$work/out/console.log" ] && tail -n 40 "$work/out/console.log" >&2
  echo "tour.sh: the lab VM did not run the tour (rc=$rc)" >&2
  exit 1
fi
# The tour as the VM printed it, without the console's carriage returns and the kernel log.
sed -n '/^=== TOUR BEGIN/,/^=== TOUR END/p' "$work/out/console.log" | tr -d '\r' | sed '1d;$d'
grep -q '^=== TOUR END rc=0' "$work/out/console.log"
