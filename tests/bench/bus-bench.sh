#!/bin/bash
# The bus benchmark on one fixture host, inside tests/bus/harness.sh (a private bus, the real polkitd,
# hostdevd-fake and the bench-anchor floor, both bus-activated):
#   harness.sh FIXTURE bus-bench.sh BUS_BENCH [ROUNDS]
# Prints bus-bench's table, then how many files hostdevd opens per read call (strace, after start).
set -euo pipefail
bench=$1 rounds=${2:-300}
out_dir=${HOSTDEV_TEST_DIR:-$(mktemp -d)}
"$bench" "$rounds" | tee "$out_dir/bench.out"
# Activation includes hostdevd-fake building its fixture tree: the daemon's log says how long that took, and how
# long hostdevd itself took from its start to serving.
if [ -n "${HOSTDEV_TEST_DIR:-}" ] && [ -f "$HOSTDEV_TEST_DIR/daemon.log" ]; then
  grep -ohE 'fixture [a-z0-9-]+ built in [0-9]+ ms' "$HOSTDEV_TEST_DIR/daemon.log" | head -n 1 | sed 's/^/  of the activation: /' || true
  # What a real host's activation would be: the same measurement less the fixture's building, which only the
  # test daemon does.
  act=$(sed -n 's/^activation to first reply: hostdevd \([0-9.]*\) ms.*/\1/p' "$out_dir/bench.out")
  built=$(grep -ohE 'fixture [a-z0-9-]+ built in [0-9]+ ms' "$HOSTDEV_TEST_DIR/daemon.log" | head -n 1 | awk '{print $5}')
  [ -n "$act" ] && [ -n "$built" ] &&
    awk -v a="$act" -v b="$built" 'BEGIN { printf "  activation less the fixture building: %.1f ms\n", a - b }'
  grep -ohE 'ready in [0-9]+ ms: reading the host [0-9]+ ms \([0-9]+ PCI functions\), the bus objects [0-9]+ ms' \
    "$HOSTDEV_TEST_DIR/daemon.log" | head -n 1 | sed 's/^/  hostdevd: /' || true
fi
pid=$(busctl --system call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
  GetConnectionUnixProcessID s org.hostdev.Passthrough1 | awk '{print $2}')
reads=3000 # a few seconds: long enough to see a refresh of an old model, if reads cause one
if command -v strace >/dev/null; then
  out=$(mktemp)
  strace -f -qq -e trace=open,openat,openat2 -o "$out" -p "$pid" &
  st=$!
  sleep 0.5
  "$bench" --reads "$reads"
  sleep 0.2
  kill -INT "$st" 2>/dev/null || true
  wait "$st" 2>/dev/null || true
  opens=$(grep -cE 'open(at2?)?\(' "$out" || true)
  echo "files hostdevd opened during $reads reads (strace): $opens ($(awk -v o="$opens" -v n="$reads" 'BEGIN { printf "%.2f", o / n }') per read)"
  grep -oE 'open(at2?)?\([^,]*, "[^"]*"' "$out" | sed 's/.*"\(.*\)"/\1/' | sed -E 's/[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-9a-f]/ADDR/g' |
    sort | uniq -c | sort -rn | head -n 5 | sed 's/^/  /' || true
  rm -f "$out"
else
  echo "files hostdevd opened per read: strace is not installed"
fi

# The production hostdevd on the same host (the figures above are of hostdevd-fake, whose fixture builder and
# fake kernel are test code it carries): make-fixture-tree writes the fixture's tree, the test daemon is
# stopped, and the real daemon, started by hand on that tree, owns the name for the RSS figure.
if [ -n "${HOSTDEV_DAEMON:-}" ] && [ -n "${HOSTDEV_MAKE_TREE:-}" ] && [ -n "${HOSTDEV_FIXTURE:-}" ]; then
  has_owner() {
    busctl --system call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus NameHasOwner s \
      org.hostdev.Passthrough1 | grep -q true
  }
  tree=$(mktemp -d /dev/shm/hostdev-real.XXXXXX)
  "$HOSTDEV_MAKE_TREE" "$HOSTDEV_FIXTURE" "$tree/root"
  kill "$pid"
  for _ in $(seq 100); do has_owner || break; sleep 0.1; done
  "$HOSTDEV_DAEMON" --sysfs-root "$tree/root" --state-dir "$tree/state" --bus system >"$out_dir/real.log" 2>&1 &
  real=$!
  for _ in $(seq 300); do has_owner && break; sleep 0.1; done
  "$bench" --rss | sed 's/^/the production daemon: /'
  kill "$real" 2>/dev/null || true
  wait "$real" 2>/dev/null || true
  rm -rf "$tree"
fi
