#!/usr/bin/env bash
# One meson test of the lab: assembles the payload (the project's binaries + payload/run) and hands over to
# suite.sh, which boots the VM once for all tests sharing RESULTS_DIR.
# Usage: run-test.sh NAME RESULTS_DIR [--with-qemu] [--kernel 6.1|6.12] [--reboot] -- BINARY...
#   NAME is the test's name in the guest (payload/run); --kernel the flavour (default 6.1, see prepare.sh).
#   --reboot: a reboot test instead: payload/reboot is the payload's run, and reboot.sh boots it four times
#   with one state disk (NAME: one of reboot.sh's tests).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
name=$1 results=$2
shift 2
with=() reboot=0
while [ $# -gt 0 ] && [ "$1" != -- ]; do
    case $1 in
    --with-qemu) with+=(--with-qemu); shift ;;
    --kernel) with+=(--kernel "$2"); shift 2 ;;
    --reboot) reboot=1; shift ;;
    *) echo "run-test.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ "${1:-}" = -- ]; then shift; fi

payload=$results/payload
mkdir -p "$payload/bin"
exec 9>"$results/payload.lock"
flock 9
# -u -p: an unchanged binary keeps its time stamp, so suite.sh reuses the boot until something changes.
for b in "$@"; do cp -u -p "$b" "$payload/bin/"; done
if ((reboot)); then
    cp -u -p "$here/payload/reboot" "$payload/run"
    cp -u -p "$here/payload/bus.sh" "$payload/"
    flock -u 9
    exec "$here/reboot.sh" "$name" --payload "$payload" --results "$results" "${with[@]}"
fi
cp -u -p "$here/payload/run" "$here/payload/bus.sh" "$here/../../scripts/tour.sh" "$payload/"
flock -u 9
exec "$here/suite.sh" "$name" --payload "$payload" --results "$results" "${with[@]}"
