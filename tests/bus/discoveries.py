#!/usr/bin/python3
"""Counts how often hostdevd-fake reads the whole PCI bus for one mutation (prints figures; asserts nothing).

strace follows the daemon while it registers a device and binds it; every read of a PCI function opens its
`vendor` attribute once, so opens of */vendor divided by the functions of the fixture is the number of PCI
discoveries the mutation cost (the mutation's own single-device reads add a fraction).

    meson test -C BUILD --benchmark bus-discoveries --verbose
"""
import os
import subprocess
import sys
import time

import dbus

BUS_NAME = "org.hostdev.Passthrough1"
ROOT = "/org/hostdev/Passthrough1"
DEVICES = "org.hostdev.Passthrough1.Devices"
DEVICE = "org.hostdev.Passthrough1.Device"
INSTANCES = "org.hostdev.Passthrough1.Instances"
INSTANCE = "org.hostdev.Passthrough1.Instance"


def main():
    bus = dbus.bus.BusConnection(os.environ["DBUS_SYSTEM_BUS_ADDRESS"])
    root = bus.get_object(BUS_NAME, ROOT)
    functions = len(root.ListAvailable({"all": True}, dbus_interface=DEVICES))  # activates the daemon
    driver = bus.get_object("org.freedesktop.DBus", "/org/freedesktop/DBus")
    pid = int(driver.GetConnectionUnixProcessID(BUS_NAME, dbus_interface="org.freedesktop.DBus"))
    log = os.path.join(os.environ["HOSTDEV_TEST_DIR"], "strace.log")

    def traced(label, fn):
        tracer = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=openat,openat2", "-o", log, "-p", str(pid)],
                                  stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # attached
        fn()
        time.sleep(0.5)  # the snapshot after the reply
        tracer.terminate()
        tracer.wait()
        with open(log) as f:
            # by path, or relative to a device's directory (how a function is read now)
            opens = sum(1 for line in f if ('/vendor"' in line or ', "vendor"' in line) and "= -1" not in line)
        print("%-28s %4d opens of */vendor = %.2f PCI discoveries (%d functions)" % (
            label, opens, opens / functions, functions))

    if root.Get(DEVICES, "GpuMode", dbus_interface="org.freedesktop.DBus.Properties") == "vgpu":
        # The vGPU fixture: an instance with a vGPU profile is planned from the live model, not a new reading.
        inst = [None]
        traced("Instances.Create (vGPU)", lambda: inst.__setitem__(0, root.Create(
            "vm-bench", {"gpu_profile": "NVIDIA L40S-4Q"}, dbus_interface=INSTANCES)))
        traced("Instance.Delete", lambda: bus.get_object(BUS_NAME, inst[0]).Delete({}, dbus_interface=INSTANCE))
    else:
        path = [None]
        traced("Register", lambda: path.__setitem__(0, root.Register("nic0", "0000:02:00.0", {},
                                                                     dbus_interface=DEVICES)))
        dev = bus.get_object(BUS_NAME, path[0])
        traced("Device.BindVfio", lambda: dev.BindVfio({}, dbus_interface=DEVICE))
        traced("Device.Restore", lambda: dev.Restore({}, dbus_interface=DEVICE))
    traced("ListDevices (a read)", lambda: root.ListDevices(dbus_interface=DEVICES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
