#!/usr/bin/env bash
# The bash completion of hostdevctl, called as bash calls it.
#   test_completion.sh COMPLETION_FILE HOSTDEVCTL [offline|live]
# live: a daemon answers with device gpu0 and instance vm1 (run inside tests/bus/harness.sh).
set -u
file=$1 ctl=$2 mode=${3:-offline}
fails=0
# shellcheck disable=SC1090
source "$file"
complete_words() { # words... (the last one is being completed) -> COMPREPLY, one per line
  COMP_WORDS=("$ctl" "$@")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMPREPLY=()
  _hostdevctl
  printf '%s\n' "${COMPREPLY[@]}"
}
expect() { # description, wanted word, words...
  local what=$1 want=$2; shift 2
  local got
  got=$(complete_words "$@")
  if printf '%s\n' "$got" | grep -qxF -- "$want"; then echo "ok: $what"; else
    echo "FAIL: $what: '$want' not in: $(echo $got)"; fails=$((fails+1)); fi
}
expect_none() { # description, unwanted word, words...
  local what=$1 bad=$2; shift 2
  if complete_words "$@" | grep -qxF -- "$bad"; then echo "FAIL: $what: '$bad' offered"; fails=$((fails+1)); else
    echo "ok: $what"; fi
}
[ "$(complete -p hostdevctl 2>/dev/null)" = "complete -F _hostdevctl hostdevctl" ] && echo "ok: registered" ||
  { echo "FAIL: complete -p hostdevctl"; fails=$((fails+1)); }
expect "commands" status ""
expect "commands by prefix" instances ins
expect_none "prefix filters" status ins
expect "global options" --json --
expect "--bus values" session --bus ""
expect "create options" --gpu-profile create vm1 --
expect "available --all" --all available --
expect "run options" --memory run --
expect "--vfio-mode values" cdev run --vfio-mode ""
expect_none "--memory takes a size, not a file" run run --memory ""
expect_none "--all only for available" --all devices --
expect "inspect options" --sysfs-root inspect --
expect "--bus value skipped when finding the command" instances --bus system ins
if [ "$mode" = live ]; then
  expect "device names for bind" gpu0 bind ""
  expect "device names for --device" gpu0 create vm2 --device ""
  expect "device names honour --bus" gpu0 --bus "$DBUS_SYSTEM_BUS_ADDRESS" device g
  expect "instance names for delete" vm1 delete ""
  expect "PCI addresses for register" 0000:02:00.0 register nic0 ""
  expect_none "one name only" gpu0 bind gpu0 ""
else
  [ -z "$(complete_words --bus unix:path=/nonexistent/hostdev bind "")" ] && echo "ok: no names without a daemon" ||
    { echo "FAIL: names offered without a daemon"; fails=$((fails+1)); }
fi
[ $fails -eq 0 ]
