#!/bin/bash
# One meson test of the systemd lab (suite 'systemd').  Every test calls
#   tests/lab/systemd/run-test.sh NAME RESULTS_DIR SOURCE_ROOT [--kernel 6.1|6.12]
# (--kernel: the lab's kernel flavour and its root image, boot.sh --kernel; default 6.1)
# Under an flock on RESULTS/lock the first caller
#  1. configures RESULTS/build-usr from SOURCE_ROOT with the prefix a distro
#     package uses (--prefix=/usr --sysconfdir=/etc --localstatedir=/var),
#     builds only the installed targets, and runs
#     `meson install --no-rebuild --destdir RESULTS/destdir`;
#  2. boots the VM twice (tests/lab/systemd/boot.sh) with that DESTDIR and
#     tests/lab/systemd/tests.sh, on one writable copy of the root image
#     (RESULTS/root.img, made fresh for the first boot, removed after the
#     second): the first boot (RESULTS/boot/) runs every test and sets up the
#     reboot test, the second (RESULTS/boot-2/, kernel line lab.boot=2) is the
#     reboot, with a new boot id, and checks it;
# and every caller prints NAME's section of the console and exits with its rc
# (0 pass, 77 skip, else fail); sd-restore-order prints the first boot's
# sd-restore-setup and the second boot's sd-restore-order, sd-unprivileged-run
# the second boot's section of that name.  The boots are reused while the
# DESTDIR's content, tests/lab/systemd/, tests/lab/guest/lib.sh,
# tests/lab/nested/init and the root image are unchanged (a failed boot for 120 s only);
# `rm RESULTS/done` forces them.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_TAG=lab-systemd LAB_KIND="systemd lab" LAB_RC_WORD=rc
LAB=$(cd "$HERE/.." && pwd)
REPO=$(cd "$LAB/../.." && pwd)
# shellcheck source=tests/lab/lib/results.sh
. "$LAB/lib/results.sh"

usage() { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
KERNEL=6.1
if (($# == 5)) && [[ $4 == --kernel ]]; then KERNEL=$5; elif (($# != 3)); then usage; fi
# shellcheck source=tests/lab/lib/flavour.sh
. "$LAB/lib/flavour.sh"
lab_flavour "$KERNEL" || usage
NAME=$1
mkdir -p "$2"
RESULTS=$(cd "$2" && pwd)
SRC=$(cd "$3" && pwd)
CACHE=${HOSTDEV_LAB_CACHE:-$REPO/.cache/lab}
BUILD=$RESULTS/build-usr
DEST=$RESULTS/destdir
BOOT=$RESULTS/boot
BOOT2=$RESULTS/boot-2
ROOT_COPY=$RESULTS/root.img
DONE=$RESULTS/done
case $NAME in
sd-restore-order) SECTIONS=("$BOOT:sd-restore-setup" "$BOOT2:sd-restore-order") ;;
sd-unprivileged-run) SECTIONS=("$BOOT2:sd-unprivileged-run") ;; # the second boot's, after sd-restore-order
*) SECTIONS=("$BOOT:$NAME") ;;
esac

lab_lock

# ---- the DESTDIR, as a package would install it ------------------------------------
if [[ ! -f $BUILD/build.ninja ]]; then
    echo "lab-systemd: configuring $BUILD (prefix /usr)"
    rm -rf "$BUILD"
    meson setup "$BUILD" "$SRC" --prefix=/usr --sysconfdir=/etc --localstatedir=/var >"$RESULTS/setup.log" 2>&1 ||
        { tail -n 30 "$RESULTS/setup.log"; echo "FAIL: meson setup of $BUILD failed"; exit 1; }
fi
# Build only what `meson install` copies (not the test executables).
mapfile -t outs < <(meson introspect "$BUILD" --targets | python3 -c '
import json, os, sys
b = sys.argv[1]
for t in json.load(sys.stdin):
    if t.get("installed"):
        for f in t["filename"]:
            print(os.path.relpath(f, b))' "$BUILD")
if ((${#outs[@]})); then
    # -j nproc: ninja's default (nproc + 2) would take more cores than the machine has.
    ninja -C "$BUILD" -j "$(nproc)" "${outs[@]}" >"$RESULTS/build.log" 2>&1 ||
        { tail -n 40 "$RESULTS/build.log"; echo "FAIL: building the installed targets failed"; exit 1; }
fi
rm -rf "$DEST"
meson install -C "$BUILD" --no-rebuild --strip --destdir "$DEST" >"$RESULTS/install.log" 2>&1 ||
    { tail -n 20 "$RESULTS/install.log"; echo "FAIL: meson install --destdir failed"; exit 1; }

# ---- one boot for all tests -----------------------------------------------------------
signature() { # what a boot depends on: the DESTDIR's content, the guest side, the image
    {
        (cd "$DEST" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum)
        (cd "$DEST" && find . -type l -printf '%p -> %l\n' | LC_ALL=C sort)
        sha256sum "$HERE"/*.sh "$HERE"/guest/* "$LAB/guest/lib.sh" "$LAB"/lib/*.sh "$LAB"/nested/init
        cat "$CACHE/systemd$LAB_SUFFIX/stamp" 2>/dev/null || true
    } | sha256sum | cut -c1-32
}
sig=$(signature)
guest_rc() { grep -qE '^[0-9]+$' "$1/rc" 2>/dev/null; } # DIR: the guest printed its rc (the boot itself worked)
# DONE: "SIGNATURE BRC FAILED" (FAILED: the boot's directory name when one failed, else empty).
need_boot() {
    [[ -f $DONE ]] || return 0
    local dsig brc failed
    read -r dsig brc failed <"$DONE" || return 0
    [[ $dsig == "$sig" ]] || return 0
    if [[ -n $failed ]]; then
        BOOT=$RESULTS/$failed lab_failed_boot_stale "$brc" && return 0
    fi
    return 1
}
if need_boot; then
    rm -f "$DONE" "$ROOT_COPY"
    echo "lab-systemd: booting the systemd lab VM twice on one root (results in $RESULTS)"
    brc=0 failed=""
    "$HERE/boot.sh" --destdir "$DEST" --test "$HERE/tests.sh" --out "$BOOT" --cache "$CACHE" \
        --kernel "$KERNEL" --persistent-root "$ROOT_COPY" || brc=$?
    if guest_rc "$BOOT"; then
        brc2=0
        "$HERE/boot.sh" --destdir "$DEST" --test "$HERE/tests.sh" --out "$BOOT2" --cache "$CACHE" \
            --kernel "$KERNEL" --persistent-root "$ROOT_COPY" --append lab.boot=2 --timeout 900 || brc2=$? # + a nested TCG guest
        guest_rc "$BOOT2" || { brc=$brc2 failed=boot-2; }
    else
        failed=boot
        mkdir -p "$BOOT2"
        rm -f "$BOOT2/console.log" "$BOOT2/secs" "$BOOT2/boot-secs"
        why=$(cat "$BOOT/rc" 2>/dev/null || echo "boot-failed: boot.sh wrote no rc")
        [[ $why == lab-unavailable* ]] || why="boot-failed: the first boot failed ($why)"
        echo "$why" >"$BOOT2/rc"
    fi
    rm -f "$ROOT_COPY" # ~140 MB; the next run starts from the image again
    # The image may have been (re)built by this boot: sign with its new stamp.
    sig2=$(signature)
    echo "$sig2 $brc $failed" >"$DONE"
else
    echo "lab-systemd: reusing the boots in $BOOT and $BOOT2"
fi
for b in "$BOOT" "$BOOT2"; do
    echo "lab-systemd: ${b##*/}: $(cat "$b/secs" 2>/dev/null || echo '?') s, first test at $(cat "$b/boot-secs" 2>/dev/null || echo '?') s"
done

# ---- this test's sections ----------------------------------------------------------------
for s in "${SECTIONS[@]}"; do
    ((${#SECTIONS[@]} == 1)) || echo "--- ${s%%:*}: ${s##*:}" | sed "s|$RESULTS/||"
    src=0
    (BOOT=${s%:*} && lab_section "${s##*:}" && lab_verdict "${s##*:}") || src=$?
    lab_fold "$src"
done
exit "$(lab_folded)"
