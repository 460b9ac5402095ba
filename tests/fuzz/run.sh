#!/bin/sh
# One libFuzzer harness for $FUZZ_SECONDS seconds (default 20), seeded from the committed corpus:
#   run.sh FUZZER SEED_DIR OUT_DIR
# New inputs and any crash (crash-*, with the input that caused it) go to OUT_DIR, never into the source tree.
set -eu
mkdir -p "$3"
# A finding must fail the test: libFuzzer's default exit code (77) means "skipped" to meson.
exec "$1" -max_total_time="${FUZZ_SECONDS:-20}" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
  -error_exitcode=1 -timeout_exitcode=1 \
  -artifact_prefix="$3/" "$3" "$2"
