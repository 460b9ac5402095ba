#!/bin/bash
# One meson test of the systemd lab (suite 'systemd').  Every test calls
#   tests/lab/systemd/run-test.sh NAME RESULTS_DIR SOURCE_ROOT
# Under an flock on RESULTS/lock the first caller
#  1. configures RESULTS/build-usr from SOURCE_ROOT with the prefix a distro
#     package uses (--prefix=/usr --sysconfdir=/etc --localstatedir=/var),
#     builds only the installed targets, and runs
#     `meson install --no-rebuild --destdir RESULTS/destdir`;
#  2. boots the VM once (tests/lab/systemd/boot.sh, output in RESULTS/boot/)
#     with that DESTDIR and tests/lab/systemd/tests.sh,
# and every caller prints NAME's section of the console and exits with its rc
# (0 pass, 77 skip, else fail).  The boot is reused while the DESTDIR's
# content, tests/lab/systemd/, tests/lab/guest/lib.sh and the root image are
# unchanged (a failed boot for 120 s only); `rm RESULTS/done` forces one.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_TAG=lab-systemd LAB_KIND="systemd lab" LAB_RC_WORD=rc
LAB=$(cd "$HERE/.." && pwd)
REPO=$(cd "$LAB/../.." && pwd)
# shellcheck source=tests/lab/lib/results.sh
. "$LAB/lib/results.sh"

(($# == 3)) || { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
NAME=$1
mkdir -p "$2"
RESULTS=$(cd "$2" && pwd)
SRC=$(cd "$3" && pwd)
CACHE=${HOSTDEV_LAB_CACHE:-$REPO/.cache/lab}
BUILD=$RESULTS/build-usr
DEST=$RESULTS/destdir
BOOT=$RESULTS/boot
DONE=$RESULTS/done

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
    ninja -C "$BUILD" "${outs[@]}" >"$RESULTS/build.log" 2>&1 ||
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
        sha256sum "$HERE"/*.sh "$HERE"/guest/* "$LAB/guest/lib.sh" "$LAB"/lib/*.sh
        cat "$CACHE/systemd/stamp" 2>/dev/null || true
    } | sha256sum | cut -c1-32
}
sig=$(signature)
need_boot() {
    [[ -f $DONE ]] || return 0
    local dsig brc
    read -r dsig brc <"$DONE" || return 0
    [[ $dsig == "$sig" ]] || return 0
    lab_failed_boot_stale "$brc" && return 0
    return 1
}
if need_boot; then
    rm -f "$DONE"
    echo "lab-systemd: booting the systemd lab VM (results in $RESULTS)"
    brc=0
    "$HERE/boot.sh" --destdir "$DEST" --test "$HERE/tests.sh" --out "$BOOT" --cache "$CACHE" || brc=$?
    # The image may have been (re)built by this boot: sign with its new stamp.
    sig2=$(signature)
    echo "$sig2 $brc" >"$DONE"
else
    echo "lab-systemd: reusing the boot in $BOOT ($(cat "$BOOT/secs" 2>/dev/null || echo '?') s)"
fi

# ---- this test's section ----------------------------------------------------------------
lab_section "$NAME"
echo "lab-systemd: boot $(cat "$BOOT/secs" 2>/dev/null || echo '?') s, first test at $(cat "$BOOT/boot-secs" 2>/dev/null || echo '?') s"
lab_verdict "$NAME"
