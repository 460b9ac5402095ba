#!/bin/bash
# Prepare the hostdev kernel lab: host tools, Debian kernel debs (cached), an
# uncompressed vmlinux, a minimal module tree (incl. an out-of-tree mtty.ko),
# busybox and mdevctl.  Idempotent; ~1 s when cached.
#
# Usage: tests/lab/prepare.sh [CACHE_DIR]       (default <repo>/.cache/lab)
# Exit:  0 ready (CACHE_DIR/current names the kernel set), 77 the machine lacks
#        what the lab needs (apt unreachable and nothing cached), 1 other error.
#
# Never modifies the host beyond `apt-get install` of missing tools.
set -euo pipefail

CACHE=${1:-$(dirname "${BASH_SOURCE[0]}")/../../.cache/lab}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
DEBS=$CACHE/debs
mkdir -p "$DEBS"

# Modules the guest loads (their --show-depends closure is copied in).
# ahci and i2c_i801 give the ICH9 functions 00:1f.* (one IOMMU group) host drivers: a real group conflict.
LAB_MODULES=(vfio vfio_iommu_type1 vfio_pci mdev mtty e1000e nvme ahci i2c_i801)
# A built set is reused only when its stamp carries this signature.
SIG="lab-v1 ${LAB_MODULES[*]}"

log() { printf 'lab-prepare: %s\n' "$*" >&2; }
skip() { printf 'lab-prepare: SKIP: %s\n' "$*" >&2; exit 77; }
die() { printf 'lab-prepare: ERROR: %s\n' "$*" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive LC_ALL=C

apt_updated=0
apt_update_once() {
    [[ $apt_updated == 1 ]] && return 1
    apt_updated=1
    log "apt-get update"
    apt-get update -qq >&2 || return 1
}

# ---- host tools -------------------------------------------------------------
need_pkgs=()
need() { # need CMD PKG
    command -v "$1" >/dev/null 2>&1 || need_pkgs+=("$2")
}
need qemu-system-x86_64 qemu-system-x86
need gcc-12 gcc-12
need make make
need cpio cpio
need depmod kmod
need modprobe kmod
need xz xz-utils
need zstd zstd
need dpkg-deb dpkg
need ldd libc-bin
need timeout coreutils
need flock util-linux
if ((${#need_pkgs[@]})); then
    mapfile -t need_pkgs < <(printf '%s\n' "${need_pkgs[@]}" | sort -u)
    log "installing host packages: ${need_pkgs[*]}"
    if ! apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >&2; then
        apt_update_once || skip "apt unreachable: cannot install ${need_pkgs[*]}"
        apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >&2 ||
            skip "cannot install ${need_pkgs[*]} (apt unreachable?)"
    fi
fi

# ---- which kernel -----------------------------------------------------------
# Prints "ABI VERSION" of the candidate linux-image-amd64, e.g. "6.1.0-56 6.1.192-2".
apt_kernel() {
    local cand dep
    cand=$(apt-cache policy linux-image-amd64 2>/dev/null | awk '/Candidate:/ {print $2}')
    [[ -n $cand && $cand != "(none)" ]] || return 1
    dep=$(apt-cache show "linux-image-amd64=$cand" 2>/dev/null |
        sed -n 's/^Depends: //p' | head -n1 | tr ',' '\n' |
        sed -n 's/^ *linux-image-\([0-9][^ ]*\)-amd64 *(= *\([^)]*\)).*/\1 \2/p' | head -n1)
    [[ -n $dep ]] || return 1
    echo "$dep"
}

current_set() { # "ABI VER" of the last complete set, if any
    [[ -f $CACHE/current ]] || return 1
    local abi ver
    read -r abi ver _ <"$CACHE/current" || return 1
    [[ -f $CACHE/k/${abi}_${ver}/stamp ]] || return 1
    echo "$abi $ver"
}

# apt-cache takes ~0.8 s: remember its answer while apt's lists and config are unchanged.
apt_sig=$(stat -c '%Y:%i' /var/lib/apt/lists /etc/apt /etc/apt/sources.list.d /etc/apt/preferences.d 2>/dev/null |
    tr '\n' ',' || true)
want=""
if [[ -f $CACHE/apt-answer ]]; then
    { read -r sig_line && read -r want_line; } <"$CACHE/apt-answer" || true
    [[ ${sig_line:-} == "$apt_sig" ]] && want=${want_line:-}
fi
if [[ -z $want ]]; then
    want=$(apt_kernel || true)
    [[ -n $want ]] && printf '%s\n%s\n' "$apt_sig" "$want" >"$CACHE/apt-answer"
fi
if [[ -z $want ]] && ! current_set >/dev/null; then
    apt_update_once || true
    want=$(apt_kernel || true)
fi
if [[ -z $want ]]; then
    cur=$(current_set) || skip "apt offers no linux-image-amd64 and no kernel set is cached"
    log "apt offers no kernel; using cached set $cur"
    want=$cur
fi
read -r ABI VER <<<"$want"
KDIR=$CACHE/k/${ABI}_${VER}

if [[ -f $KDIR/stamp && $(<"$KDIR/stamp") == "$SIG" ]]; then
    echo "$ABI $VER $KDIR" >"$CACHE/current"
    log "ready (cached): kernel $ABI-amd64 ($VER) in $KDIR"
    exit 0
fi

# ---- download ---------------------------------------------------------------
# deb file name for PKG at VER in DEBS (apt-get download naming: epoch ':' -> %3a)
deb_of() { # PKG VER
    local v=${2//:/%3a}
    compgen -G "$DEBS/${1}_${v}_*.deb" | head -n1
}
fetch() { # PKG VER
    local f
    f=$(deb_of "$1" "$2" || true)
    [[ -n $f ]] && return 0
    log "downloading $1=$2"
    (cd "$DEBS" && apt-get download -q -o APT::Sandbox::User=root "$1=$2" >&2) && return 0
    apt_update_once && (cd "$DEBS" && apt-get download -q -o APT::Sandbox::User=root "$1=$2" >&2)
}
fetch_set() { # ABI VER
    fetch "linux-image-$1-amd64" "$2" &&
        fetch "linux-headers-$1-amd64" "$2" &&
        fetch "linux-headers-$1-common" "$2" &&
        fetch "linux-kbuild-${2%%.*}.$(cut -d. -f2 <<<"$2")" "$2" &&
        fetch "linux-source-${2%%.*}.$(cut -d. -f2 <<<"$2")" "$2"
}
if ! fetch_set "$ABI" "$VER"; then
    cur=$(current_set || true)
    if [[ -n $cur && $cur != "$ABI $VER" ]]; then
        log "cannot download kernel $ABI ($VER); falling back to cached set $cur"
        read -r ABI VER <<<"$cur"
        KDIR=$CACHE/k/${ABI}_${VER}
        echo "$ABI $VER $KDIR" >"$CACHE/current"
        exit 0
    fi
    # A partially cached older set (debs present, not built)?
    skip "cannot download the kernel packages for $ABI ($VER) (apt unreachable?)"
fi
# Userland debs: any version is fine; keep what is cached if apt fails.
for p in busybox-static mdevctl; do
    if ! compgen -G "$DEBS/${p}_*.deb" >/dev/null; then
        log "downloading $p"
        (cd "$DEBS" && apt-get download -q -o APT::Sandbox::User=root "$p" >&2) ||
            { apt_update_once && (cd "$DEBS" && apt-get download -q -o APT::Sandbox::User=root "$p" >&2); } ||
            skip "cannot download $p (apt unreachable?)"
    fi
done

# ---- unpack & build ---------------------------------------------------------
KVER=$ABI-amd64
SERIES=${VER%%.*}.$(cut -d. -f2 <<<"$VER")
rm -rf "$KDIR"
mkdir -p "$KDIR"
ROOT=$KDIR/root
mkdir -p "$ROOT"
log "unpacking kernel $KVER ($VER)"
for p in "linux-image-$KVER" "linux-headers-$KVER" "linux-headers-$ABI-common" "linux-kbuild-$SERIES"; do
    dpkg-deb -x "$(deb_of "$p" "$VER")" "$ROOT"
done

# Userland: busybox and mdevctl.
mkdir -p "$KDIR/busybox-root" "$KDIR/mdevctl-root"
dpkg-deb -x "$(compgen -G "$DEBS/busybox-static_*.deb" | sort -V | tail -n1)" "$KDIR/busybox-root"
dpkg-deb -x "$(compgen -G "$DEBS/mdevctl_*.deb" | sort -V | tail -n1)" "$KDIR/mdevctl-root"
cp "$KDIR/busybox-root/bin/busybox" "$KDIR/busybox"
"$KDIR/busybox" true || die "unpacked busybox does not run"

# Uncompressed vmlinux from vmlinuz (like the kernel's scripts/extract-vmlinux).
extract_vmlinux() { # IN OUT
    local in=$1 out=$2 spec pat tool off
    for spec in '\xfd7zXZ\x00|xz -dc' '\x28\xb5\x2f\xfd|zstd -dcq' '\x1f\x8b\x08\x00|gzip -dc' \
        '\x5d\x00\x00\x00|xz -F lzma -dc'; do
        pat=${spec%%|*}
        tool=${spec#*|}
        while read -r off; do
            [[ -n $off ]] || continue
            # shellcheck disable=SC2086
            tail -c +$((off + 1)) "$in" | $tool >"$out.tmp" 2>/dev/null || true
            if [[ $(head -c4 "$out.tmp" | od -An -tx1 | tr -d ' \n') == 7f454c46 ]]; then
                mv "$out.tmp" "$out"
                return 0
            fi
        done < <(grep -obUaP "$pat" "$in" | cut -d: -f1 | head -n5)
    done
    rm -f "$out.tmp"
    return 1
}
log "extracting vmlinux"
cp "$ROOT/boot/vmlinuz-$KVER" "$KDIR/vmlinuz"
extract_vmlinux "$KDIR/vmlinuz" "$KDIR/vmlinux" || die "cannot extract vmlinux from vmlinuz"

# mtty.c out of linux-source (extract only that file).
log "extracting samples/vfio-mdev/mtty.c from linux-source-$SERIES"
mkdir -p "$KDIR/mtty"
mkdir -p "$CACHE/src"
src_c=$CACHE/src/mtty-$VER.c # the 139 MB tarball is slow to scan: keep the file
if [[ ! -s $src_c ]]; then
    src_deb=$(deb_of "linux-source-$SERIES" "$VER")
    tarball=$(dpkg-deb -c "$src_deb" | awk '{print $NF}' | grep -E "linux-source-$SERIES\.tar\.[a-z]+$" | head -n1)
    [[ -n $tarball ]] || die "no source tarball in $src_deb"
    case $tarball in
    *.xz) dec="xz -dc" ;;
    *.zst) dec="zstd -dcq" ;;
    *.bz2) dec="bzip2 -dc" ;;
    *) dec="gzip -dc" ;;
    esac
    # shellcheck disable=SC2086
    dpkg-deb --fsys-tarfile "$src_deb" | tar -xOf - "$tarball" | $dec |
        tar -xOf - "linux-source-$SERIES/samples/vfio-mdev/mtty.c" >"$src_c.tmp"
    [[ -s $src_c.tmp ]] || die "mtty.c not found in $tarball"
    mv "$src_c.tmp" "$src_c"
fi
cp "$src_c" "$KDIR/mtty/mtty.c"
echo 'obj-m := mtty.o' >"$KDIR/mtty/Kbuild"

HDR=$ROOT/usr/src/linux-headers-$KVER
[[ -f $HDR/Makefile ]] || die "no headers at $HDR"
# The arch headers' Makefile includes the common tree by absolute path.
sed -i "s#^include /usr/src/#include $ROOT/usr/src/#" "$HDR/Makefile"
# Absolute symlinks (scripts, tools) would point into the host: re-point them.
while read -r l; do
    t=$(readlink "$l")
    [[ $t == /* ]] && ln -sfn "$ROOT$t" "$l"
done < <(find "$ROOT/usr/src" -maxdepth 2 -type l)
log "building mtty.ko"
make -s -C "$HDR" M="$KDIR/mtty" CC=gcc-12 HOSTCC=gcc-12 modules >"$KDIR/mtty/build.log" 2>&1 ||
    { cat "$KDIR/mtty/build.log" >&2; die "mtty.ko build failed"; }
[[ -f $KDIR/mtty/mtty.ko ]] || die "mtty.ko missing after build"

# Minimal module tree: the closure of LAB_MODULES, decompressed, plus mtty.ko.
log "module closure"
MODS=$ROOT/lib/modules/$KVER
mkdir -p "$MODS/extra"
cp "$KDIR/mtty/mtty.ko" "$MODS/extra/mtty.ko"
depmod -b "$ROOT" "$KVER"
MIN=$KDIR/mods
rm -rf "$MIN"
mkdir -p "$MIN/lib/modules/$KVER"
for f in modules.order modules.builtin modules.builtin.modinfo; do
    [[ -f $MODS/$f ]] && cp "$MODS/$f" "$MIN/lib/modules/$KVER/"
done
for m in "${LAB_MODULES[@]}"; do
    modprobe -d "$ROOT" -S "$KVER" --show-depends "$m" >/dev/null ||
        die "module $m not found in $KVER"
    while read -r kind path _; do
        [[ $kind == insmod ]] || continue
        rel=${path#"$ROOT"}
        dst=$MIN${rel%.xz}
        dst=${dst%.zst}
        [[ -f $dst ]] && continue
        mkdir -p "$(dirname "$dst")"
        case $path in
        *.xz) xz -dc "$path" >"$dst" ;;
        *.zst) zstd -dcq "$path" >"$dst" ;;
        *) cp "$path" "$dst" ;;
        esac
    done < <(modprobe -d "$ROOT" -S "$KVER" --show-depends "$m")
done
depmod -b "$MIN" "$KVER"
# Ordered load list for the guest (insmod lines, guest paths).
: >"$KDIR/modload.list"
for m in "${LAB_MODULES[@]}"; do
    modprobe -d "$MIN" -S "$KVER" --show-depends "$m" |
        awk -v r="$MIN" '$1 == "insmod" { p = $2; if (index(p, r) == 1) p = substr(p, length(r) + 1); print p }'
done | awk '!seen[$0]++' >"$KDIR/modload.list"

echo "$ABI $VER" >"$KDIR/abi"
rm -rf "$ROOT" # ~0.5 GB; the debs stay cached
echo "$SIG" >"$KDIR/stamp"
echo "$ABI $VER $KDIR" >"$CACHE/current"
log "ready: kernel $KVER ($VER) in $KDIR"
