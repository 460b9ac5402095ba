#!/bin/bash
# Prepare the hostdev kernel lab for one kernel flavour: host tools, Debian kernel debs (cached), an
# uncompressed vmlinux, a minimal module tree (incl. the out-of-tree mtty.ko and nvidia_vgpu_sim.ko), holdvf,
# busybox and mdevctl.  Idempotent; ~1 s when cached.
#
# Usage: tests/lab/prepare.sh [--kernel 6.1|6.12] [CACHE_DIR]     (default 6.1, <repo>/.cache/lab)
#   6.1   the linux-image-amd64 the machine's apt offers (Debian 12's kernel)
#   6.12  the linux-image-amd64 of <codename>-backports, looked up and downloaded through a private apt
#         configuration in CACHE_DIR/apt-6.12 (the machine's mirror and keyring; its apt is never changed)
# Exit:  0 ready (CACHE_DIR/current, or current-6.12, names the kernel set), 77 the machine lacks what the lab
#        needs (apt unreachable and nothing cached), 1 other error.
#
# Never modifies the host beyond `apt-get install` of missing tools.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lab/lib/flavour.sh
. "$HERE/lib/flavour.sh"

KERNEL=$LAB_DEFAULT_KERNEL CACHE=""
while (($#)); do
    case $1 in
    --kernel) KERNEL=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
    -*) echo "prepare.sh: unknown argument $1" >&2; exit 2 ;;
    *) CACHE=$1; shift ;;
    esac
done
lab_flavour "$KERNEL" || exit 2
CACHE=${CACHE:-$HERE/../../.cache/lab}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
DEBS=$CACHE/debs
mkdir -p "$DEBS"

# Modules the guest loads (their --show-depends closure is copied in).
# ahci and i2c_i801 give the ICH9 functions 00:1f.* (one IOMMU group) host drivers: a real group conflict.
# virtio_pci and virtio_blk: the state disk of the reboot tests (boot.sh --state-disk; no device otherwise).
LAB_MODULES=(vfio vfio_iommu_type1 vfio_pci mdev mtty e1000e nvme ahci i2c_i801 virtio_pci virtio_blk)
# A built set is reused only when its stamp carries this signature.
SIG="lab-v1 ${LAB_MODULES[*]}"
((LAB_CDEV)) && SIG="$SIG cdev-v1"
# The guest's insmod order: the vGPU simulator before nvme (the kernel tries drivers in the order they
# registered, and both match the NVMe functions that play GPUs).
LOAD_ORDER=(vfio vfio_iommu_type1 vfio_pci mdev mtty nvidia_vgpu_sim e1000e nvme ahci i2c_i801 virtio_pci virtio_blk)
NVSIM_SRC=$HERE/nvsim

log() { printf 'lab-prepare: %s\n' "$*" >&2; }
skip() { printf 'lab-prepare: SKIP: %s\n' "$*" >&2; exit 77; }
die() { printf 'lab-prepare: ERROR: %s\n' "$*" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive LC_ALL=C

# The machine's apt (the host tools, the userland debs, and the kernel of flavour 6.1).
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
need sha256sum coreutils
[[ -f /usr/lib/x86_64-linux-gnu/libc.a ]] || need_pkgs+=(libc6-dev) # holdvf is linked static
if ((${#need_pkgs[@]})); then
    mapfile -t need_pkgs < <(printf '%s\n' "${need_pkgs[@]}" | sort -u)
    log "installing host packages: ${need_pkgs[*]}"
    if ! apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >&2; then
        apt_update_once || skip "apt unreachable: cannot install ${need_pkgs[*]}"
        apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >&2 ||
            skip "cannot install ${need_pkgs[*]} (apt unreachable?)"
    fi
fi

# ---- where the kernel comes from -------------------------------------------
# KAPT: the options of every apt-get/apt-cache call about the kernel packages.  Flavour 6.1: none (the
# machine's apt).  Flavour 6.12: a private configuration in CACHE/apt-6.12 whose only source is
# <codename>-backports on the machine's own Debian mirror, pinned to the kernel packages, with its own lists,
# cache and (empty) dpkg status: it never changes what the machine's apt sees or installs, and the build of
# hostdev never uses it.
KAPT=()
KAPT_DIR=""
kapt_updated=0
# The machine's Debian mirror for its codename and the keyring it is checked with: "URI KEYRING" (KEYRING "-"
# when apt's sources name none).
machine_mirror() {
    local codename uri entry file n key=""
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    [[ -n $codename ]] || return 1
    # shellcheck disable=SC2016 # apt's format variables
    read -r uri entry < <(apt-get indextargets --format '$(REPO_URI) $(SOURCESENTRY)' "Identifier: Packages" \
        "Origin: Debian" "Codename: $codename" "Release: $codename" 2>/dev/null | head -n1) || return 1
    [[ -n $uri ]] || return 1
    uri=${HOSTDEV_LAB_MIRROR:-$uri}
    file=${entry%:*} n=${entry##*:}
    if [[ $file == *.sources && -f $file ]]; then # deb822: the Signed-By of stanza n, when it is a file
        key=$(awk -v n="$n" 'BEGIN { s = 1 } /^[[:space:]]*$/ { if (seen) s++; seen = 0; next }
            { seen = 1 } s == n && tolower($1) == "signed-by:" { print $2; exit }' "$file")
    elif [[ -f $file ]]; then # one-line: [signed-by=...] on line n
        key=$(sed -n "${n}p" "$file" | sed -n 's/.*signed-by=\([^] ]*\).*/\1/p')
    fi
    [[ $key == /* && -f $key ]] || key=""
    [[ -n $key || ! -f /usr/share/keyrings/debian-archive-keyring.gpg ]] || key=/usr/share/keyrings/debian-archive-keyring.gpg
    echo "$uri ${key:--} $codename"
}
put_if_changed() { # FILE CONTENT: keeps the time stamp (and so apt-answer) when nothing changed
    [[ -f $1 && $(<"$1") == "$2" ]] || printf '%s\n' "$2" >"$1"
}
if [[ $LAB_APT == backports ]]; then
    KAPT_DIR=$CACHE/apt-$KERNEL
    mkdir -p "$KAPT_DIR"/{sources.list.d,preferences.d,state/lists/partial,cache/archives/partial}
    # apt-get indextargets takes ~0.4 s: asked again only when the machine's apt sources change.
    msig="$(stat -c '%Y:%i' /etc/apt/sources.list /etc/apt/sources.list.d /etc/apt/sources.list.d/* 2>/dev/null |
        tr '\n' ',' || true) ${HOSTDEV_LAB_MIRROR:-}"
    if [[ -f $KAPT_DIR/sources.list && -f $KAPT_DIR/machine-sig && $(<"$KAPT_DIR/machine-sig") == "$msig" ]]; then
        : # as written last time
    elif mm=$(machine_mirror); then
        read -r m_uri m_key m_codename <<<"$mm"
        opt=""
        [[ $m_key == - ]] || opt="[signed-by=$m_key] "
        put_if_changed "$KAPT_DIR/sources.list" "deb ${opt}$m_uri $m_codename-backports main"
        put_if_changed "$KAPT_DIR/preferences" "Package: *
Pin: release n=$m_codename-backports
Pin-Priority: -1

Package: linux-image-amd64 linux-image-* linux-headers-* linux-kbuild-* linux-source-*
Pin: release n=$m_codename-backports
Pin-Priority: 500"
        echo "$msig" >"$KAPT_DIR/machine-sig"
    elif [[ ! -f $KAPT_DIR/sources.list ]]; then
        log "no Debian mirror in the machine's apt sources for the backports kernel"
    fi
    [[ -f $KAPT_DIR/status ]] || : >"$KAPT_DIR/status"
    KAPT=(-o "Dir::Etc::SourceList=$KAPT_DIR/sources.list" -o "Dir::Etc::SourceParts=$KAPT_DIR/sources.list.d"
        -o "Dir::Etc::Preferences=$KAPT_DIR/preferences" -o "Dir::Etc::PreferencesParts=$KAPT_DIR/preferences.d"
        -o "Dir::State=$KAPT_DIR/state" -o "Dir::State::status=$KAPT_DIR/status" -o "Dir::Cache=$KAPT_DIR/cache")
fi
kapt_update_once() { # the lists the kernel comes from
    if [[ $LAB_APT == machine ]]; then
        apt_update_once
        return
    fi
    [[ $kapt_updated == 1 ]] && return 1
    kapt_updated=1
    log "apt-get update ($(cat "$KAPT_DIR/sources.list"))"
    apt-get "${KAPT[@]}" -o APT::Sandbox::User=root update -qq >&2 || return 1
}
if [[ $LAB_APT == backports && -f $KAPT_DIR/sources.list ]] &&
    ! compgen -G "$KAPT_DIR/state/lists/*_Packages*" >/dev/null; then
    kapt_update_once || true # first use: no lists yet
fi

# ---- which kernel -----------------------------------------------------------
# Prints "ABI VERSION" of the candidate linux-image-amd64, e.g. "6.1.0-56 6.1.192-2" or
# "6.12.95+deb12 6.12.95-1~bpo12+1", when it is of the flavour's series.
apt_kernel() {
    local cand dep
    cand=$(apt-cache "${KAPT[@]}" policy linux-image-amd64 2>/dev/null | awk '/Candidate:/ {print $2}')
    [[ -n $cand && $cand != "(none)" ]] || return 1
    dep=$(apt-cache "${KAPT[@]}" show "linux-image-amd64=$cand" 2>/dev/null |
        sed -n 's/^Depends: //p' | head -n1 | tr ',' '\n' |
        sed -n 's/^ *linux-image-\([0-9][^ ]*\)-amd64 *(= *\([^)]*\)).*/\1 \2/p' | head -n1)
    [[ -n $dep ]] || return 1
    if [[ ${dep#* } != "$KERNEL".* ]]; then
        log "apt's linux-image-amd64 is ${dep#* }, not of the $KERNEL series"
        return 1
    fi
    echo "$dep"
}

current_set() { # "ABI VER" of the last complete set of this flavour, if any
    [[ -f $CACHE/$LAB_CURRENT ]] || return 1
    local abi ver
    read -r abi ver _ <"$CACHE/$LAB_CURRENT" || return 1
    [[ -f $CACHE/k/${abi}_${ver}/stamp ]] || return 1
    echo "$abi $ver"
}

# apt-cache takes ~0.8 s: remember its answer while apt's lists and config are unchanged.
if [[ $LAB_APT == machine ]]; then
    apt_sig=$(stat -c '%Y:%i' /var/lib/apt/lists /etc/apt /etc/apt/sources.list.d /etc/apt/preferences.d \
        2>/dev/null | tr '\n' ',' || true)
else
    apt_sig=$(stat -c '%Y:%i' "$KAPT_DIR/state/lists" "$KAPT_DIR/sources.list" "$KAPT_DIR/preferences" \
        2>/dev/null | tr '\n' ',' || true)
fi
ANSWER=$CACHE/apt-answer$LAB_SUFFIX
want=""
if [[ -f $ANSWER ]]; then
    { read -r sig_line && read -r want_line; } <"$ANSWER" || true
    [[ ${sig_line:-} == "$apt_sig" ]] && want=${want_line:-}
fi
if [[ -z $want ]]; then
    want=$(apt_kernel || true)
    [[ -n $want ]] && printf '%s\n%s\n' "$apt_sig" "$want" >"$ANSWER"
fi
if [[ -z $want ]] && ! current_set >/dev/null; then
    kapt_update_once || true
    want=$(apt_kernel || true)
fi
if [[ -z $want ]]; then
    cur=$(current_set) || skip "apt offers no linux-image-amd64 of the $KERNEL series and no kernel set is cached"
    log "apt offers no $KERNEL kernel; using cached set $cur"
    want=$cur
fi
read -r ABI VER <<<"$want"
KDIR=$CACHE/k/${ABI}_${VER}
KVER=$ABI-amd64
SERIES=${VER%%.*}.$(cut -d. -f2 <<<"$VER")

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
    (cd "$DEBS" && apt-get "${KAPT[@]}" download -q -o APT::Sandbox::User=root "$1=$2" >&2) && return 0
    kapt_update_once && (cd "$DEBS" && apt-get "${KAPT[@]}" download -q -o APT::Sandbox::User=root "$1=$2" >&2)
}
kbuild_of() { # ABI VER: the linux-kbuild package the headers depend on (linux-kbuild-6.1, linux-kbuild-6.12.95+deb12)
    dpkg-deb -f "$(deb_of "linux-headers-$1-amd64" "$2")" Depends | tr ',' '\n' |
        sed -n 's/^ *\(linux-kbuild-[^ ]*\).*/\1/p' | head -n1
}
fetch_set() { # ABI VER
    local kb
    fetch "linux-image-$1-amd64" "$2" &&
        fetch "linux-headers-$1-amd64" "$2" &&
        fetch "linux-headers-$1-common" "$2" &&
        kb=$(kbuild_of "$1" "$2") && [[ -n $kb ]] &&
        fetch "$kb" "$2" &&
        fetch "linux-source-${2%%.*}.$(cut -d. -f2 <<<"$2")" "$2"
}

# Unpacks the headers (arch and common) and kbuild of the set into ROOT, ready for out-of-tree modules.
unpack_headers() { # ROOT
    local p hdr l t
    for p in "linux-headers-$KVER" "linux-headers-$ABI-common" "$(kbuild_of "$ABI" "$VER")"; do
        dpkg-deb -x "$(deb_of "$p" "$VER")" "$1"
    done
    hdr=$1/usr/src/linux-headers-$KVER
    [[ -f $hdr/Makefile ]] || die "no headers at $hdr"
    # The arch headers' Makefile includes the common tree by absolute path.
    sed -i "s#^include /usr/src/#include $1/usr/src/#" "$hdr/Makefile"
    # Absolute symlinks (scripts, tools) would point into the host: re-point them.
    while read -r l; do
        t=$(readlink "$l")
        [[ $t == /* ]] && ln -sfn "$1$t" "$l"
    done < <(find "$1/usr/src" -maxdepth 2 -type l)
    HDR=$hdr
}
# Flavours with LAB_CDEV: the options the kernel's VFIO and iommufd modules are rebuilt with, added to HDR's
# configuration (the image itself, vmlinux, is Debian's: nothing built into it depends on them).
cdev_headers() {
    ((LAB_CDEV)) || return 0
    printf 'CONFIG_IOMMUFD=m\nCONFIG_VFIO_DEVICE_CDEV=y\n' >>"$HDR/include/config/auto.conf"
    printf '#define CONFIG_IOMMUFD_MODULE 1\n#define CONFIG_VFIO_DEVICE_CDEV 1\n' >>"$HDR/include/generated/autoconf.h"
}
# An out-of-tree module against HDR.  The headers of 6.12 carry a BTF vmlinux, and module BTF would need pahole:
# the lab's modules go without it (they load the same).
build_module() { # DIR NAME
    local extra=()
    # the exports of the rebuilt VFIO modules: every module that uses VFIO is linked against their versions
    ((LAB_CDEV)) && extra=(KBUILD_EXTRA_SYMBOLS="$KDIR/vfio-cdev/Module.symvers")
    make -s -C "$HDR" M="$1" CC=gcc-12 HOSTCC=gcc-12 CONFIG_DEBUG_INFO_BTF_MODULES= "${extra[@]}" -j"$(nproc)" \
        modules >"$1/build.log" 2>&1 || { cat "$1/build.log" >&2; die "$2 build failed"; }
    [[ -f $1/$2.ko ]] || die "$2.ko missing after build"
}
# The source tarball of the set, decompressed to stdout (the 139-153 MB tarball takes ~13 s: callers keep what
# they take from it).
source_tar() {
    local src_deb tarball dec
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
    dpkg-deb --fsys-tarfile "$src_deb" | tar -xOf - "$tarball" | $dec
}
# LAB_CDEV: vfio, vfio_iommu_type1, vfio-pci-core, vfio-pci, mdev and iommufd from the set's own source, with
# the options of cdev_headers, into KDIR/vfio-cdev; they replace Debian's in ROOT's module tree.  Debian's
# vmlinux lacks the interval-tree span iterator (CONFIG_INTERVAL_TREE_SPAN_ITER, selected by IOMMUFD): its
# three functions, from the same source's lib/interval_tree.c, are linked into iommufd.ko.
build_vfio_cdev() {
    local out=$KDIR/vfio-cdev src=$CACHE/src/vfio-iommufd-$VER.tar s=linux-source-$SERIES mods m
    if [[ ! -s $src ]]; then
        log "extracting drivers/vfio, drivers/iommu/iommufd from linux-source-$SERIES"
        source_tar | tar -xf - -C "$CACHE/src" "$s/drivers/vfio" "$s/drivers/iommu/iommufd" \
            "$s/drivers/iommu/iommu-priv.h" "$s/lib/interval_tree.c" || die "VFIO sources not found"
        tar -cf "$src.tmp" -C "$CACHE/src" "$s" && mv "$src.tmp" "$src"
        rm -rf "${CACHE:?}/src/$s"
    fi
    rm -rf "$out"
    mkdir -p "$out/iommu"
    tar -xf "$src" -C "$out" --strip-components=2 "$s/drivers"
    awk 'f && /^#endif/ { exit } f && !/^EXPORT_SYMBOL/ { print }
        /^#ifdef CONFIG_INTERVAL_TREE_SPAN_ITER/ { f = 1; print "#include <linux/interval_tree.h>" }' \
        <(tar -xOf "$src" "$s/lib/interval_tree.c") >"$out/iommu/iommufd/span_iter.c"
    grep -q interval_tree_span_iter_first "$out/iommu/iommufd/span_iter.c" || die "no span iterator in lib/interval_tree.c"
    echo 'iommufd-y += span_iter.o' >>"$out/iommu/iommufd/Makefile"
    echo 'obj-m += iommu/iommufd/ vfio/' >"$out/Kbuild"
    log "building vfio and iommufd with CONFIG_IOMMUFD=m CONFIG_VFIO_DEVICE_CDEV=y"
    make -s -C "$HDR" M="$out" CC=gcc-12 HOSTCC=gcc-12 CONFIG_DEBUG_INFO_BTF_MODULES= -j"$(nproc)" modules \
        >"$out/build.log" 2>&1 || { cat "$out/build.log" >&2; die "the VFIO modules' build failed"; }
    mods=$ROOT/lib/modules/$KVER/kernel/drivers
    for m in vfio/vfio vfio/vfio_iommu_type1 vfio/pci/vfio-pci-core vfio/pci/vfio-pci vfio/mdev/mdev iommu/iommufd/iommufd; do
        [[ -f $out/$m.ko ]] || die "$m.ko missing after build"
        rm -f "$mods/$m.ko" "$mods/$m.ko.xz" "$mods/$m.ko.zst"
        mkdir -p "$(dirname "$mods/$m.ko")"
        cp "$out/$m.ko" "$mods/$m.ko"
    done
    [[ -s $out/Module.symvers ]] || die "no Module.symvers from the VFIO build"
}

ROOT=""
set_ok() { [[ -f $KDIR/stamp && $(<"$KDIR/stamp") == "$SIG" ]]; }
if ! set_ok && ! fetch_set "$ABI" "$VER"; then
    cur=$(current_set || true)
    [[ -n $cur && $cur != "$ABI $VER" ]] || skip "cannot download the kernel packages for $ABI ($VER) (apt unreachable?)"
    log "cannot download kernel $ABI ($VER); falling back to cached set $cur"
    read -r ABI VER <<<"$cur"
    KDIR=$CACHE/k/${ABI}_${VER}
    KVER=$ABI-amd64
    SERIES=${VER%%.*}.$(cut -d. -f2 <<<"$VER")
fi
if set_ok; then
    log "kernel set cached: $KVER ($VER) in $KDIR"
else
    fetch_set "$ABI" "$VER" || skip "cannot download the kernel packages for $ABI ($VER) (apt unreachable?)"
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
    rm -rf "$KDIR"
    mkdir -p "$KDIR"
    ROOT=$KDIR/root
    mkdir -p "$ROOT"
    log "unpacking kernel $KVER ($VER)"
    dpkg-deb -x "$(deb_of "linux-image-$KVER" "$VER")" "$ROOT"
    unpack_headers "$ROOT"
    cdev_headers

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
        source_tar | tar -xOf - "linux-source-$SERIES/samples/vfio-mdev/mtty.c" >"$src_c.tmp"
        [[ -s $src_c.tmp ]] || die "mtty.c not found in linux-source-$SERIES"
        mv "$src_c.tmp" "$src_c"
    fi
    ((LAB_CDEV)) && build_vfio_cdev
    cp "$src_c" "$KDIR/mtty/mtty.c"
    echo 'obj-m := mtty.o' >"$KDIR/mtty/Kbuild"
    log "building mtty.ko"
    build_module "$KDIR/mtty" mtty

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
    echo "$ABI $VER" >"$KDIR/abi"
    echo "$SIG" >"$KDIR/stamp"
fi

# ---- the vGPU simulator and holdvf (rebuilt when their sources change) -------
MIN=$KDIR/mods
NV=$KDIR/nvsim
NVSIG="nvsim-v1 $KVER $(cat "$NVSIM_SRC/nvidia_vgpu_sim.c" "$NVSIM_SRC/Kbuild" "$NVSIM_SRC/holdvf.c" | sha256sum | cut -c1-16)"
if [[ ! -f $NV/stamp || $(<"$NV/stamp") != "$NVSIG" ]]; then
    if [[ -z $ROOT ]]; then # a cached set: its headers again (a few seconds)
        ROOT=$KDIR/root
        rm -rf "$ROOT"
        mkdir -p "$ROOT"
        fetch_set "$ABI" "$VER" || skip "the debs of $ABI ($VER) are gone from the cache and apt"
        log "unpacking the headers of $KVER ($VER)"
        unpack_headers "$ROOT"
        cdev_headers
    fi
    rm -rf "$NV"
    mkdir -p "$NV"
    cp "$NVSIM_SRC/nvidia_vgpu_sim.c" "$NVSIM_SRC/Kbuild" "$NV/"
    log "building nvidia_vgpu_sim.ko"
    build_module "$NV" nvidia_vgpu_sim
    log "building holdvf"
    gcc-12 -O2 -Wall -static -o "$NV/holdvf" "$NVSIM_SRC/holdvf.c" >"$NV/holdvf.log" 2>&1 ||
        { cat "$NV/holdvf.log" >&2; die "holdvf build failed"; }
    mkdir -p "$MIN/lib/modules/$KVER/extra"
    cp "$NV/nvidia_vgpu_sim.ko" "$MIN/lib/modules/$KVER/extra/"
    depmod -b "$MIN" "$KVER"
    # Ordered load list for the guest (insmod lines, guest paths).
    for m in "${LOAD_ORDER[@]}"; do
        modprobe -d "$MIN" -S "$KVER" --show-depends "$m" >/dev/null || die "module $m not in the lab's tree"
        modprobe -d "$MIN" -S "$KVER" --show-depends "$m" |
            awk -v r="$MIN" '$1 == "insmod" { p = $2; if (index(p, r) == 1) p = substr(p, length(r) + 1); print p }'
    done | awk '!seen[$0]++' >"$KDIR/modload.list"
    echo "$NVSIG" >"$NV/stamp"
fi
[[ -z $ROOT ]] || rm -rf "$ROOT" # ~0.5 GB; the debs stay cached

echo "$ABI $VER $KDIR" >"$CACHE/$LAB_CURRENT"
log "ready: kernel $KVER ($VER) in $KDIR"
