#!/bin/sh
# The vGPU simulator's sysfs ABI, proven in the lab VM (busybox sh; sourced from /lab/nvsim/abi-test.sh by
# tests/lab/payload/run and tests/lab/selftest/run, then `lab_test nvsim-abi t_nvsim_abi`).
# Needs /lab/lib.sh (lab_fail, lab_wait_for, lab_nvsim_pfs), /lab/bin/holdvf and /lab/nvsim/fixtures.
NV_FIX=/lab/nvsim/fixtures
NV_PCI=/sys/bus/pci/devices

nv_driver() { if [ -e "$NV_PCI/$1/driver" ]; then basename "$(readlink "$NV_PCI/$1/driver")"; else echo none; fi; }
nv_group() { basename "$(readlink "$NV_PCI/$1/iommu_group")"; }
nv_vf() { basename "$(readlink "$NV_PCI/$1/virtfn$2")"; } # PF N -> the address of its VF N
nv_same() { # FIXTURE FILE: byte for byte
    cmp -s "$NV_FIX/$1" "$2" && return 0
    echo "--- want ($1)"
    od -c "$NV_FIX/$1"
    echo "--- got ($2)"
    od -c "$2"
    lab_fail "$2 differs from fixture $1"
}
nv_refused() { # WHAT FILE VALUE ERROR-TEXT: writing VALUE to FILE fails with that error
    if _out=$( (echo "$3" >"$2") 2>&1); then lab_fail "$1: writing $3 to $2 succeeded"; fi
    case $_out in
    *"$4"*) echo "ok: $1: refused ($4)" ;;
    *) lab_fail "$1: expected '$4', got '$_out'" ;;
    esac
}
nv_holding() { grep -q '^holdvf: holding' /tmp/holdvf.log; }

t_nvsim_abi() {
    pfs=$(lab_nvsim_pfs | tr '\n' ' ')
    pfs=${pfs% }
    echo "simulator PFs: $pfs (the machine's: $LAB_NVSIM_PFS); fb_mb $(cat /sys/module/nvidia_vgpu_sim/parameters/fb_mb)"
    [ "$pfs" = "$LAB_NVSIM_PFS" ] || lab_fail "the simulator drives '$pfs', not '$LAB_NVSIM_PFS'"
    [ "$(cat /sys/module/nvidia_vgpu_sim/parameters/fb_mb)" = 8192 ] || lab_fail "this test counts with fb_mb=8192"
    # shellcheck disable=SC2086 # two words
    set -- $pfs
    a=$1 b=$2
    for pf in $a $b; do
        d=$NV_PCI/$pf
        echo "PF $pf $(cat "$d/vendor"):$(cat "$d/device") driver $(nv_driver "$pf") totalvfs $(cat "$d/sriov_totalvfs") autoprobe $(cat "$d/sriov_drivers_autoprobe")"
        [ "$(nv_driver "$pf")" = nvidia ] || lab_fail "$pf is not on the simulator"
        [ "$(cat "$d/sriov_totalvfs")" = 4 ] || lab_fail "$pf: sriov_totalvfs is not 4"
        [ "$(cat "$d/sriov_numvfs")" = 0 ] || lab_fail "$pf: VFs enabled at the start"
        [ ! -e "$d/nvidia" ] || lab_fail "$pf: a PF has no nvidia/ directory"
    done
    [ ! -e /sys/bus/pci/drivers/nvidia/unbind ] || lab_fail "the simulator has an unbind file"

    # VFs by sriov_numvfs: on $a probed at once (sriov_drivers_autoprobe=1) by the simulator, not by nvme; on
    # $b with sriov_drivers_autoprobe=0, which is honoured: driverless (and off nvme) until bound by hand.
    echo 4 >"$NV_PCI/$a/sriov_numvfs"
    echo 0 >"$NV_PCI/$b/sriov_drivers_autoprobe"
    echo 2 >"$NV_PCI/$b/sriov_numvfs"
    echo 1 >"$NV_PCI/$b/sriov_drivers_autoprobe"
    for vf in $(nv_vf "$b" 0) $(nv_vf "$b" 1); do
        [ "$(nv_driver "$vf")" = none ] || lab_fail "$vf was probed by $(nv_driver "$vf") with autoprobe off"
        [ ! -e "$NV_PCI/$vf/nvidia" ] || lab_fail "$vf has nvidia/ without the simulator"
        echo nvidia >"$NV_PCI/$vf/driver_override"
        echo "$vf" >/sys/bus/pci/drivers_probe
    done
    echo "ok: with autoprobe off the VFs of $b stay driverless; driver_override binds them"
    groups=""
    for vf in $(nv_vf "$a" 0) $(nv_vf "$a" 1) $(nv_vf "$a" 2) $(nv_vf "$a" 3) $(nv_vf "$b" 0) $(nv_vf "$b" 1); do
        g=$(nv_group "$vf")
        echo "VF $vf of $(basename "$(readlink "$NV_PCI/$vf/physfn")") driver $(nv_driver "$vf") group $g"
        [ "$(nv_driver "$vf")" = nvidia ] || lab_fail "$vf is on $(nv_driver "$vf"), not on the simulator"
        case " $groups " in *" $g "*) lab_fail "$vf shares IOMMU group $g" ;; esac
        groups="$groups $g"
        lab_wait_for 5 test -c "/dev/vfio/$g" || lab_fail "no /dev/vfio/$g for $vf"
        [ "$(stat -c %a "$NV_PCI/$vf/nvidia/creatable_vgpu_types")" = 444 ] || lab_fail "creatable_vgpu_types not 0444"
        [ "$(stat -c %a "$NV_PCI/$vf/nvidia/current_vgpu_type")" = 644 ] || lab_fail "current_vgpu_type not 0644"
        nv_same current_vgpu_type.none "$NV_PCI/$vf/nvidia/current_vgpu_type"
        nv_same creatable_vgpu_types.empty-gpu "$NV_PCI/$vf/nvidia/creatable_vgpu_types"
    done
    ls /sys/bus/pci/drivers/nvidia /dev/vfio
    for d in /sys/bus/pci/drivers/nvme/0000:*; do
        case ${d##*/} in "${a%.*}".* | "${b%.*}".*) lab_fail "nvme took the simulator's ${d##*/}" ;; esac
    done
    a0=$NV_PCI/$(nv_vf "$a" 0)/nvidia a1=$NV_PCI/$(nv_vf "$a" 1)/nvidia a2=$NV_PCI/$(nv_vf "$a" 2)/nvidia
    b0=$NV_PCI/$(nv_vf "$b" 0)/nvidia
    echo "creatable_vgpu_types of $(nv_vf "$a" 0):"
    cat "$a0/creatable_vgpu_types"

    # A VF on the simulator cannot be moved to vfio-pci.
    vf=$(nv_vf "$a" 3)
    echo vfio-pci >"$NV_PCI/$vf/driver_override"
    [ ! -e "$NV_PCI/$vf/driver/unbind" ] || lab_fail "$vf can be unbound"
    echo "$vf" >/sys/bus/pci/drivers_probe
    [ "$(nv_driver "$vf")" = nvidia ] || lab_fail "$vf left the simulator for $(nv_driver "$vf")"
    echo >"$NV_PCI/$vf/driver_override"
    echo "ok: $vf stays on nvidia (no unbind file; drivers_probe keeps it)"

    # Create: the list shrinks; the type is per VF, the framebuffer per PF.
    echo 1150 >"$a0/current_vgpu_type"
    nv_same current_vgpu_type.1150 "$a0/current_vgpu_type"
    nv_same creatable_vgpu_types.header-only "$a0/creatable_vgpu_types"
    nv_same creatable_vgpu_types.after-4q "$a1/creatable_vgpu_types"
    nv_same creatable_vgpu_types.empty-gpu "$b0/creatable_vgpu_types"
    echo "ok: 1150 on $(nv_vf "$a" 0); the other VFs of $a list no 8Q, those of $b all four"
    nv_refused "a second vGPU on one VF" "$a0/current_vgpu_type" 1147 "Operation not permitted"
    nv_refused "an unknown type id" "$a1/current_vgpu_type" 4242 "Invalid argument"
    nv_refused "releasing no vGPU" "$a1/current_vgpu_type" 0 "Operation not permitted"
    echo 1150 >"$a1/current_vgpu_type"
    nv_same creatable_vgpu_types.header-only "$a2/creatable_vgpu_types"
    nv_refused "a vGPU on a full GPU" "$a2/current_vgpu_type" 1147 "No space left on device"
    echo 1152 >"$b0/current_vgpu_type"
    echo "ok: $a full with two 4Q (ENOSPC for a 1Q), $b takes an 8Q"

    # Open: ENODEV without a type; with one, EBUSY for the release and for sriov_numvfs=0 while held.
    if out=$(holdvf --try "$(nv_vf "$a" 2)"); then lab_fail "the VFIO device of a VF without a type opened"; fi
    echo "$out"
    case $out in *"(ENODEV)"*) ;; *) lab_fail "expected ENODEV opening a VF without a type" ;; esac
    holdvf --try "$(nv_vf "$b" 0)"
    : >/tmp/holdvf.log
    holdvf "$(nv_vf "$a" 0)" >/tmp/holdvf.log 2>&1 &
    hold=$!
    lab_wait_for 10 nv_holding || { cat /tmp/holdvf.log; lab_fail "holdvf did not open $(nv_vf "$a" 0)"; }
    cat /tmp/holdvf.log
    nv_refused "releasing an open vGPU" "$a0/current_vgpu_type" 0 "Device or resource busy"
    nv_refused "sriov_numvfs=0 with a VF open" "$NV_PCI/$a/sriov_numvfs" 0 "Device or resource busy"
    kill "$hold"
    wait "$hold" || lab_fail "holdvf exited $?"
    cat /tmp/holdvf.log
    echo 0 >"$a0/current_vgpu_type"
    nv_same current_vgpu_type.none "$a0/current_vgpu_type"
    nv_same creatable_vgpu_types.after-4q "$a2/creatable_vgpu_types"
    echo "ok: released once holdvf closed it; the 4Q is free again"

    # SR-IOV off: refused while a VF has a type, then the VFs go.
    nv_refused "sriov_numvfs=0 with a vGPU" "$NV_PCI/$a/sriov_numvfs" 0 "Device or resource busy"
    echo 0 >"$a1/current_vgpu_type"
    echo 0 >"$b0/current_vgpu_type"
    echo 0 >"$NV_PCI/$a/sriov_numvfs"
    echo 0 >"$NV_PCI/$b/sriov_numvfs"
    if [ -e "$NV_PCI/$a/virtfn0" ] || [ -e "$NV_PCI/$b/virtfn0" ]; then lab_fail "VFs left after sriov_numvfs=0"; fi
}
