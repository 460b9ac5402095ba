#!/bin/bash
# bench.sh BUILD_DIR — runs bench.py on a private bus (harness.sh) against BUILD_DIR's hostdevd-fake.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: bench.sh BUILD_DIR}" && pwd)
export HOSTDEV_FAKE=$build/tests/bus/hostdevd-fake HOSTDEV_SRC=$(cd "$here/../.." && pwd)
exec "$here/harness.sh" passthrough /usr/bin/python3 "$here/bench.py"
