#!/usr/bin/env bash
# hostdevctl's argument handling and exit codes, run as a real process.
set -u
ctl=$1
fails=0
expect() { # expected-rc description command...
  local want=$1 what=$2; shift 2
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -ne "$want" ]; then echo "FAIL: $what: exit $rc, want $want; output: $out"; fails=$((fails+1)); else echo "ok: $what"; fi
}
expect 2 "no command" "$ctl"
expect 2 "unknown command" "$ctl" frobnicate
expect 2 "unknown inspect flag" "$ctl" inspect --bogus
expect 2 "--sysfs-root without value" "$ctl" inspect --sysfs-root
expect 1 "missing sysfs root" "$ctl" inspect --sysfs-root /nonexistent/hostdev
expect 0 "--help" "$ctl" --help
expect 0 "--version" "$ctl" --version
expect 0 "inspect this machine" "$ctl" inspect
expect 0 "inspect --json --all this machine" "$ctl" inspect --json --all
# The JSON of the real machine parses and has the documented top level.
"$ctl" inspect --json --all | python3 -c '
import json, sys
d = json.load(sys.stdin)
for k in ("iommu_enabled", "vfio_available", "gpu_mode", "problems", "devices", "mdev_parents"):
    assert k in d, k
assert d["gpu_mode"] in ("none", "passthrough", "vgpu")
import os
base = "/sys/bus/pci/devices"
real = sorted(os.listdir(base)) if os.path.isdir(base) else []
assert [x["pci_address"] for x in d["devices"]] == real, "every PCI function of this machine, in order"
for dev in d["devices"]:
    path = os.path.join(base, dev["pci_address"])
    assert dev["vendor_id"] == open(path + "/vendor").read().strip()[2:], dev
    assert dev["device_id"] == open(path + "/device").read().strip()[2:], dev
    drv = os.path.basename(os.readlink(path + "/driver")) if os.path.islink(path + "/driver") else None
    assert dev["driver"] == drv, (dev, drv)
    grp = int(os.path.basename(os.readlink(path + "/iommu_group"))) if os.path.islink(path + "/iommu_group") else None
    assert dev["iommu_group"] == grp, (dev, grp)
' && echo "ok: real JSON schema" || { echo "FAIL: real JSON schema"; fails=$((fails+1)); }
[ $fails -eq 0 ]
