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
# Every bus command's argument checks, before any bus is touched (so: no daemon needed).
expect 2 "status with an argument" "$ctl" status extra
expect 2 "available with a name" "$ctl" available gpu0
expect 2 "register without address" "$ctl" register
expect 2 "register with three arguments" "$ctl" register a b c
expect 2 "device without name" "$ctl" device
expect 2 "device with two names" "$ctl" device a b
for c in bind unbind restore unregister instance delete; do
  expect 2 "$c without name" "$ctl" "$c"
  expect 2 "$c with two names" "$ctl" "$c" a b
  expect 2 "$c with --all" "$ctl" "$c" a --all
done
expect 2 "create without name" "$ctl" create --device gpu0
expect 2 "create --device without value" "$ctl" create vm1 --device
expect 2 "create --device with an empty name" "$ctl" create vm1 --device gpu0,,x
expect 2 "create --gpu-profile=" "$ctl" create vm1 --gpu-profile=
expect 2 "create with two names" "$ctl" create vm1 vm2
expect 2 "--device outside create" "$ctl" devices --device gpu0
expect 2 "--all outside available" "$ctl" devices --all
expect 2 "unknown option" "$ctl" devices --frob
expect 2 "--bus without value" "$ctl" --bus
expect 2 "--bus with a bad value" "$ctl" --bus nowhere devices
expect 2 "inspect with --bus" "$ctl" inspect --bus system
expect 2 "profiles with an argument" "$ctl" profiles x
expect 2 "monitor with an argument" "$ctl" monitor x
expect 2 "reconcile with an argument" "$ctl" reconcile x
expect 2 "sriov without a count" "$ctl" sriov 0000:01:00.0
expect 2 "report-init without a verdict" "$ctl" report-init vm1
expect 2 "'-' as a device name" "$ctl" device -
expect 0 "--help after a command" "$ctl" devices --help
expect 0 "help" "$ctl" help
# hostdevctl --help documents every command and exit code.
help=$("$ctl" --help)
for c in status available register devices device bind unbind restore unregister profiles create instances \
         instance delete reconcile restore-instance --transient run --print-args --vfio-mode --memory sriov report-init unquarantine monitor inspect --json --bus --no-ask-password \
         "8 daemon"; do
  case $help in *"$c"*) ;; *) echo "FAIL: --help does not mention '$c'"; fails=$((fails+1)) ;; esac
done
# No bus at that address: 8, one line, with a hint.
for c in status "available --all" devices "device gpu0" "bind gpu0" "create vm1 --device gpu0" instances \
         "delete vm1" reconcile "sriov 0000:01:00.0 2" "report-init vm1 ok" "unquarantine 0000:01:00.4" monitor; do
  # shellcheck disable=SC2086
  expect 8 "$c without a bus" "$ctl" --bus unix:path=/nonexistent/hostdev-bus --no-ask-password $c
done
err=$("$ctl" --bus unix:path=/nonexistent/hostdev-bus devices 2>&1 >/dev/null)
[ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] && case $err in *hint:*) true ;; *) false ;; esac &&
  echo "ok: one error line with a hint" || { echo "FAIL: error line: $err"; fails=$((fails+1)); }
# A bus without hostdevd: ServiceUnknown is 8 as well.
if command -v dbus-daemon >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  cat >"$tmp/bus.conf" <<EOT
<busconfig><type>session</type><listen>unix:path=$tmp/bus</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/></policy>
</busconfig>
EOT
  dbus-daemon --config-file="$tmp/bus.conf" --nofork --nopidfile --nosyslog 2>/dev/null &
  bus_pid=$!
  for _ in $(seq 200); do [ -S "$tmp/bus" ] && break; sleep 0.01; done
  expect 8 "a bus without hostdevd" "$ctl" --bus "unix:path=$tmp/bus" status
  expect 8 "a bus without hostdevd (--bus=)" "$ctl" --bus="unix:path=$tmp/bus" devices --json
  out=$("$ctl" --bus "unix:path=$tmp/bus" status 2>&1)
  case $out in *ServiceUnknown*hint:*) echo "ok: ServiceUnknown named, with a hint" ;;
    *) echo "FAIL: ServiceUnknown message: $out"; fails=$((fails+1)) ;; esac
  kill "$bus_pid"; wait "$bus_pid" 2>/dev/null
  rm -rf "$tmp"
fi
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
