# shellcheck shell=bash
# Sourced by the lab's scripts (bash): LAB = tests/lab, REPO = the repository, and the lab cache.
LAB=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO=$(cd "$LAB/../.." && pwd)

lab_cache_dir() { # [DIR]: CACHE = DIR (default REPO/.cache/lab), created, as an absolute path
    CACHE=${1:-$REPO/.cache/lab}
    mkdir -p "$CACHE"
    CACHE=$(cd "$CACHE" && pwd)
}
