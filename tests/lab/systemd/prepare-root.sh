#!/bin/bash
# Prepare the systemd flavour of the hostdev lab: a Debian root (debootstrap
# minbase + systemd, dbus, polkitd, udev, ...) with test users and the lab's
# kernel modules, packed as an ext4 image without loop mounts
# (mkfs.ext4 -d), plus the busybox initramfs pieces that mount it.
# How and why: tests/lab/systemd/README.md.
#
# Usage: tests/lab/systemd/prepare-root.sh [--kernel 6.1|6.12] [CACHE]   (default 6.1, <repo>/.cache/lab)
#   6.1   the kernel set of ../prepare.sh's flavour 6.1, QEMU 7.2 of the host's codename
#   6.12  the kernel set of flavour 6.12 (VFIO cdevs and iommufd), QEMU of <codename>-backports (10.0 on
#         bookworm): the first QEMU with the iommufd backend that takes its /dev/iommu and cdev fds by number
# Output: CACHE/systemd[-6.12]/root.img, .../boot-mods/ (initramfs modules),
#         .../bootload.list, .../stamp (the signature).
# Reused while the signature (this script, the kernel set, the mirror) is
# unchanged: ~1 s.  Debs are kept in CACHE/systemd/debs (second cold build
# downloads nothing but the indices).
# Exit: 0 ready, 77 debootstrap/apt unreachable and no image cached, 1 error.
# Env: HOSTDEV_LAB_MIRROR overrides the mirror read from apt's sources.
#
# Never modifies the host beyond `apt-get install` of missing tools; the
# debootstrap runs in a private mount namespace.
set -euo pipefail

LAB=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tests/lab/lib/flavour.sh
. "$LAB/lib/flavour.sh"
KERNEL=$LAB_DEFAULT_KERNEL CACHE=""
while (($#)); do
    case $1 in
    --kernel) KERNEL=$2; shift 2 ;;
    -*) echo "prepare-root.sh: unknown argument $1" >&2; exit 2 ;;
    *) CACHE=$1; shift ;;
    esac
done
lab_flavour "$KERNEL" || exit 2
CACHE=${CACHE:-$LAB/../../.cache/lab}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
SD=$CACHE/systemd$LAB_SUFFIX
mkdir -p "$SD/debs"

log() { printf 'lab-root: [%ss] %s\n' "$SECONDS" "$*" >&2; }
skip() { printf 'lab-root: SKIP: %s\n' "$*" >&2; exit 77; }
die() { printf 'lab-root: ERROR: %s\n' "$*" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

# Packages of the root (besides minbase).  libglib2.0-bin: gdbus reads D-Bus error names.
# qemu-system-x86 (its Depends only: no GUI, ~75 MB unpacked) and acl (getfacl): sd-unprivileged-run's VMM, a
# nested TCG guest started by `hostdevctl run` as an unprivileged user.
PACKAGES=(systemd systemd-sysv dbus polkitd libpam-systemd udev kmod libsdbus-c++1 libsystemd0
    libstdc++6 mdevctl libglib2.0-bin procps acl)
# The VMM: the codename's own QEMU, or (LAB_CDEV flavours) that of <codename>-backports, installed after the
# debootstrap from a backports source (apt -t: QEMU and only the dependencies it needs newer, e.g. seabios).
((LAB_CDEV)) || PACKAGES+=(qemu-system-x86)
# Initramfs: what it takes to mount the ext4 root from virtio-blk.
BOOT_MODULES=(virtio_pci virtio_blk crc32c_generic ext4)
# Loaded at boot by systemd-modules-load in the guest (a host admin's job on a real machine).
LOAD_MODULES=(vfio_pci vfio_iommu_type1 mdev mtty)

# ---- the kernel set of the busybox lab (vmlinux, module closure, mtty.ko) ----
prc=0
"$LAB/prepare.sh" --kernel "$KERNEL" "$CACHE" || prc=$?
((prc == 77)) && skip "the kernel lab is unavailable (tests/lab/prepare.sh skipped)"
((prc == 0)) || die "tests/lab/prepare.sh failed (exit $prc)"
read -r ABI VER KDIR <"$CACHE/$LAB_CURRENT"
KVER=$ABI-amd64

# ---- mirror and suite from apt's own sources ---------------------------------
SUITE=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[[ -n $SUITE ]] || die "cannot tell the Debian codename from /etc/os-release"
apt_mirror() { # first URI serving SUITE (not -security/-updates) in apt's sources
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        awk -v s="$SUITE" '
            /^[[:space:]]*$/ { if (uri != "" && ok) { print uri; exit } uri = ""; ok = 0; next }
            /^URIs:/ { uri = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) ok = 1 }
            END { if (uri != "" && ok) print uri }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        awk -v s="$SUITE" '$1 == "deb" { u = ""; for (i = 2; i <= NF; i++) { if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; continue }
            if (u == "") { u = $i; continue } if ($i == s) print u; break } }' "$f"
    done
}
MIRROR=${HOSTDEV_LAB_MIRROR:-$(apt_mirror | grep -m1 -E '^https?://' || true)}
[[ -n $MIRROR ]] || die "no Debian mirror for $SUITE in apt's sources (set HOSTDEV_LAB_MIRROR)"

SIG="root-v2 $(sha256sum "$0" | cut -c1-16) $KERNEL $ABI $VER $SUITE $MIRROR"
if [[ -f $SD/stamp && $(<"$SD/stamp") == "$SIG" && -f $SD/root.img ]]; then
    log "ready (cached): $SD/root.img ($SUITE, kernel $KVER)"
    exit 0
fi

# ---- host tools ----------------------------------------------------------------
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v unshare >/dev/null || need+=(util-linux)
if ((${#need[@]})); then
    log "installing host packages: ${need[*]}"
    apt-get install -y -qq --no-install-recommends "${need[@]}" >&2 ||
        { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends "${need[@]}" >&2; } ||
        skip "cannot install ${need[*]} (apt unreachable?)"
fi

# ---- debootstrap (private mount namespace: its /proc mounts die with it) -----------
t0=$(date +%s.%N)
STAGE=$(mktemp -d "$SD/stage.XXXXXX")
# shellcheck disable=SC2317 # invoked by trap
cleanup() { rm -rf "$STAGE"; }
trap cleanup EXIT
trap 'exit 143' TERM INT HUP
R=$STAGE/root
include=$(IFS=,; echo "${PACKAGES[*]}")
log "debootstrap $SUITE from $MIRROR (debs cached in $SD/debs)"
if ! unshare --mount --propagation private -- \
    debootstrap --variant=minbase --include="$include" --cache-dir="$SD/debs" \
    "$SUITE" "$R" "$MIRROR" >"$STAGE/debootstrap.log" 2>&1; then
    tail -n 20 "$STAGE/debootstrap.log" >&2
    if grep -qiE 'Failed getting release file|Couldn.t download|Temporary failure|Could not resolve|unable to fetch' \
        "$STAGE/debootstrap.log"; then
        [[ -f $SD/root.img ]] && { log "mirror unreachable: keeping the old image"; exit 0; }
        skip "debootstrap cannot reach $MIRROR"
    fi
    die "debootstrap failed (log above)"
fi

in_root() { unshare --mount --propagation private -- chroot "$R" "$@"; }
if ((LAB_CDEV)); then
    # QEMU from backports; its debs are kept in SD/debs with debootstrap's (bind-mounted over apt's archives).
    log "QEMU from $SUITE-backports"
    echo "deb $MIRROR $SUITE-backports main" >"$R/etc/apt/sources.list.d/backports.list"
    printf 'Package: *\nPin: release n=%s-backports\nPin-Priority: 100\n' "$SUITE" >"$R/etc/apt/preferences.d/backports"
    [[ -s $R/etc/resolv.conf ]] || cp /etc/resolv.conf "$R/etc/resolv.conf" 2>/dev/null || true
    bpo_apt() { # apt-get ARGS in the root (sh's $0: the root, $1: the debs)
        # shellcheck disable=SC2016 # expanded by that sh
        unshare --mount --propagation private -- sh -c 'mount --bind "$1" "$0/var/cache/apt/archives" && shift &&
            exec chroot "$0" apt-get -o APT::Sandbox::User=root "$@"' "$R" "$SD/debs" "$@"
    }
    if ! bpo_apt -qq update >"$STAGE/qemu.log" 2>&1 ||
        ! bpo_apt install -y -qq --no-install-recommends -t "$SUITE-backports" qemu-system-x86 >>"$STAGE/qemu.log" 2>&1; then
        tail -n 20 "$STAGE/qemu.log" >&2
        [[ -f $SD/root.img ]] && { log "backports unreachable: keeping the old image"; exit 0; }
        grep -qiE 'Temporary failure|Could not resolve|unable to fetch|Failed to fetch' "$STAGE/qemu.log" &&
            skip "cannot install QEMU from $SUITE-backports (mirror unreachable?)"
        die "installing QEMU from $SUITE-backports failed (log above)"
    fi
    in_root qemu-system-x86_64 --version | head -n1 >&2
    rm -f "$R/etc/apt/sources.list.d/backports.list"
fi

# ---- configure -------------------------------------------------------------------
log "configuring the root"
in_root groupadd -r hostdev
in_root useradd -m -s /bin/bash hdtest
in_root useradd -m -s /bin/bash -G hostdev hdadmin
echo lab >"$R/etc/hostname"
printf '127.0.0.1 localhost lab\n' >"$R/etc/hosts"
: >"$R/etc/fstab"
: >"$R/etc/machine-id" # systemd makes one per boot (the image is booted snapshot=on)
for u in systemd-firstboot.service getty@.service serial-getty@.service console-getty.service \
    apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer \
    systemd-timesyncd.service systemd-networkd.service systemd-resolved.service; do
    ln -sfn /dev/null "$R/etc/systemd/system/$u"
done
printf '%s\n' "${LOAD_MODULES[@]}" >"$R/etc/modules-load.d/hostdev-lab.conf"
mkdir -p "$R/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nForwardToConsole=no\n' >"$R/etc/systemd/journald.conf.d/lab.conf"
mkdir -p "$R/lab/nested"
# The nested guest's kernel (sd-unprivileged-run): the lab's own decompressed vmlinux, in the kernel set of SIG.
cp "$KDIR/vmlinux" "$R/lab/nested/vmlinux"

# ---- kernel modules: the lab's closure + the boot modules, + mtty.ko -------------
log "kernel modules ($KVER)"
M=$R/usr/lib/modules/$KVER
mkdir -p "$M"
cp -a "$KDIR/mods/lib/modules/$KVER/." "$M/"
K=$STAGE/kernel
mkdir -p "$K"
img=$(compgen -G "$CACHE/debs/linux-image-${KVER}_${VER//:/%3a}_*.deb" | head -n1)
[[ -n $img ]] || die "no cached linux-image-$KVER deb in $CACHE/debs"
dpkg-deb --fsys-tarfile "$img" | tar -xf - -C "$K" ./lib/modules
depmod -b "$K" "$KVER"
BM=$SD/boot-mods.new
rm -rf "$BM"
mkdir -p "$BM"
: >"$SD/bootload.list.new"
for m in "${BOOT_MODULES[@]}"; do
    modprobe -d "$K" -S "$KVER" --show-depends "$m" >/dev/null || die "module $m not in $KVER"
    while read -r kind path _; do
        [[ $kind == insmod ]] || continue
        rel=${path#"$K"/lib/modules/"$KVER"/}
        for d in "$M" "$BM"; do
            mkdir -p "$(dirname "$d/$rel")"
            case $path in
            *.xz) xz -dc "$path" >"$d/${rel%.xz}" ;;
            *.zst) zstd -dcq "$path" >"$d/${rel%.zst}" ;;
            *) cp "$path" "$d/$rel" ;;
            esac
        done
        rel=${rel%.xz}
        echo "/lib/modules/$KVER/${rel%.zst}" >>"$SD/bootload.list.new"
    done < <(modprobe -d "$K" -S "$KVER" --show-depends "$m")
done
awk '!seen[$0]++' "$SD/bootload.list.new" >"$SD/bootload.list.tmp" && mv "$SD/bootload.list.tmp" "$SD/bootload.list.new"
depmod -b "$R" "$KVER" # merged-usr: $R/lib -> usr/lib

# ---- trim and pack ---------------------------------------------------------------
rm -rf "$R"/usr/share/{doc,man,info,locale,lintian,linda} "$R"/var/lib/apt/lists/* \
    "$R"/var/cache/apt/*.bin "$R"/var/cache/apt/archives/*.deb "$R"/var/log/*.log "$R"/debootstrap
size=$(du -sm "$R" | cut -f1)
log "root tree ${size} MB; mkfs.ext4 -d"
mkfs.ext4 -q -F -L labroot -d "$R" "$SD/root.img.new" "$((size + 256))M" >/dev/null
mv "$SD/root.img.new" "$SD/root.img"
rm -rf "$SD/boot-mods"
mv "$BM" "$SD/boot-mods"
mv "$SD/bootload.list.new" "$SD/bootload.list"
echo "$SIG" >"$SD/stamp"
t1=$(date +%s.%N)
log "ready: $SD/root.img in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"
