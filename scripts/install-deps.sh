#!/usr/bin/env bash
# Installs the Debian 12 packages hostdev needs to build and test. Fast when they are all there already.
# Usage: scripts/install-deps.sh [build|lab|all]
set -euo pipefail

build_pkgs=(g++ meson ninja-build pkg-config libsystemd-dev libsdbus-c++-dev libsdbus-c++-bin
            nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev udev dbus-daemon polkitd python3-dbus python3-gi
            man-db groff-base util-linux bsdutils clang-format git strace clang libclang-rt-14-dev)
lab_pkgs=(qemu-system-x86 busybox-static cpio kmod gcc-12 make xz-utils zstd mdevctl)

want=("${build_pkgs[@]}")
case "${1:-build}" in
  build) ;;
  lab) want+=("${lab_pkgs[@]}") ;;
  all) want+=("${lab_pkgs[@]}") ;;
  *) echo "usage: $0 [build|lab|all]" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "hostdev: missing packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "hostdev: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/hostdev-apt.log 2>&1; then
  apt-get update -q >>/tmp/hostdev-apt.log 2>&1
  apt-get install -y -q --no-install-recommends "${missing[@]}" >>/tmp/hostdev-apt.log 2>&1 ||
    { tail -20 /tmp/hostdev-apt.log >&2; exit 1; }
fi
