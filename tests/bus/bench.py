#!/usr/bin/python3
"""Measures hostdevd-fake on the private bus of harness.sh (prints figures; asserts nothing):
activation to first reply, ListAvailable next to Peer.Ping on one connection, a polkit-checked call allowed and
denied, idle RSS of the daemon (and of polkitd and dbus-daemon).

    meson test -C BUILD --benchmark bus-bench --verbose
"""
import os
import pwd
import statistics
import sys
import time

import dbus

BUS_NAME = "org.hostdev.Passthrough1"
ROOT = "/org/hostdev/Passthrough1"
DEVICES = "org.hostdev.Passthrough1.Devices"
N = int(os.environ.get("BENCH_N", "200"))


def timed(fn, n=N):
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1000.0)
    return statistics.median(out), min(out)


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def as_user(user, fn):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        pw = pwd.getpwnam(user)
        os.initgroups(user, pw.pw_gid)
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
        conn = dbus.bus.BusConnection(os.environ["DBUS_SYSTEM_BUS_ADDRESS"])
        os.write(w, repr(fn(conn)).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    os.waitpid(pid, 0)
    return eval(data.decode())  # noqa: S307 - our own child's repr of two floats


def main():
    bus = dbus.bus.BusConnection(os.environ["DBUS_SYSTEM_BUS_ADDRESS"])
    driver = bus.get_object("org.freedesktop.DBus", "/org/freedesktop/DBus")
    t0 = time.perf_counter_ns()
    obj = bus.get_object(BUS_NAME, ROOT)  # no introspection round trip before the call
    obj.Ping(dbus_interface="org.freedesktop.DBus.Peer")
    activation_ms = (time.perf_counter_ns() - t0) / 1e6
    pid = int(driver.GetConnectionUnixProcessID(BUS_NAME, dbus_interface="org.freedesktop.DBus"))

    ping = obj.get_dbus_method("Ping", "org.freedesktop.DBus.Peer")
    list_available = obj.get_dbus_method("ListAvailable", DEVICES)
    opts = dbus.Dictionary({}, signature="sv")
    ping_med, ping_min = timed(lambda: ping())
    la_med, la_min = timed(lambda: list_available(opts))
    la_all_med, _ = timed(lambda: list_available(dbus.Dictionary({"all": True}, signature="sv")))

    def reconcile_times(conn):
        o = conn.get_object(BUS_NAME, ROOT)
        m = o.get_dbus_method("Reconcile", DEVICES)
        res = []
        for _ in range(50):
            t = time.perf_counter_ns()
            try:
                m(dbus.Dictionary({}, signature="sv"))
            except dbus.DBusException:
                pass
            res.append((time.perf_counter_ns() - t) / 1000.0)
        return statistics.median(res), min(res)

    allowed = as_user("hdadmin", reconcile_times)
    denied = as_user("hdtest", reconcile_times)
    root_reconcile = timed(lambda: obj.Reconcile(opts, dbus_interface=DEVICES), 50)

    time.sleep(0.5)
    rss_daemon = rss_kb(pid)
    polkit_pid = int(driver.GetConnectionUnixProcessID("org.freedesktop.PolicyKit1", dbus_interface="org.freedesktop.DBus"))
    bus_pid = int(os.popen("pidof dbus-daemon").read().split()[0])

    print("hostdevd-fake bench (fixture passthrough, %d calls per median, python3-dbus client)" % N)
    print("  activation to first reply (Peer.Ping)   %8.2f ms" % activation_ms)
    print("  Peer.Ping                    median %8.1f us  min %8.1f us" % (ping_med, ping_min))
    print("  ListAvailable (GPUs, 2)      median %8.1f us  min %8.1f us" % (la_med, la_min))
    print("  ListAvailable all=true (5)   median %8.1f us" % la_all_med)
    print("  Reconcile as root (no polkit) median %7.1f us" % root_reconcile[0])
    print("  Reconcile hdadmin (polkit allowed)  median %8.1f us" % allowed[0])
    print("  Reconcile hdtest  (polkit denied)   median %8.1f us" % denied[0])
    print("  idle RSS hostdevd-fake %d kB, polkitd %d kB, dbus-daemon %d kB" % (
        rss_daemon, rss_kb(polkit_pid), rss_kb(bus_pid)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
