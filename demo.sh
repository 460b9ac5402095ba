#!/usr/bin/env bash
# The main job: install what is needed, build hostdev, start the real hostdevd on a private system bus against this
# machine's /sys and take the tour (scripts/tour.sh) as far as this machine allows (scripts/demo-bus.sh) — then
# `hostdevctl inspect` of captured trees of a GPU passthrough host, a vGPU host and a host with the IOMMU off.
#   ./demo.sh          on this machine (as root; nothing on the machine changes unless TOUR_DEVICE/TOUR_PROFILE ask)
#   ./demo.sh --lab    the full tour inside the lab VM (a real kernel with an IOMMU, vfio-pci and mtty vGPUs;
#                      tests/lab/tour.sh)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

usage() {
  cat <<'EOT'
usage: ./demo.sh [--lab]

Installs what hostdev needs (Debian 12, as root), builds it, and shows it at work:
  ./demo.sh         starts the real hostdevd on a private system bus (in its own mount and PID namespace, with the
                    real polkitd and a temporary state dir) against this machine's /sys, and runs the tour —
                    status, available, register, create an instance with a device and with a vGPU profile, its
                    paths and QEMU / Cloud Hypervisor arguments, delete — as far as this machine allows, saying
                    what it cannot do here and why. Then `hostdevctl inspect` of captured trees of other hosts.
  ./demo.sh --lab   the same tour inside the lab VM (QEMU, a real kernel with an IOMMU, vfio-pci and the mtty
                    mdev driver), where a device is really bound to vfio-pci and a vGPU instance really created.

Environment (./demo.sh only):
  TOUR_DEVICE=ADDR    pass this PCI function through in the tour: it is really bound to vfio-pci on this
                      machine and given back afterwards. Unset: no device of this machine is bound (on a host
                      without an IOMMU the tour shows hostdevd refusing one instead).
  TOUR_PROFILE=NAME   create (and delete) a real vGPU of this profile in the tour. Unset: no vGPU.
EOT
}

mode=host
case "${1:-}" in
  "") ;;
  --lab) mode=lab ;;
  -h | --help) usage; exit 0 ;;
  *) usage >&2; exit 2 ;;
esac

ctl=build/src/cli/hostdevctl
B=$'\033[1m' N=$'\033[0m'
[ -t 1 ] || B='' N=''
step() { printf '\n%s== %s%s\n$ %s\n' "$B" "$1" "$N" "${*:2}"; "${@:2}"; }
say() { printf '%s%s%s\n' "$B" "$*" "$N"; }

scripts/install-deps.sh "$([ $mode = lab ] && echo lab || echo build)"
if [ ! -f build/build.ninja ]; then
  meson setup build >build.setup.log 2>&1 || { cat build.setup.log; exit 1; }
fi
if ! out=$(ninja -C build 2>&1); then
  echo "$out" | tail -n 40
  echo "demo: the build failed" >&2
  exit 1
fi

if [ $mode = lab ]; then
  [ -t 1 ] || export NO_COLOR=1 # scripts/tour.sh prints bold text on a terminal (the VM's console is one)
  exec tests/lab/tour.sh build
fi

say "hostdev on this machine: the real hostdevd, bus-activated on a private system bus"
cat <<'EOT'
It runs in its own mount and PID namespace next to a private dbus-daemon and the real polkitd (seeing only
hostdev's policy; root needs no permission), against this machine's real /sys, with its store in a temporary
directory. This machine's own D-Bus, polkit and /var/lib/hostdev are not touched; everything stops at the end.
EOT
rc=0
if [ "$(id -u)" -ne 0 ]; then
  say "Skipped: the daemon part needs root (namespaces and bind mounts); run ./demo.sh as root."
  rc=1
else
  # Which device to use: only the one the caller names (it would really be bound). Without an IOMMU nothing can
  # be bound, so then a function of this machine is picked to show what hostdevd answers.
  if [ -z "${TOUR_DEVICE:-}" ]; then
    TOUR_DEVICE=$("$ctl" inspect --all --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
if not d["iommu_enabled"]:
    devs = [x for x in d["devices"] if not x["class"].startswith("0x06")]  # not a bridge
    devs.sort(key=lambda x: not x["is_gpu"])
    print(devs[0]["pci_address"] if devs else "")')
    if [ -n "$TOUR_DEVICE" ]; then
      echo "No IOMMU here: the tour tries $TOUR_DEVICE (nothing can be bound, so nothing changes)."
    else
      echo "No device of this machine is bound: set TOUR_DEVICE=ADDR to pass one through (bound, then given back)."
    fi
  fi
  echo
  export TOUR_DEVICE TOUR_PROFILE=${TOUR_PROFILE:-}
  scripts/demo-bus.sh build || rc=$?
fi

echo
say "Without the daemon: hostdevctl inspect reads a sysfs tree directly — here trees captured on other hosts"
trees=$(mktemp -d "${TMPDIR:-/dev/shm}/hostdev-demo.XXXXXX")
trap 'rm -rf "$trees"' EXIT
build/tests/make-fixture-tree passthrough "$trees/passthrough"
build/tests/make-fixture-tree vgpu "$trees/vgpu"
build/tests/make-fixture-tree vendor-vgpu "$trees/vendor-vgpu"
build/tests/make-fixture-tree no-iommu "$trees/no-iommu"

step "A captured GPU passthrough host (an L4 with its audio function behind a bridge)" \
  "$ctl" inspect --sysfs-root "$trees/passthrough"
step "A captured vGPU host (2 x L40S, 32 SR-IOV VFs each)" "$ctl" inspect --sysfs-root "$trees/vgpu"
step "A captured vGPU host of today (vGPU 17+: no mdev bus, NVIDIA's vendor-specific VFIO on 8 VFs per L40S)" \
  "$ctl" inspect --sysfs-root "$trees/vendor-vgpu"
step "A host with the IOMMU off: what to fix" "$ctl" inspect --sysfs-root "$trees/no-iommu"
step "The same as JSON, for scripts and support bundles (first device)" \
  bash -c "'$ctl' inspect --json --sysfs-root '$trees/passthrough' | python3 -c 'import json,sys; d=json.load(sys.stdin); d[\"devices\"]=d[\"devices\"][:1]; print(json.dumps(d, indent=2))'"

echo
if [ $rc -eq 0 ]; then
  say "Done. The full tour, with a device really bound and a vGPU really created: ./demo.sh --lab"
else
  say "The tour on this machine failed (see above)."
fi
exit $rc
