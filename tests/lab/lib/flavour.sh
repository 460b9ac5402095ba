# shellcheck shell=bash disable=SC2034 # what is set here is for the callers
# Sourced by tests/lab/prepare.sh, lib/machine.sh, suite.sh and run-test.sh (bash): the lab's kernel flavours.
#   lab_flavour KERNEL   checks KERNEL (6.1 or 6.12) and sets
#     LAB_KERNEL    KERNEL
#     LAB_APT       where the kernel comes from: "machine" (the machine's own apt: Debian 12's linux-image-amd64)
#                   or "backports" (<codename>-backports through a private apt configuration, CACHE/apt-KERNEL)
#     LAB_CURRENT   the file in the cache that names the flavour's prepared kernel set ("ABI VERSION DIR")
#     LAB_SUFFIX    what the flavour's meson tests and results directories carry ("" for 6.1, "-6.12")
#     LAB_CDEV      1 when the flavour's VFIO and iommufd modules are rebuilt from the kernel's own source with
#                   CONFIG_IOMMUFD=m and CONFIG_VFIO_DEVICE_CDEV=y (Debian builds neither): /dev/iommu and
#                   /dev/vfio/devices/vfioN exist; 0 for Debian's modules as they are
LAB_KERNELS="6.1 6.12"
LAB_DEFAULT_KERNEL=6.1

lab_flavour() { # KERNEL
    case $1 in
    6.1) LAB_APT=machine LAB_CURRENT=current LAB_SUFFIX="" LAB_CDEV=0 ;;
    6.12) LAB_APT=backports LAB_CURRENT=current-6.12 LAB_SUFFIX=-6.12 LAB_CDEV=1 ;;
    *)
        echo "unknown lab kernel '$1' (one of: $LAB_KERNELS)" >&2
        return 2
        ;;
    esac
    LAB_KERNEL=$1
}
