#!/usr/bin/env bash
# Builds hostdev and runs every test suite. Installs what it needs (Debian 12, as root).
#   ./test.sh            unit, bus and cli-bus suites (plain and under ASan/UBSan), the fuzzers, then the lab suites
#   ./test.sh --unit     everything but the lab VM
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

mode=all
case "${1:-}" in
  "") ;;
  --unit) mode=unit ;;
  *) echo "usage: $0 [--unit]" >&2; exit 2 ;;
esac

scripts/install-deps.sh "$([ $mode = unit ] && echo build || echo all)"

setup() { # dir, meson options...
  local dir=$1; shift
  if [ ! -f "$dir/build.ninja" ]; then meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; exit 1; }; fi
}
setup build
setup build-asan -Dsanitize=true

passed=0 failed=0 skipped=0
run() { # label, meson test args...
  local label=$1; shift
  echo "== $label"
  local out rc=0 t0=$SECONDS
  out=$(meson test "$@" --print-errorlogs 2>&1) || rc=$?
  echo "($((SECONDS - t0)) s; ${SECONDS} s since the start)"
  echo "$out" | grep -vE '^(ninja: |\[[0-9]+/[0-9]+\] )' | tail -n 40
  local ok fail skip timeout
  ok=$(echo "$out" | sed -n 's/^Ok: *\([0-9]*\).*/\1/p' | tail -1)
  fail=$(echo "$out" | sed -n 's/^Fail: *\([0-9]*\).*/\1/p' | tail -1)
  timeout=$(echo "$out" | sed -n 's/^Timeout: *\([0-9]*\).*/\1/p' | tail -1)
  skip=$(echo "$out" | sed -n 's/^Skipped: *\([0-9]*\).*/\1/p' | tail -1)
  passed=$((passed + ${ok:-0})); failed=$((failed + ${fail:-0} + ${timeout:-0})); skipped=$((skipped + ${skip:-0}))
  if [ $rc -ne 0 ] && [ "${fail:-0}${timeout:-0}" = "00" ]; then failed=$((failed + 1)); echo "meson test failed (rc=$rc)"; fi
}

ninja -C build >/dev/null
run "unit tests, then the daemon and CLI on a private system bus with the real polkitd" \
  -C build --suite unit --suite bus --suite cli-bus
run "the Cockpit page in headless Chromium (cockpit-ws, the real polkitd, hostdevd-fake)" -C build --suite cockpit
ninja -C build-asan >/dev/null
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0 \
  run "the same under ASan/UBSan" -C build-asan --suite unit --suite bus --suite cli-bus
# libFuzzer harnesses (clang, ASan/UBSan), each for a bounded time from the committed seeds.
CXX=clang++ setup build-fuzz -Dfuzz=true
ninja -C build-fuzz fuzzers >/dev/null
run "fuzzing: every parser of untrusted bytes, ${FUZZ_SECONDS:-20} s each (libFuzzer)" \
  -C build-fuzz --suite fuzz --no-rebuild --num-processes 1
if [ $mode = all ] && [ -n "$(meson test -C build --list 2>/dev/null | grep -E '^(hostdev:)?(lab|e2e|systemd) /' || true)" ]; then
  run "lab, e2e and systemd suites (QEMU VMs with a real kernel; nested guest; systemd as init)" \
    -C build --suite lab --suite e2e --suite systemd --num-processes 1
fi

echo
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
