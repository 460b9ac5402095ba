#!/bin/bash
# `hostdevctl inspect --all --json` of a 4096-function fixture tree against c-reader, the minimal C reader of the
# same attributes, warm cache: wall-clock medians of 7 runs and strace's syscall counts. Prints; asserts nothing.
#   inspect-bench.sh MAKE_FIXTURE_TREE HOSTDEVCTL C_READER [KIND]     (KIND: bench-4096, the default, or any fixture)
set -euo pipefail
make_tree=$1 ctl=$2 reader=$3 kind=${4:-bench-4096}
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
"$make_tree" "$kind" "$tree/t"
median_ms() { # CMD...: the median wall time of 7 runs, in ms
  local i t0 ts=()
  for i in 1 2 3 4 5 6 7; do
    t0=$(date +%s%N)
    "$@" >/dev/null 2>&1
    ts+=($(( ($(date +%s%N) - t0) / 1000 )))
  done
  printf '%s\n' "${ts[@]}" | sort -n | sed -n 4p | awk '{ printf "%.1f", $1 / 1000 }'
}
syscalls() { # CMD...: how many system calls it makes (strace -c: the calls column of the total line)
  strace -f -c -o "$tree/strace" "$@" >/dev/null 2>&1
  awk '$NF == "total" { print $4 }' "$tree/strace"
}
"$ctl" inspect --sysfs-root "$tree/t" --all --json >/dev/null # warm the cache
"$reader" "$tree/t" >/dev/null 2>&1
ctl_ms=$(median_ms "$ctl" inspect --sysfs-root "$tree/t" --all --json)
c_ms=$(median_ms "$reader" "$tree/t")
echo "fixture $kind ($(ls "$tree/t/sys/bus/pci/devices" | wc -l) functions), warm cache, medians of 7:"
echo "  hostdevctl inspect --all --json  ${ctl_ms} ms"
echo "  c-reader                         ${c_ms} ms   (inspect: $(awk -v a="$ctl_ms" -v b="$c_ms" 'BEGIN { printf "%.2f", a / b }')x)"
if command -v strace >/dev/null; then
  cs=$(syscalls "$ctl" inspect --sysfs-root "$tree/t" --all --json)
  rs=$(syscalls "$reader" "$tree/t")
  echo "  syscalls: inspect ${cs}, c-reader ${rs} ($(awk -v a="$cs" -v b="$rs" 'BEGIN { printf "%.2f", a / b }')x)"
fi
