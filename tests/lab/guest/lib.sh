#!/bin/sh
# Helpers for lab payloads (busybox sh), installed at /lab/lib.sh:
#   . /lab/lib.sh
#   lab_test NAME COMMAND [ARGS...]   run COMMAND (a function or program) under
#       `set -e` in a subshell, framed by the markers suite.sh splits on:
#         === LAB-TEST BEGIN NAME
#         === LAB-TEST END NAME rc=N secs=S
#       Call it as a plain statement (not after `||`/`&&`/`if`, which would
#       disable `set -e` inside).  rc 77 = skip.
#   lab_skip REASON      print "SKIP: REASON" and exit 77 (inside a test)
#   lab_fail REASON      print "FAIL: REASON" and exit 1  (inside a test)
#   lab_wait_for SECS CMD...   retry CMD every 0.1 s until it succeeds or SECS pass
#   lab_nvsim_pfs        the PCI addresses of the vGPU simulator's PFs (the two "GPUs": the PFs bound to its
#                        driver "nvidia"), one a line; their VFs are virtfnN under each
# Environment set by the lab: LAB_KVER (e.g. 6.12.95+deb12-amd64), LAB_KERNEL (the flavour, 6.1 or 6.12),
# LAB_WITH_QEMU (0/1), LAB_NESTED_BOOT, LAB_NVSIM_PFS (the simulator's PFs the machine has, space-separated).

lab_uptime() { cut -d' ' -f1 /proc/uptime; }

lab_test() {
    _lab_name=$1
    shift
    echo "=== LAB-TEST BEGIN $_lab_name"
    _lab_t0=$(lab_uptime)
    case $- in *e*) _lab_e=1; set +e ;; *) _lab_e=0 ;; esac
    (set -e; "$@") </dev/null 2>&1
    _lab_rc=$?
    [ "$_lab_e" = 1 ] && set -e
    _lab_t1=$(lab_uptime)
    echo "=== LAB-TEST END $_lab_name rc=$_lab_rc secs=$(awk -v a="$_lab_t0" -v b="$_lab_t1" 'BEGIN { printf "%.2f", b - a }')"
    return 0
}

lab_skip() { echo "SKIP: $*"; exit 77; }
lab_fail() { echo "FAIL: $*"; exit 1; }

lab_wait_for() {
    _lab_n=$(( $1 * 10 ))
    shift
    while [ "$_lab_n" -gt 0 ]; do
        "$@" && return 0
        sleep 0.1
        _lab_n=$((_lab_n - 1))
    done
    "$@"
}

lab_nvsim_pfs() {
    for _lab_d in /sys/bus/pci/drivers/nvidia/0000:*; do
        [ -e "$_lab_d/sriov_totalvfs" ] && echo "${_lab_d##*/}"
    done
    return 0
}
