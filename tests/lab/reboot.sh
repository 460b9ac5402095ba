#!/bin/bash
# One reboot test of the lab out of a shared sequence of boots: every meson reboot test calls
#   tests/lab/reboot.sh NAME --payload DIR --results DIR [--kernel 6.1|6.12] [--cache DIR] [--timeout SECONDS]
# The first caller (under an flock on RESULTS/lock) boots the lab VM four times with tests/lab/boot.sh, one
# state disk for all (RESULTS/state.img, a fresh 8 MB raw image, /dev/vda in the guest; payload/reboot keeps
# /var/lib/hostdev on it as a tar), output in RESULTS/boot-N/:
#   boot 1  lab.reboot=1                           reboot-setup: the instances, hostdevd stopped, state saved
#   boot 2  lab.reboot=2                           reboot-restore
#   boot 3  lab.reboot=3, --drop-device edu        reboot-device-missing
#   boot 4  lab.reboot=4 lab.nomod=mtty            reboot-parent-missing
# Each boot is a new QEMU run, so a new kernel boot id. A boot that fails (no rc of the guest) ends the sequence:
# the boots after it fail with that reason. The sequence is redone like suite.sh's boot (RESULTS/done older than
# the payload or tests/lab, another --kernel, or a failed boot more than 120 s ago); `rm RESULTS/done` forces it.
#
# NAME is one of the tests below; it prints its boots' sections and the time of every boot, and exits 0 pass,
# 77 skip, else fail (tests/lab/lib/results.sh).
#   reboot-restore         boot 1's reboot-setup and boot 2's reboot-restore
#   reboot-device-missing  boot 3's reboot-device-missing
#   reboot-parent-missing  boot 4's reboot-parent-missing
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lab/lib/flavour.sh
. "$HERE/lib/flavour.sh"
LAB_TAG=lab LAB_KIND="lab reboot" LAB_RC_WORD="payload rc"
# shellcheck source=tests/lab/lib/results.sh
. "$HERE/lib/results.sh"

usage() { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
(($#)) || usage
NAME=$1
shift
PAYLOAD="" RESULTS="" KERNEL=$LAB_DEFAULT_KERNEL
BOOT_ARGS=()
while (($#)); do
    case $1 in
    --payload) PAYLOAD=$2; shift 2 ;;
    --results) RESULTS=$2; shift 2 ;;
    --kernel) KERNEL=$2; shift 2 ;;
    --cache | --timeout) BOOT_ARGS+=("$1" "$2"); shift 2 ;;
    -h | --help) usage ;;
    *) echo "reboot.sh: unknown argument $1" >&2; usage ;;
    esac
done
[[ -n $NAME && -n $PAYLOAD && -n $RESULTS ]] || usage
lab_flavour "$KERNEL" || usage
case $NAME in
reboot-restore) SECTIONS=(1:reboot-setup 2:reboot-restore) ;;
reboot-device-missing) SECTIONS=(3:reboot-device-missing) ;;
reboot-parent-missing) SECTIONS=(4:reboot-parent-missing) ;;
*) echo "reboot.sh: unknown test $NAME" >&2; usage ;;
esac
[[ -d $PAYLOAD ]] || { echo "reboot.sh: no payload dir $PAYLOAD" >&2; exit 1; }
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
DONE=$RESULTS/done
STATE=$RESULTS/state.img
NBOOTS=4
boot_args() { # N -> the boot.sh arguments of boot N, one a line
    printf '%s\n' --append "lab.reboot=$1"
    case $1 in
    3) printf '%s\n' --drop-device edu ;;
    4) printf '%s\n' --append lab.nomod=mtty ;;
    esac
}

lab_lock

# DONE: "KERNEL BRC FAILED" (FAILED: the boot that failed, 0 when none did).
need_boot() {
    [[ -f $DONE ]] || return 0
    local kernel brc failed
    read -r kernel brc failed <"$DONE" || return 0
    [[ $kernel == "$KERNEL" ]] || return 0
    [[ -n $(find -L "$PAYLOAD" "$HERE" -path "$RESULTS" -prune -o -newer "$DONE" -print -quit 2>/dev/null) ]] &&
        return 0
    if [[ ${failed:-0} != 0 ]]; then
        BOOT=$RESULTS/boot-$failed
        lab_failed_boot_stale "$brc" && return 0
    fi
    return 1
}

if need_boot; then
    rm -f "$DONE" "$STATE"
    truncate -s 8M "$STATE"
    echo "lab: booting the lab VM $NBOOTS times (kernel $KERNEL) with one state disk (results in $RESULTS)"
    failed=0 brc=0 why=""
    for ((n = 1; n <= NBOOTS; n++)); do
        out=$RESULTS/boot-$n
        if ((failed)); then
            mkdir -p "$out"
            rm -f "$out/console.log" "$out/secs"
            echo "$why" >"$out/rc"
            continue
        fi
        mapfile -t args < <(boot_args "$n")
        rc=0
        "$HERE/boot.sh" --payload "$PAYLOAD" --out "$out" --kernel "$KERNEL" --state-disk "$STATE" "${args[@]}" \
            ${BOOT_ARGS[@]+"${BOOT_ARGS[@]}"} || rc=$?
        if ! grep -qE '^[0-9]+$' "$out/rc" 2>/dev/null; then
            failed=$n brc=$rc
            why=$(cat "$out/rc" 2>/dev/null || echo "boot-failed: boot.sh wrote no rc")
            [[ $why == lab-unavailable* ]] || why="boot-failed: boot $n of the sequence failed before this one ($why)"
        fi
    done
    echo "$KERNEL $brc $failed" >"$DONE"
else
    echo "lab: reusing the $NBOOTS boots in $RESULTS/boot-N"
fi
for ((n = 1; n <= NBOOTS; n++)); do
    mapfile -t args < <(boot_args "$n")
    echo "lab: boot $n: $(cat "$RESULTS/boot-$n/secs" 2>/dev/null || echo '-') s (${args[*]})"
done
# The lock stays held (until exit) while the sections are read.

for s in "${SECTIONS[@]}"; do
    BOOT=$RESULTS/boot-${s%%:*}
    echo "--- boot ${s%%:*}: ${s#*:}"
    src=0
    (lab_section "${s#*:}" && lab_verdict "${s#*:}") || src=$?
    lab_fold "$src"
done
exit "$(lab_folded)"
