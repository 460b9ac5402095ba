#!/usr/bin/env bash
# The main job: install what is needed, build hostdev, and show what it sees on this machine — then the same
# commands against captured trees of a GPU passthrough host and a vGPU host, so the tour works on any machine.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

scripts/install-deps.sh build
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
ctl=build/src/cli/hostdevctl

step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "${*:2}"; "${@:2}"; }

step "This machine, straight from /sys (read-only, no daemon)" "$ctl" inspect
step "Every PCI function of this machine" "$ctl" inspect --all

trees=$(mktemp -d "${TMPDIR:-/dev/shm}/hostdev-demo.XXXXXX")
trap 'rm -rf "$trees"' EXIT
build/tests/make-fixture-tree passthrough "$trees/passthrough"
build/tests/make-fixture-tree vgpu "$trees/vgpu"
build/tests/make-fixture-tree no-iommu "$trees/no-iommu"

step "A captured GPU passthrough host (an L4 with its audio function behind a bridge)" \
  "$ctl" inspect --sysfs-root "$trees/passthrough"
step "A captured vGPU host (2 x L40S, 32 SR-IOV VFs each)" "$ctl" inspect --sysfs-root "$trees/vgpu"
step "A host with the IOMMU off: what to fix" "$ctl" inspect --sysfs-root "$trees/no-iommu"
step "The same as JSON, for scripts and support bundles (first device)" \
  bash -c "'$ctl' inspect --json --sysfs-root '$trees/passthrough' | python3 -c 'import json,sys; d=json.load(sys.stdin); d[\"devices\"]=d[\"devices\"][:1]; print(json.dumps(d, indent=2))'"
