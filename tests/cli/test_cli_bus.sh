#!/usr/bin/env bash
# hostdevctl against hostdevd-fake on the private system bus of tests/bus/harness.sh (real dbus-daemon, real polkitd).
#   harness.sh FIXTURE test_cli_bus.sh HOSTDEVCTL COMPLETION_FILE TEST
# Each TEST checks human and --json output and exit codes of the commands it covers.
set -u
ctl=$1 completion=$2 name=$3
here=$(cd "$(dirname "$0")" && pwd)
fails=0
GPU=0000:01:00.0 AUDIO=0000:01:00.1 NIC=0000:02:00.0
OUT=$(mktemp) ERR=$(mktemp)
trap 'rm -f "$OUT" "$ERR"' EXIT

fail() { echo "FAIL: $*"; fails=$((fails+1)); }
# run WANT_RC DESCRIPTION ARGS...: runs hostdevctl (stdin not a terminal) with ARGS; stdout in $OUT, stderr in $ERR.
run() {
  local want=$1 what=$2; shift 2
  "$ctl" "$@" </dev/null >"$OUT" 2>"$ERR"; local rc=$?
  if [ "$rc" -ne "$want" ]; then fail "$what: exit $rc, want $want; stdout: $(head -c 600 "$OUT"); stderr: $(cat "$ERR")"
  else echo "ok: $what"; fi
}
# as USER WANT_RC DESCRIPTION ARGS...: the same as another user (hdtest: no rights; hdadmin: group hostdev).
as() {
  local user=$1; shift
  local want=$1 what=$2; shift 2
  setpriv --reuid="$user" --regid="$user" --init-groups "$ctl" "$@" </dev/null >"$OUT" 2>"$ERR"; local rc=$?
  if [ "$rc" -ne "$want" ]; then fail "$what (as $user): exit $rc, want $want; stderr: $(cat "$ERR")"
  else echo "ok: $what (as $user)"; fi
}
has() { # DESCRIPTION TEXT [FILE]: the file ($OUT) contains TEXT
  if grep -qF -- "$2" "${3:-$OUT}"; then echo "ok: $1"; else fail "$1: '$2' not in: $(cat "${3:-$OUT}")"; fi
}
one_error_line() { # DESCRIPTION ERROR_NAME
  if [ "$(wc -l <"$ERR")" -eq 1 ] && grep -q "\[$2\]; hint: " "$ERR"; then echo "ok: $1: one line, [$2], hint"
  else fail "$1: error output: $(cat "$ERR")"; fi
}
# py DESCRIPTION CODE: python3 with the JSON of $OUT as `d`; CODE asserts.
py() {
  local what=$1 code=$2
  if python3 -c "import json,sys
d = json.load(open(sys.argv[1]))
$code" "$OUT"; then echo "ok: $what"; else fail "$what: $(head -c 1500 "$OUT")"; fi
}

DEVICE_KEYS='["id","name","type","pci_address","vendor_id","device_id","vendor_name","device_name","iommu_group",
  "driver","bound_to_vfio","attached_to","attached_to_name","created_at","sysfs_path","path"]'
INSTANCE_KEYS='["id","name","image","devices","device_names","gpu_profile","mdev_uuid","vgpu_vf","uuid",
  "device_paths","qemu_args","cloud_hypervisor_args","state","state_reason","persistent","lease_owner","owner","created_at",
  "path"]'

t_reads() {
  run 0 "status" status
  has "status: host table" "vfio_iommu_type1  loaded"
  has "status: GPU mode" "GPU mode          passthrough"
  has "status: resources" "GPU resources: mode passthrough, 0 of 1 slots used"
  has "status: problems with hints" "    hint: "
  run 0 "status --json" status --json
  py "status --json keys" '
assert set(d) == {"version", "host", "resources"}, d.keys()
for k in ("iommu_enabled", "vfio_available", "vfio_pci_available", "vfio_iommu_type1_loaded", "gpu_mode",
          "hugepages_total", "hugepages_free", "hugepage_size_kb", "problems", "hints"):
    assert k in d["host"], k
assert d["host"]["gpu_mode"] == "passthrough" and d["host"]["iommu_enabled"] is True
assert len(d["host"]["problems"]) == len(d["host"]["hints"])
for k in ("mode", "total_slots", "used_slots", "profiles", "devices"):
    assert k in d["resources"], k
assert d["resources"]["devices"][0]["pci_address"] == "0000:01:00.0"'
  run 0 "--json before the command" --json status
  py "--json before the command is JSON" 'assert "host" in d'
  run 0 "available" available
  has "available: table header" "ADDRESS       ID         CLASS     GROUP  DRIVER"
  has "available: the GPU" "$GPU  10de:27b8  0x030200  1      nvidia"
  if grep -q "$NIC" "$OUT"; then fail "available without --all lists the NIC"; else echo "ok: available: GPUs only"; fi
  run 0 "available --all" available --all
  has "available --all: the NIC" "$NIC"
  run 0 "available --all --json" available --all --json
  py "available --json: the keys of inspect --json plus registered" '
keys = {"pci_address", "vendor_id", "device_id", "subsystem_vendor_id", "subsystem_device_id", "vendor_name",
        "device_name", "class", "revision", "iommu_group", "iommu_group_members", "driver", "driver_override",
        "is_gpu", "numa_node", "reset_method", "sriov_totalvfs", "sriov_numvfs", "virtfns", "physfn",
        "registered", "registered_name"}
assert len(d) >= 4, len(d)
for x in d:
    assert set(x) == keys, set(x) ^ keys
    assert x["registered"] is None and x["registered_name"] is None
assert [x["pci_address"] for x in d] == sorted(x["pci_address"] for x in d)'
  run 0 "devices (none)" devices
  has "devices: says how to register" "hostdevctl register"
  run 0 "devices --json (none)" devices --json
  py "devices --json is []" 'assert d == []'
  run 0 "instances (none)" instances
  run 0 "instances --json (none)" instances --json
  py "instances --json is []" 'assert d == []'
  run 0 "profiles on a passthrough host" profiles
  has "profiles: none, and why" "No vGPU profiles"
  run 0 "profiles --json" profiles --json
  py "profiles --json is []" 'assert d == []'
  run 3 "device nosuch" device nosuch
  one_error_line "device nosuch" NotFound
  run 3 "instance nosuch" instance nosuch
  run 3 "instance nosuch --json" instance nosuch --json
  [ -s "$OUT" ] && fail "an error printed JSON on stdout" || echo "ok: errors leave stdout empty"
  run 2 "device with an invalid name" device "a/b"
  run 0 "--bus ADDRESS" --bus "$DBUS_SYSTEM_BUS_ADDRESS" devices
  run 0 "--bus=ADDRESS" --bus="$DBUS_SYSTEM_BUS_ADDRESS" devices --json
  DBUS_SESSION_BUS_ADDRESS=unix:path=/nonexistent/hostdev XDG_RUNTIME_DIR=/nonexistent run 8 "--bus session, none" \
    --bus session devices
  as hdtest 0 "reads need no authorization" status --json
}

t_devices() {
  run 0 "register NAME ADDRESS" register gpu0 "$GPU"
  has "register: says what" "Registered gpu0: $GPU (10de:27b8"
  run 0 "register - ADDRESS --json (automatic name)" register - "$AUDIO" --json
  py "register --json: a device object" "
assert sorted(d) == sorted($DEVICE_KEYS), sorted(d)
assert d['name'] == 'pci-0000-01-00-1' and d['pci_address'] == '$AUDIO' and d['attached_to'] is None
assert d['path'] == '/org/hostdev/Passthrough1/devices/' + d['id']"
  run 0 "register ADDRESS (automatic name)" register "$NIC"
  has "register: automatic name" "Registered pci-0000-02-00-0"
  run 5 "register an address again" register other "$GPU"
  one_error_line "register again" AlreadyExists
  run 5 "register a taken name" register gpu0 0000:03:00.0
  one_error_line "taken name" NameExists
  run 2 "register a bad address" register x1 01:00
  one_error_line "bad address" InvalidPciAddress
  run 2 "register a bad name" register "bad name" 0000:03:00.0
  run 3 "register an absent address" register x1 0000:99:00.0
  one_error_line "absent address" DeviceNotFound
  run 0 "devices" devices
  has "devices: header" "NAME              ADDRESS       ID         DRIVER         VFIO  GROUP  INSTANCE  DESCRIPTION"
  has "devices: gpu0 row" "gpu0              $GPU  10de:27b8  nvidia         no    1      -"
  run 0 "devices --json" devices --json
  py "devices --json: sorted device objects" "
assert [x['name'] for x in d] == ['gpu0', 'pci-0000-01-00-1', 'pci-0000-02-00-0'], d
for x in d:
    assert sorted(x) == sorted($DEVICE_KEYS), sorted(x)
assert d[0]['driver'] == 'nvidia' and d[0]['iommu_group'] == 1 and d[0]['bound_to_vfio'] is False"
  run 0 "device gpu0" device gpu0
  has "device: address" "PCI address    $GPU"
  has "device: driver" "driver         nvidia"
  run 0 "device by id --json" device "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["id"])' \
    <(HOME=/ "$ctl" devices --json))" --json
  py "device by id --json" 'assert d["name"] == "gpu0"'
  run 0 "available after register" available
  has "available: REGISTERED column" "gpu0"
  run 5 "bind into a group with a host driver" bind gpu0
  one_error_line "bind gpu0" IommuGroupConflict
  run 0 "bind the NIC" bind pci-0000-02-00-0
  has "bind: says so" "pci-0000-02-00-0 ($NIC) is bound to vfio-pci."
  run 0 "device after bind --json" device pci-0000-02-00-0 --json
  py "bound_to_vfio after bind" 'assert d["bound_to_vfio"] is True and d["driver"] == "vfio-pci", d'
  run 5 "bind again" bind pci-0000-02-00-0
  one_error_line "bind again" AlreadyBound
  run 0 "unbind --json" unbind pci-0000-02-00-0 --json
  py "unbind --json: back on the host driver" 'assert d["bound_to_vfio"] is False and d["driver"] not in (None, "vfio-pci"), d'
  run 5 "unbind again" unbind pci-0000-02-00-0
  one_error_line "unbind again" NotBound
  run 0 "restore" restore pci-0000-02-00-0
  has "restore: says so" "is restored; driver:"
  run 0 "unregister" unregister pci-0000-02-00-0
  has "unregister: says so" "Unregistered pci-0000-02-00-0."
  run 0 "unregister --json" unregister pci-0000-01-00-1 --json
  py "unregister --json" 'assert d == {"device": "pci-0000-01-00-1", "unregistered": True}, d'
  run 3 "unregister again" unregister pci-0000-02-00-0
  run 3 "bind nosuch" bind nosuch
  as hdtest 4 "register without rights" register nic0 "$NIC"
  one_error_line "register without rights" NotAuthorized
  has "the hint names group hostdev" "join group hostdev" "$ERR"
  as hdtest 4 "bind without rights" bind gpu0
  as hdadmin 0 "register as a member of group hostdev" register nic0 "$NIC"
  as hdadmin 0 "unregister as a member of group hostdev" --no-ask-password unregister nic0
}

t_instances() {
  run 0 "register gpu0" register gpu0 "$GPU"
  run 0 "register gpu0-audio" register gpu0-audio "$AUDIO"
  run 0 "create with devices" create vm1 --device gpu0 --device gpu0-audio --image debian-12
  has "create: says so" "Created instance vm1."
  has "create: device paths" "  /sys/bus/pci/devices/$GPU/"
  has "create: QEMU line" "  -device vfio-pci,host=$GPU -device vfio-pci,host=$AUDIO"
  has "create: Cloud Hypervisor line" "  --device path=/sys/bus/pci/devices/$GPU/ path=/sys/bus/pci/devices/$AUDIO/"
  run 0 "instance vm1" instance vm1
  has "instance: devices with addresses" "gpu0 ($GPU), gpu0-audio ($AUDIO)"
  has "instance: image" "debian-12"
  has "instance: owner" "0 (root)"
  run 0 "instance vm1 --json" instance vm1 --json
  py "instance --json: an instance object" "
assert sorted(d) == sorted($INSTANCE_KEYS), sorted(d)
assert d['device_names'] == ['gpu0', 'gpu0-audio'] and d['image'] == 'debian-12' and d['owner'] == 0
assert d['gpu_profile'] is None and d['mdev_uuid'] is None
assert d['qemu_args'] == ['-device', 'vfio-pci,host=$GPU', '-device', 'vfio-pci,host=$AUDIO']
assert d['device_paths'] == ['/sys/bus/pci/devices/$GPU/', '/sys/bus/pci/devices/$AUDIO/']"
  run 0 "instances" instances
  has "instances: header" "NAME  STATE   DEVICES          GPU PROFILE  MDEV  OWNER     CREATED"
  has "instances: row" "vm1   active  gpu0,gpu0-audio  -            -     0 (root)"
  run 0 "instances --json" instances --json
  py "instances --json" 'assert [x["name"] for x in d] == ["vm1"]'
  run 0 "devices show the attachment" devices --json
  py "attached_to_name" 'assert {x["name"]: x["attached_to_name"] for x in d} == {"gpu0": "vm1", "gpu0-audio": "vm1"}'
  run 5 "create with a device in use" create vm2 --device gpu0
  one_error_line "device in use" InUse
  run 5 "create with a taken name" create vm1 --image x
  run 2 "create with a bad name" create "bad name" --image x
  run 2 "create with nothing" create vm3
  one_error_line "create with nothing" InvalidArgument
  run 3 "create with an unknown device" create vm3 --device nosuch
  run 7 "create with an unknown profile" create vm3 --gpu-profile "NVIDIA L40S-4Q"
  one_error_line "unknown profile" ProfileUnavailable
  run 5 "unregister an attached device" unregister gpu0
  run 5 "unbind an attached device" unbind gpu0
  as hdtest 4 "create without rights" create vm9 --image x
  as hdtest 4 "delete without rights" delete vm1
  run 0 "delete" delete vm1
  has "delete: says so" "Deleted instance vm1."
  run 3 "delete again" delete vm1
  run 0 "create by comma list, --json" create vm2 --device=gpu0,gpu0-audio --json
  py "create --json" "assert sorted(d) == sorted($INSTANCE_KEYS) and d['name'] == 'vm2'"
  run 0 "delete --json" delete vm2 --json
  py "delete --json" 'assert d == {"instance": "vm2", "deleted": True}, d'
  run 0 "reconcile" reconcile
  has "reconcile: says what" "Reconciled: 0 orphaned mdevs destroyed"
  run 0 "reconcile --json" reconcile --json
  py "reconcile --json keys" '
assert set(d) >= {"destroyed", "skipped_not_ours", "skipped_in_use", "cleared_attachments", "errors"}, d'
  as hdtest 4 "reconcile without rights" reconcile
}

t_vgpu() {
  run 0 "status on a vGPU host" status
  has "status: vgpu mode" "GPU mode          vgpu"
  run 0 "profiles" profiles
  has "profiles: header" "PROFILE"
  has "profiles: L40S-4Q" "NVIDIA L40S-4Q"
  run 0 "profiles --json" profiles --json
  py "profiles --json keys" '
assert d and all(set(p) == {"name", "type", "framebuffer_mb", "available", "framework", "quarantined"} for p in d), d
assert all(p["framework"] == "mdev" and p["quarantined"] == 0 for p in d), d
assert any(p["name"] == "NVIDIA L40S-4Q" and p["framebuffer_mb"] == 4096 for p in d), d'
  # monitor: every kind of line, human and JSON, until SIGINT.
  local mon_out mon_err jmon_out jmon_err
  mon_out=$(mktemp) mon_err=$(mktemp) jmon_out=$(mktemp) jmon_err=$(mktemp)
  "$ctl" monitor >"$mon_out" 2>"$mon_err" &
  local mon=$!
  "$ctl" monitor --json >"$jmon_out" 2>"$jmon_err" &
  local jmon=$!
  for _ in $(seq 500); do grep -q Monitoring "$mon_err" && grep -q Monitoring "$jmon_err" && break; sleep 0.01; done
  run 0 "create with a vGPU profile" create vgpu1 --gpu-profile "NVIDIA L40S-4Q" --json
  py "create --json: mdev and paths" '
u = d["mdev_uuid"]
assert len(u) == 36 and d["gpu_profile"] == "NVIDIA L40S-4Q", d
assert d["device_paths"] == ["/sys/bus/mdev/devices/%s/" % u] and d["devices"] == []
assert d["qemu_args"] == ["-device", "vfio-pci,sysfsdev=/sys/bus/mdev/devices/" + u]'
  run 0 "instance vgpu1" instance vgpu1
  has "instance: mdev path" "/sys/bus/mdev/devices/"
  has "instance: QEMU sysfsdev" "-device vfio-pci,sysfsdev=/sys/bus/mdev/devices/"
  run 0 "status: a slot used" status --json
  py "used_slots 1" 'assert d["resources"]["used_slots"] == 1'
  run 7 "create with a profile this host lacks" create vgpu2 --gpu-profile "NVIDIA L40S-99Q"
  run 0 "delete the vGPU instance" delete vgpu1
  # run: an instance leased to hostdevctl for an unprivileged VMM (hdadmin), its arguments put in for {hostdev},
  # the VMM's exit status kept, the instance gone with hostdevctl.
  as hdadmin 3 "run a VMM that exits 3" run --gpu-profile "NVIDIA L40S-1Q" --name vmrun -- \
    sh -c 'echo "VMM: $*"; ls /dev/null >/dev/null; exit 3' sh -name guest {hostdev}
  has "run: the VMM got hostdev's arguments in place" "VMM: -name guest -device vfio-pci,sysfsdev=/sys/bus/mdev/devices/"
  local gone=''
  for _ in $(seq 100); do
    "$ctl" instances --json >"$OUT" 2>/dev/null && ! grep -q '"vmrun"' "$OUT" && { gone=1; break; }
    sleep 0.05
  done
  [ -n "$gone" ] && echo "ok: run: the leased instance ended with hostdevctl" || fail "run: vmrun outlived hostdevctl"
  as hdadmin 0 "run --print-args, a VMM that exits 0" run --gpu-profile "NVIDIA L40S-1Q" --print-args -- true
  has "run --print-args" "-device vfio-pci,sysfsdev=/sys/bus/mdev/devices/"
  as hdtest 4 "run without rights" run --gpu-profile "NVIDIA L40S-1Q" -- true
  run 2 "run --image" run --image x -- true
  run 127 "run a VMM that does not exist" run --gpu-profile "NVIDIA L40S-1Q" -- /nonexistent/vmm
  run 0 "reconcile" reconcile
  sleep 0.5
  kill -INT "$mon" "$jmon"
  wait "$mon"; local rc=$?
  wait "$jmon"; local jrc=$?
  [ $rc -eq 0 ] && [ $jrc -eq 0 ] && echo "ok: monitor exits 0 on SIGINT" || fail "monitor exit $rc / $jrc: $(cat "$mon_err")"
  for s in MdevCreated MdevDestroyed MdevsReconciled InterfacesAdded InterfacesRemoved; do
    has "monitor: $s" " $s /org/hostdev/Passthrough1" "$mon_out"
  done
  if grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{3}[+-][0-9]{4} MdevCreated /org/hostdev/Passthrough1 uuid="' \
      "$mon_out"; then echo "ok: monitor lines start with a timestamp"; else fail "monitor lines: $(cat "$mon_out")"; fi
  if python3 - "$jmon_out" <<'PYEOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
kinds = {l["signal"] for l in lines}
assert {"MdevCreated", "MdevDestroyed", "MdevsReconciled", "InterfacesAdded", "InterfacesRemoved"} <= kinds, kinds
for l in lines:
    assert {"time", "signal", "path"} <= set(l), l
c = next(l for l in lines if l["signal"] == "MdevCreated")
assert set(c) == {"time", "signal", "path", "uuid", "profile", "parent", "instance"}, c
assert c["profile"] == "NVIDIA L40S-4Q" and c["instance"].startswith("/org/hostdev/Passthrough1/instances/")
a = next(l for l in lines if l["signal"] == "InterfacesAdded")
assert a["interfaces"]["org.hostdev.Passthrough1.Instance"]["name"] == "vgpu1", a
PYEOF
  then echo "ok: monitor --json lines"; else fail "monitor --json: $(cat "$jmon_out")"; fi
  rm -f "$mon_out" "$mon_err" "$jmon_out" "$jmon_err"
}

t_properties_monitor() {
  # PropertiesChanged lines of device objects (bind, unbind) and NameOwnerChanged are live too.
  run 0 "register the NIC" register nic0 "$NIC"
  local mon_out mon_err
  mon_out=$(mktemp) mon_err=$(mktemp)
  "$ctl" monitor --json >"$mon_out" 2>"$mon_err" &
  local mon=$!
  for _ in $(seq 500); do grep -q Monitoring "$mon_err" && break; sleep 0.01; done
  run 0 "bind" bind nic0
  run 0 "unbind" unbind nic0
  sleep 0.5
  kill -TERM "$mon"; wait "$mon"; local rc=$?
  [ $rc -eq 0 ] && echo "ok: monitor exits 0 on SIGTERM" || fail "monitor exit $rc"
  if python3 - "$mon_out" <<'PYEOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
pc = [l for l in lines if l["signal"] == "PropertiesChanged" and "/devices/" in l["path"]]
assert any(l["changed"].get("bound_to_vfio") is True for l in pc), lines
assert any(l["changed"].get("bound_to_vfio") is False for l in pc), lines
assert all(l["interface"] == "org.hostdev.Passthrough1.Device" for l in pc), pc
PYEOF
  then echo "ok: monitor PropertiesChanged"; else fail "monitor PropertiesChanged: $(cat "$mon_out")"; fi
  rm -f "$mon_out" "$mon_err"
}

t_agent() {
  # On a terminal, mutating commands start a text polkit agent for the process and ask interactively; with
  # --no-ask-password, or without a terminal, they never do. A stand-in pkttyagent records its arguments.
  local bin log
  bin=$(mktemp -d) log=$(mktemp)
  chmod 755 "$bin"; chmod 666 "$log"
  cat >"$bin/pkttyagent" <<EOT
#!/bin/sh
echo "\$@" >>$log
# --notify-fd N: close it, as the real agent does once registered; then wait to be stopped
fd=\$4
eval "exec \$fd>&-"
exec sleep 60
EOT
  chmod 755 "$bin/pkttyagent"
  run 0 "register the NIC" register nic0 "$NIC"
  local tty_cmd="PATH=$bin:\$PATH $ctl bind nic0"
  script -qec "$tty_cmd" /dev/null >"$OUT" 2>&1; local rc=$?
  [ $rc -eq 0 ] && echo "ok: bind on a terminal" || fail "bind on a terminal: exit $rc: $(cat "$OUT")"
  if grep -qE '^--process [0-9]+ --notify-fd [0-9]+$' "$log"; then echo "ok: pkttyagent started for the process"
  else fail "pkttyagent arguments: $(cat "$log")"; fi
  : >"$log"
  script -qec "PATH=$bin:\$PATH $ctl --no-ask-password unbind nic0" /dev/null >"$OUT" 2>&1
  [ -s "$log" ] && fail "--no-ask-password started an agent" || echo "ok: --no-ask-password starts no agent"
  PATH=$bin:$PATH "$ctl" bind nic0 </dev/null >/dev/null 2>&1
  [ -s "$log" ] && fail "no terminal, yet an agent" || echo "ok: without a terminal no agent"
  script -qec "PATH=$bin:\$PATH $ctl devices" /dev/null >/dev/null 2>&1
  [ -s "$log" ] && fail "a read started an agent" || echo "ok: reads start no agent"
  # A user without rights on a terminal: interactive, but the stand-in agent answers nothing: 4, no hang.
  chmod 755 "$(dirname "$ctl")" 2>/dev/null
  script -qec "setpriv --reuid=hdtest --regid=hdtest --init-groups env PATH=$bin:\$PATH $ctl unbind nic0" /dev/null \
    >"$OUT" 2>&1; rc=$?
  # script(1) passes the exit status with -e
  [ $rc -eq 4 ] && echo "ok: not authorized on a terminal: 4" || fail "not authorized on a terminal: exit $rc: $(cat "$OUT")"
  rm -rf "$bin" "$log"
  # The real pkttyagent and the real polkitd: an unprivileged user on a terminal is asked for the admin password
  # (auth_admin), with the action's message; nobody answers, so it is stopped after the prompt.
  local typescript
  typescript=$(mktemp)
  timeout 6 script -qc "setpriv --reuid=hdtest --regid=hdtest --init-groups $ctl register x1 $NIC" "$typescript" \
    </dev/null >/dev/null 2>&1
  if grep -q "AUTHENTICATING FOR org.hostdev.passthrough1.manage-devices" "$typescript" &&
     grep -q "Password:" "$typescript"; then echo "ok: the real pkttyagent asks on the terminal"
  else fail "no polkit prompt on the terminal: $(cat -v "$typescript")"; fi
  rm -f "$typescript"
}

# With hostdevd-fake --vfio-cdev: run hands the VMM /dev/iommu and the cdevs at fds 3, 4, 5, and nothing else.
t_run_cdev() {
  run 0 "register gpu1" register gpu1 0000:c1:00.0
  as hdadmin 0 "run with VFIO cdevs" run --device gpu1 --gpu-profile "NVIDIA L40S-1Q" --name vmcdev -- \
    sh -c 'for fd in 3 4 5; do echo "fd $fd $(stat -L -c "%F %t:%T" /proc/self/fd/$fd)"; done
           echo "fds: $(ls /proc/$$/fd | sort -n | xargs)"; echo "VMM: $*"' sh {hostdev}
  has "run: /dev/iommu at fd 3" "fd 3 character special file 1:3"
  has "run: a cdev at fd 4" "fd 4 character special file 1:"
  has "run: a cdev at fd 5" "fd 5 character special file 1:"
  has "run: only stdio and the layout's descriptors reach the VMM" "fds: 0 1 2 3 4 5"
  has "run: the iommufd arguments" \
    "VMM: -object iommufd,id=iommufd0,fd=3 -device vfio-pci,iommufd=iommufd0,fd=4 -device vfio-pci,iommufd=iommufd0,fd=5,sysfsdev=/sys/bus/mdev/devices/"
  as hdadmin 0 "run --vfio-mode acl --print-args" run --device gpu1 --vfio-mode acl --print-args -- true
  has "run --vfio-mode acl: QemuArgs" "-device vfio-pci,host=0000:c1:00.0"
  as hdadmin 0 "run --print-args --json (cdev)" run --device gpu1 --print-args --json -- true
  py "run --json: fds_of" 'assert d["mode"] == "cdev" and d["fds_of"] == ["iommufd", "0000:c1:00.0"], d'
  # --memory: hostdevd raises the VMM's RLIMIT_MEMLOCK; hostdevctl starts with a soft limit of 1 MiB. The kernel
  # lets a root without CAP_SYS_RESOURCE (some containers) neither read nor set another user's limits: then the
  # run fails with KernelError naming the capability, and the VMM never starts. (The systemd lab proves the raise
  # with the shipped unit.)
  setpriv --reuid=hdadmin --regid=hdadmin --init-groups sh -c 'ulimit -Sl 1024 && exec "$@"' sh \
    "$ctl" run --device gpu1 --memory 4M -- sh -c 'echo VMM started; grep "Max locked memory" /proc/self/limits' \
    </dev/null >"$OUT" 2>"$ERR"; local rc=$?
  if [ $(( $(sed -n 's/^CapEff:\t//p' /proc/self/status | sed 's/^/0x/') >> 24 & 1 )) -eq 1 ]; then
    if [ $rc -eq 0 ] && grep -qE "^Max locked memory +4194304 " "$OUT"; then
      echo "ok: run --memory 4M: the VMM's soft limit is 4 MiB"
    else fail "run --memory 4M: exit $rc: $(cat "$OUT" "$ERR")"; fi
  elif [ $rc -eq 6 ] && grep -q "CAP_SYS_RESOURCE" "$ERR" && ! grep -q "VMM started" "$OUT"; then
    echo "ok: run --memory 4M without CAP_SYS_RESOURCE: KernelError naming it, no VMM started"
  else fail "run --memory 4M without CAP_SYS_RESOURCE: exit $rc: $(cat "$OUT" "$ERR")"; fi
  as hdadmin 7 "run --memory past the per-user maximum" run --device gpu1 --memory 1000T -- true
  has "run --memory 1000T: the maximum named" "is limited to" "$ERR"
  as hdadmin 2 "run --memory without a VMM" run --device gpu1 --memory 4M
  as hdadmin 2 "run --memory 0" run --device gpu1 --memory 0 -- true
  # Without a VMM (a script starts one) the access must be the uid's own: ACLs, even where cdevs exist.
  setpriv --reuid=hdadmin --regid=hdadmin --init-groups timeout -s TERM 2 "$ctl" run --device gpu1 --print-args \
    --json </dev/null >"$OUT" 2>"$ERR" || true
  py "run --print-args without a VMM: mode acl" 'assert d["mode"] == "acl" and d["fds_of"] == [], d'
  as hdadmin 2 "run --vfio-mode cdev without a VMM" run --device gpu1 --vfio-mode cdev
  as hdadmin 2 "run --vfio-mode bogus" run --device gpu1 --vfio-mode bogus -- true
  local gone=''
  for _ in $(seq 100); do
    "$ctl" instances --json >"$OUT" 2>/dev/null && grep -qx '\[\]' "$OUT" && { gone=1; break; }
    sleep 0.05
  done
  [ -n "$gone" ] && echo "ok: every run's lease ended" || fail "instances left after the runs: $(cat "$OUT")"
}

t_completion() {
  run 0 "register gpu0" register gpu0 "$GPU"
  run 0 "register gpu0-audio" register gpu0-audio "$AUDIO"
  run 0 "create vm1" create vm1 --device gpu0,gpu0-audio
  if bash "$here/test_completion.sh" "$completion" "$ctl" live >"$OUT" 2>&1; then echo "ok: completion with names"
  else fail "completion: $(grep FAIL "$OUT")"; fi
}

"t_${name//-/_}"
[ $fails -eq 0 ]
