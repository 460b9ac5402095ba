#!/bin/bash
# One lab test out of a shared boot: every meson lab test calls
#   tests/lab/suite.sh NAME --payload DIR --results DIR [--with-qemu]
#                      [--kernel 6.1|6.12] [--cache DIR] [--timeout SECONDS]
# The first caller (under an flock on RESULTS/lock) boots the VM once with
# tests/lab/boot.sh (output in RESULTS/boot/); the others wait and reuse it.
# The boot is redone when RESULTS/done is missing, older than any file of the
# payload or of tests/lab, when --with-qemu is asked of a boot made without it,
# when it was made with another --kernel (default 6.1), or when the last boot
# failed more than 120 s ago.  `rm RESULTS/done` forces one.
#
# The payload's /payload/run prints, per test, the === LAB-TEST BEGIN/END
# markers of tests/lab/lib/results.sh.  This script prints NAME's section and
# exits with its rc: 0 pass, 77 skip, else fail (see tests/lab/lib/results.sh).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lab/lib/flavour.sh
. "$HERE/lib/flavour.sh"
LAB_TAG=lab LAB_KIND=lab LAB_RC_WORD="payload rc"
# shellcheck source=tests/lab/lib/results.sh
. "$HERE/lib/results.sh"

usage() { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
(($#)) || usage
NAME=$1
shift
PAYLOAD="" RESULTS="" WITH_QEMU=0 KERNEL=$LAB_DEFAULT_KERNEL
BOOT_ARGS=()
while (($#)); do
    case $1 in
    --payload) PAYLOAD=$2; shift 2 ;;
    --results) RESULTS=$2; shift 2 ;;
    --with-qemu) WITH_QEMU=1; shift ;;
    --kernel) KERNEL=$2; shift 2 ;;
    --cache | --timeout) BOOT_ARGS+=("$1" "$2"); shift 2 ;;
    -h | --help) usage ;;
    *) echo "suite.sh: unknown argument $1" >&2; usage ;;
    esac
done
[[ -n $NAME && -n $PAYLOAD && -n $RESULTS ]] || usage
lab_flavour "$KERNEL" || usage
[[ -d $PAYLOAD ]] || { echo "suite.sh: no payload dir $PAYLOAD" >&2; exit 1; }
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
BOOT=$RESULTS/boot
DONE=$RESULTS/done

lab_lock

need_boot() {
    [[ -f $DONE ]] || return 0
    local with kernel brc
    read -r with kernel brc <"$DONE" || return 0
    ((WITH_QEMU && !with)) && return 0
    [[ $kernel == "$KERNEL" ]] || return 0
    [[ -n $(find -L "$PAYLOAD" "$HERE" -path "$RESULTS" -prune -o -newer "$DONE" -print -quit 2>/dev/null) ]] &&
        return 0
    lab_failed_boot_stale "$brc" && return 0
    return 1
}

if need_boot; then
    rm -f "$DONE"
    boot_with=()
    ((WITH_QEMU)) && boot_with=(--with-qemu)
    echo "lab: booting the lab VM (kernel $KERNEL) for this suite (results in $RESULTS)"
    brc=0
    "$HERE/boot.sh" --payload "$PAYLOAD" --out "$BOOT" --kernel "$KERNEL" ${BOOT_ARGS[@]+"${BOOT_ARGS[@]}"} \
        ${boot_with[@]+"${boot_with[@]}"} || brc=$?
    echo "$WITH_QEMU $KERNEL $brc" >"$DONE"
else
    echo "lab: reusing the boot in $BOOT ($(cat "$BOOT/secs" 2>/dev/null || echo '?') s)"
fi
# The lock stays held (until exit) while this test's section is read.

lab_section "$NAME"
lab_verdict "$NAME"
