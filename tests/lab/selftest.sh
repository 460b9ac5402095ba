#!/bin/bash
# Self-test of the lab: runs the shell tests of tests/lab/selftest/run through
# suite.sh, in parallel the way meson would (one shared boot), and reports.
#
# Usage: tests/lab/selftest.sh [--with-qemu] [--kernel 6.1|6.12] [--results DIR] [--cache DIR] [--timeout SECONDS]
#   default results: <repo>/.cache/lab-selftest[-6.12][-qemu]; the boot is always redone.
# Exit: 0 all passed (nested skips without --with-qemu), 77 lab unavailable, 1 failures.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=tests/lab/lib/flavour.sh
. "$HERE/lib/flavour.sh"
TESTS=(iommu vfio-edu sriov mtty nvsim-abi nested)

RESULTS="" WITH=() KERNEL=$LAB_DEFAULT_KERNEL
ARGS=()
while (($#)); do
    case $1 in
    --with-qemu) WITH=(--with-qemu); shift ;;
    --results) RESULTS=$2; shift 2 ;;
    --kernel) KERNEL=$2; shift 2 ;;
    --cache | --timeout) ARGS+=("$1" "$2"); shift 2 ;;
    *) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done
lab_flavour "$KERNEL" || exit 2
ARGS+=(--kernel "$KERNEL")
if [[ -z $RESULTS ]]; then
    RESULTS=$REPO/.cache/lab-selftest$LAB_SUFFIX
    ((${#WITH[@]})) && RESULTS+=-qemu
fi
mkdir -p "$RESULTS/out"
rm -f "$RESULTS/done"

t0=$(date +%s.%N)
pids=()
for t in "${TESTS[@]}"; do
    "$HERE/suite.sh" "$t" --payload "$HERE/selftest" --results "$RESULTS" \
        ${WITH[@]+"${WITH[@]}"} ${ARGS[@]+"${ARGS[@]}"} >"$RESULTS/out/$t.log" 2>&1 &
    pids+=($!)
done
fail=0 skip=0 unavailable=0
for i in "${!TESTS[@]}"; do
    t=${TESTS[$i]}
    rc=0
    wait "${pids[$i]}" || rc=$?
    secs=$(sed -n "s/^=== LAB-TEST END $t rc=[0-9]* secs=//p" "$RESULTS/boot/console.log" 2>/dev/null | tr -d '\r' | head -n1)
    case $rc in
    0) status=PASS ;;
    77)
        status=SKIP
        skip=$((skip + 1))
        grep -q lab-unavailable "$RESULTS/out/$t.log" && unavailable=1
        ;;
    *) status=FAIL fail=$((fail + 1)) ;;
    esac
    printf '%-10s %-5s %6s s   %s\n' "$t" "$status" "${secs:--}" "$RESULTS/out/$t.log"
    if [[ $status == FAIL ]]; then sed 's/^/    | /' "$RESULTS/out/$t.log" | tail -n 40; fi
done
t1=$(date +%s.%N)
boot=$(cat "$RESULTS/boot/secs" 2>/dev/null || echo '?')
printf 'lab selftest (kernel %s): %d tests, %d failed, %d skipped; boot %s s; wall %.1f s\n' \
    "$KERNEL" "${#TESTS[@]}" "$fail" "$skip" "$boot" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
((fail)) && exit 1
((unavailable)) && exit 77
exit 0
