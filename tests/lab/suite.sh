#!/bin/bash
# One lab test out of a shared boot: every meson lab test calls
#   tests/lab/suite.sh NAME --payload DIR --results DIR [--with-qemu]
#                      [--cache DIR] [--timeout SECONDS]
# The first caller (under an flock on RESULTS/lock) boots the VM once with
# tests/lab/boot.sh (output in RESULTS/boot/); the others wait and reuse it.
# The boot is redone when RESULTS/done is missing, older than any file of the
# payload or of tests/lab, when --with-qemu is asked of a boot made without it,
# or when the last boot failed more than 120 s ago.  `rm RESULTS/done` forces one.
#
# The payload's /payload/run prints, per test,
#   === LAB-TEST BEGIN <name>
#   ...output...
#   === LAB-TEST END <name> rc=<N> secs=<S>
# (/lab/lib.sh's `lab_test NAME CMD...` does this).  This script prints NAME's
# section and exits with its rc: 0 pass, 77 skip, else fail.  A test missing
# from the log fails ("did not run"); a failed boot fails every test with the
# reason and the console tail; a lab unavailable on this machine skips (77).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
(($#)) || usage
NAME=$1
shift
PAYLOAD="" RESULTS="" WITH_QEMU=0
BOOT_ARGS=()
while (($#)); do
    case $1 in
    --payload) PAYLOAD=$2; shift 2 ;;
    --results) RESULTS=$2; shift 2 ;;
    --with-qemu) WITH_QEMU=1; shift ;;
    --cache | --timeout) BOOT_ARGS+=("$1" "$2"); shift 2 ;;
    -h | --help) usage ;;
    *) echo "suite.sh: unknown argument $1" >&2; usage ;;
    esac
done
[[ -n $NAME && -n $PAYLOAD && -n $RESULTS ]] || usage
[[ -d $PAYLOAD ]] || { echo "suite.sh: no payload dir $PAYLOAD" >&2; exit 1; }
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
BOOT=$RESULTS/boot
DONE=$RESULTS/done

exec 9>"$RESULTS/lock"
flock 9

need_boot() {
    [[ -f $DONE ]] || return 0
    local with brc age
    read -r with brc <"$DONE" || return 0
    ((WITH_QEMU && !with)) && return 0
    [[ -n $(find -L "$PAYLOAD" "$HERE" -path "$RESULTS" -prune -o -newer "$DONE" -print -quit 2>/dev/null) ]] &&
        return 0
    if [[ $brc != 0 ]] && ! grep -qE '^[0-9]+$' "$BOOT/rc" 2>/dev/null; then
        age=$(($(date +%s) - $(stat -c %Y "$DONE")))
        ((age > 120)) && return 0
    fi
    return 1
}

if need_boot; then
    rm -f "$DONE"
    boot_with=()
    ((WITH_QEMU)) && boot_with=(--with-qemu)
    echo "lab: booting the lab VM for this suite (results in $RESULTS)"
    brc=0
    "$HERE/boot.sh" --payload "$PAYLOAD" --out "$BOOT" ${BOOT_ARGS[@]+"${BOOT_ARGS[@]}"} \
        ${boot_with[@]+"${boot_with[@]}"} || brc=$?
    echo "$WITH_QEMU $brc" >"$DONE"
else
    echo "lab: reusing the boot in $BOOT ($(cat "$BOOT/secs" 2>/dev/null || echo '?') s)"
fi
# The lock stays held (until exit) while this test's section is read.

rc=$(cat "$BOOT/rc" 2>/dev/null || echo "boot-failed: boot.sh wrote no rc")
if ! [[ $rc =~ ^[0-9]+$ ]]; then
    if [[ $rc == lab-unavailable* ]]; then
        echo "SKIP: $rc"
        exit 77
    fi
    echo "FAIL: $NAME: the lab boot failed: $rc"
    if [[ -f $BOOT/console.log ]]; then
        echo "--- console tail ($BOOT/console.log)"
        tr -d '\r' <"$BOOT/console.log" | tail -n 40
    fi
    exit 1
fi

section=$(tr -d '\r' <"$BOOT/console.log" | awk -v n="$NAME" '
    !found && $0 == "=== LAB-TEST BEGIN " n { on = 1; found = 1; next }
    on && index($0, "=== LAB-TEST END " n " rc=") == 1 { print; on = 0; next }
    on { print }
    END { if (!found) exit 3 }') || {
    echo "FAIL: $NAME did not run (no '=== LAB-TEST BEGIN $NAME' in $BOOT/console.log; payload rc=$rc)"
    exit 1
}
endline=$(tail -n1 <<<"$section")
if [[ $endline =~ ^===\ LAB-TEST\ END\ .*\ rc=([0-9]+)\ secs=([0-9.]+)$ ]]; then
    trc=${BASH_REMATCH[1]}
    secs=${BASH_REMATCH[2]}
    sed '$d' <<<"$section"
else
    echo "$section"
    echo "FAIL: $NAME began but never ended (guest crashed or stopped; payload rc=$rc)"
    exit 1
fi
case $trc in
0) echo "lab: $NAME passed in $secs s" ;;
77) echo "lab: $NAME skipped ($(grep -m1 "^SKIP:" <<<"$section" | sed "s/^SKIP: *//" || true))" ;;
*) echo "lab: $NAME FAILED rc=$trc in $secs s" ;;
esac
exit "$trc"
