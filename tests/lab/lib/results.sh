# shellcheck shell=bash
# Sourced by tests/lab/suite.sh and tests/lab/systemd/run-test.sh (bash): one meson test out of a shared boot.
# The caller sets RESULTS, BOOT (the boot's OUT dir) and DONE (RESULTS/done: what the boot was made from, and its
# exit status as the last word), and LAB_TAG (message prefix), LAB_KIND (what boots, for messages) and
# LAB_RC_WORD (what the guest's rc is called).
#   lab_lock                    takes the flock on RESULTS/lock (held until exit)
#   lab_failed_boot_stale BRC   0 when the last boot failed (exit BRC, no rc of the guest) more than 120 s ago
#   lab_section NAME            prints NAME's section of BOOT/console.log; sets trc, secs and section
#   lab_verdict NAME            says how NAME went and exits with its rc (0 pass, 77 skip, else fail)
#   lab_fold RC / lab_folded    one meson test made of several sections: folds each section's rc; lab_folded
#                               prints the test's rc (the first failure, else 77 if one was skipped, else 0)
#
# The payload prints, per test,
#   === LAB-TEST BEGIN <name>
#   ...output...
#   === LAB-TEST END <name> rc=<N> secs=<S>
# (/lab/lib.sh's `lab_test NAME CMD...` does this).  A test missing from the log fails ("did not run"); a failed
# boot fails every test with the reason and the console tail; a lab unavailable on this machine skips (77).

LAB_FOLD_FINAL=0 LAB_FOLD_SKIPPED=0
lab_fold() { # RC
    if (($1 == 77)); then
        LAB_FOLD_SKIPPED=1
    elif (($1 != 0 && LAB_FOLD_FINAL == 0)); then
        LAB_FOLD_FINAL=$1
    fi
}
lab_folded() {
    if ((LAB_FOLD_FINAL == 0 && LAB_FOLD_SKIPPED)); then echo 77; else echo "$LAB_FOLD_FINAL"; fi
}

lab_lock() {
    exec 9>"$RESULTS/lock"
    flock 9
}

lab_failed_boot_stale() { # BRC
    [[ $1 != 0 ]] && ! grep -qE '^[0-9]+$' "$BOOT/rc" 2>/dev/null || return 1
    local age
    age=$(($(date +%s) - $(stat -c %Y "$DONE")))
    ((age > 120))
}

lab_section() { # NAME
    local rc endline
    rc=$(cat "$BOOT/rc" 2>/dev/null || echo "boot-failed: boot.sh wrote no rc")
    if ! [[ $rc =~ ^[0-9]+$ ]]; then
        if [[ $rc == lab-unavailable* ]]; then
            echo "SKIP: $rc"
            exit 77
        fi
        echo "FAIL: $1: the $LAB_KIND boot failed: $rc"
        if [[ -f $BOOT/console.log ]]; then
            echo "--- console tail ($BOOT/console.log)"
            tr -d '\r' <"$BOOT/console.log" | tail -n 40
        fi
        exit 1
    fi
    section=$(tr -d '\r' <"$BOOT/console.log" | awk -v n="$1" '
        !found && $0 == "=== LAB-TEST BEGIN " n { on = 1; found = 1; next }
        on && index($0, "=== LAB-TEST END " n " rc=") == 1 { print; on = 0; next }
        on { print }
        END { if (!found) exit 3 }') || {
        echo "FAIL: $1 did not run (no '=== LAB-TEST BEGIN $1' in $BOOT/console.log; $LAB_RC_WORD=$rc)"
        exit 1
    }
    endline=$(tail -n1 <<<"$section")
    if [[ $endline =~ ^===\ LAB-TEST\ END\ .*\ rc=([0-9]+)\ secs=([0-9.]+)$ ]]; then
        trc=${BASH_REMATCH[1]}
        secs=${BASH_REMATCH[2]}
        sed '$d' <<<"$section"
    else
        echo "$section"
        echo "FAIL: $1 began but never ended (guest crashed or stopped; $LAB_RC_WORD=$rc)"
        exit 1
    fi
}

lab_verdict() { # NAME
    case $trc in
    0) echo "$LAB_TAG: $1 passed in $secs s" ;;
    77) echo "$LAB_TAG: $1 skipped ($(grep -m1 "^SKIP:" <<<"$section" | sed "s/^SKIP: *//" || true))" ;;
    *) echo "$LAB_TAG: $1 FAILED rc=$trc in $secs s" ;;
    esac
    exit "$trc"
}
