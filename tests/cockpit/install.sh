#!/usr/bin/env bash
# Installs what the cockpit suite needs: Debian's cockpit-ws, cockpit-bridge and chromium (as root), and
# playwright-core from npm (tests/cockpit/package-lock.json) into .cache/cockpit of the source tree.
# Fast when everything is there already; several tests may call it at once (it takes a lock).
#   tests/cockpit/install.sh
set -euo pipefail
src=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)
here=$src/tests/cockpit
cache=${HOSTDEV_COCKPIT_CACHE:-$src/.cache/cockpit}

pkgs=(cockpit-ws cockpit-bridge chromium dbus-daemon polkitd util-linux iproute2)
mkdir -p "$cache"
exec 9>"$cache/install.lock"
flock 9

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "cockpit tests: missing packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "cockpit tests: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  log=$cache/apt.log
  apt_install() {
    apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=120 "${missing[@]}" >>"$log" 2>&1
  }
  : >"$log"
  if ! apt_install; then
    apt-get update -q -o DPkg::Lock::Timeout=120 >>"$log" 2>&1 || true
    apt_install || { tail -n 20 "$log" >&2; exit 1; }
  fi
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "cockpit tests: node and npm are needed (Node.js 20 or newer)" >&2
  exit 1
fi

# playwright-core at the version of the lock file; npm ci only when it differs.
want=$(node -e 'const l=require(process.argv[1]); console.log(l.packages["node_modules/playwright-core"].version)' \
  "$here/package-lock.json")
have=$(node -e 'try{console.log(require(process.argv[1]).version)}catch(e){console.log("")}' \
  "$cache/node_modules/playwright-core/package.json")
if [ "$want" != "$have" ]; then
  echo "cockpit tests: installing playwright-core $want into $cache"
  cp "$here/package.json" "$here/package-lock.json" "$cache/"
  (cd "$cache" && npm ci --no-audit --no-fund --loglevel=error >"$cache/npm.log" 2>&1) ||
    { tail -n 20 "$cache/npm.log" >&2; exit 1; }
fi
