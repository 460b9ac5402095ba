#!/usr/bin/python3
"""Bus tests of hostdevd (hostdevd-fake) on the private system bus of harness.sh, with the real polkitd.

    test_bus.py TEST_NAME        (run by meson through harness.sh; /usr/bin/python3 with python3-dbus)

Callers other than root run in a forked child that drops to the test user and opens its own connection.
"""
import os
import socket
import pickle
import pwd
import signal
import sys
import time
import traceback

import dbus
import dbus.mainloop.glib
from gi.repository import GLib

dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)

BUS_NAME = "org.hostdev.Passthrough1"
ROOT = "/org/hostdev/Passthrough1"
DEVICES = "org.hostdev.Passthrough1.Devices"
INSTANCES = "org.hostdev.Passthrough1.Instances"
DEVICE = "org.hostdev.Passthrough1.Device"
INSTANCE = "org.hostdev.Passthrough1.Instance"
ERR = "org.hostdev.Passthrough1.Error."
PROPS = "org.freedesktop.DBus.Properties"
OM = "org.freedesktop.DBus.ObjectManager"

GPU, AUDIO, NIC, BARE, BRIDGE = "0000:01:00.0", "0000:01:00.1", "0000:02:00.0", "0000:03:00.0", "0000:00:01.0"
TEST_DIR = os.environ.get("HOSTDEV_TEST_DIR", "")


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def eq(actual, expected, what):
    if actual != expected:
        raise Failure("%s: expected %r, got %r" % (what, expected, actual))


def plain(v):
    """dbus types -> plain Python, for printing, comparing and pickling."""
    if isinstance(v, dbus.Boolean):
        return bool(v)
    if isinstance(v, (dbus.ObjectPath, dbus.String)):
        return str(v)
    if isinstance(v, (dbus.Byte, dbus.Int16, dbus.Int32, dbus.Int64, dbus.UInt16, dbus.UInt32, dbus.UInt64)):
        return int(v)
    if isinstance(v, dbus.Double):
        return float(v)
    if isinstance(v, dbus.types.UnixFd):  # a received descriptor: what it is, and closed
        fd = v.take()
        st = os.fstat(fd)
        os.close(fd)
        return ("fd", os.major(st.st_rdev), os.minor(st.st_rdev))
    if isinstance(v, dict):
        return {plain(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return v


_bus = None


def bus():
    global _bus
    if _bus is None:
        _bus = dbus.SystemBus()
    return _bus


def in_child(body):
    """Runs body() in a forked child; returns (pid, read end of its pipe) for child_result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            out = ("ok", body())
        except dbus.DBusException as e:
            out = ("dbus", e.get_dbus_name(), e.get_dbus_message())
        except BaseException as e:  # noqa: BLE001 - report anything to the parent
            out = ("py", repr(e))
        os.write(w, pickle.dumps(out))
        os._exit(0)
    os.close(w)
    return pid, r


def child_result(pid, r):
    """What in_child's body returned: ("ok", value), ("dbus", name, message) or ("py", repr)."""
    data = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return pickle.loads(data)


def call(iface, method, *args, path=ROOT, user=None, timeout=30):
    """Calls a method as root (user None) or as a test user; returns plain values; raises dbus exceptions
    (for a user: DBusException re-created with the same name and message)."""
    if user is None:
        obj = bus().get_object(BUS_NAME, path)
        return plain(obj.get_dbus_method(method, iface)(*args, timeout=timeout))

    def as_user():
        pw = pwd.getpwnam(user)
        os.initgroups(user, pw.pw_gid)
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
        conn = dbus.bus.BusConnection(os.environ["DBUS_SYSTEM_BUS_ADDRESS"])
        obj = conn.get_object(BUS_NAME, path)
        return plain(obj.get_dbus_method(method, iface)(*args, timeout=timeout))

    out = child_result(*in_child(as_user))
    if out[0] == "ok":
        return out[1]
    if out[0] == "dbus":
        raise dbus.DBusException(out[2], name=out[1])
    raise Failure("child for %s failed: %s" % (user, out[1]))


def expect_error(name, fn, *args, **kw):
    try:
        result = fn(*args, **kw)
    except dbus.DBusException as e:
        got = e.get_dbus_name()
        if got != (ERR + name if "." not in name else name):
            raise Failure("expected error %s, got %s: %s" % (name, got, e.get_dbus_message()))
        check(e.get_dbus_message(), "error %s without a message" % name)
        return e.get_dbus_message()
    raise Failure("expected error %s, got a result: %r" % (name, result))


def prop(path, iface, name):
    return call(PROPS, "Get", iface, name, path=path)


def props(path, iface):
    return call(PROPS, "GetAll", iface, path=path)


def sv(**kw):
    return dbus.Dictionary(kw, signature="sv")


def no_opts():
    return dbus.Dictionary({}, signature="sv")


# ---------------------------------------------------------------------------------------------- signal capture

class Recorder:
    """Every signal on the bus this connection can see, in order: (interface, member, path, args)."""

    def __init__(self):
        self.seen = []
        bus().add_signal_receiver(self._on, interface_keyword="iface", member_keyword="member",
                                  path_keyword="path")

    def _on(self, *args, iface=None, member=None, path=None):
        self.seen.append((str(iface), str(member), str(path), plain(list(args))))

    def pump(self, seconds=0.0):
        ctx = GLib.MainContext.default()
        end = time.monotonic() + seconds
        while True:
            while ctx.iteration(False):
                pass
            if time.monotonic() >= end:
                return
            time.sleep(0.005)

    def wait_for(self, iface, member, path=None, seconds=5.0, pred=None):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.pump()
            for s in self.seen:
                if s[0] == iface and s[1] == member and (path is None or s[2] == path) and (pred is None or pred(s)):
                    return s
            time.sleep(0.005)
        raise Failure("no %s.%s%s signal within %.1f s; seen: %s" % (
            iface, member, " on " + path if path else "", seconds,
            "\n  ".join(repr(x) for x in self.seen) or "nothing"))

    def clear(self):
        self.pump()
        self.seen = []


# ------------------------------------------------------------------------------------------------------ helpers

def register(address, name="", user=None):
    return call(DEVICES, "Register", name, address, no_opts(), user=user)


def daemon_pid():
    dbus_obj = bus().get_object("org.freedesktop.DBus", "/org/freedesktop/DBus")
    return int(dbus_obj.GetConnectionUnixProcessID(BUS_NAME, dbus_interface="org.freedesktop.DBus"))


def name_has_owner():
    dbus_obj = bus().get_object("org.freedesktop.DBus", "/org/freedesktop/DBus")
    return bool(dbus_obj.NameHasOwner(BUS_NAME, dbus_interface="org.freedesktop.DBus"))


def kill_daemon():
    pid = daemon_pid()
    os.kill(pid, signal.SIGKILL)
    end = time.monotonic() + 5
    while name_has_owner() and time.monotonic() < end:
        time.sleep(0.01)
    check(not name_has_owner(), "the daemon still owns the name after kill -9")
    return pid


def write_rules(name, text):
    path = "/etc/polkit-1/rules.d/" + name
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)


def wait_until(fn, what, seconds=5.0):
    end = time.monotonic() + seconds
    last = None
    while time.monotonic() < end:
        try:
            if fn():
                return
        except dbus.DBusException as e:
            last = e
        time.sleep(0.02)
    raise Failure("timed out waiting for %s (last error: %s)" % (what, last))


# ------------------------------------------------------------------------------------------------------- tests

def members(xml_text, iface):
    """An interface's methods, signals and properties with their arguments, from introspection XML."""
    import xml.etree.ElementTree as ET

    node = ET.fromstring(xml_text).find("interface[@name='%s']" % iface)
    check(node is not None, "no interface " + iface)
    out = set()
    for m in node:
        if m.tag in ("method", "signal"):
            args = tuple((a.get("name"), a.get("type"), a.get("direction", "out" if m.tag == "signal" else "in"))
                         for a in m.findall("arg"))
            out.add((m.tag, m.get("name"), args))
        elif m.tag == "property":
            out.add((m.tag, m.get("name"), (m.get("type"), m.get("access"))))
    return sorted(out)


def test_activation():
    check(not name_has_owner(), "hostdevd runs before anyone asked for it")
    t0 = time.monotonic()
    version = prop(ROOT, DEVICES, "Version")
    ms = (time.monotonic() - t0) * 1000
    check(name_has_owner(), "no owner of %s after the first call" % BUS_NAME)
    eq(version, "0.1.0", "Version")
    call("org.freedesktop.DBus.Peer", "Ping")
    intro = call("org.freedesktop.DBus.Introspectable", "Introspect")
    for iface in (DEVICES, INSTANCES, OM):
        check(iface in intro, "Introspect of the root lacks " + iface)
    # The bus shows the interface of the XML exactly, the methods hostdevd registers by hand included
    # (src/common/adaptor-xml.py).
    xml = os.path.join(os.environ["HOSTDEV_SRC"], "dbus/org.hostdev.Passthrough1.xml")
    for iface in (DEVICES, INSTANCES):
        eq(members(str(intro), iface), members(open(xml, encoding="utf-8").read(), iface), "members of " + iface)
    print("activation to first reply: %.1f ms (pid %d)" % (ms, daemon_pid()))


def test_properties_passthrough():
    p = props(ROOT, DEVICES)
    eq(p["GpuMode"], "passthrough", "GpuMode")
    eq(p["IommuEnabled"], True, "IommuEnabled")
    eq(p["VfioAvailable"], True, "VfioAvailable")
    eq(p["Version"], "0.1.0", "Version")


def test_properties_vgpu():
    p = props(ROOT, DEVICES)
    eq(p["GpuMode"], "vgpu", "GpuMode")
    eq(p["IommuEnabled"], True, "IommuEnabled")
    res = call(DEVICES, "GetGpuResources")
    eq(res["mode"], "vgpu", "GetGpuResources mode")
    check(res["total_slots"] > 0, "vgpu host with no slots: %r" % res)
    eq(res["used_slots"], 0, "used_slots")
    names = sorted(p["name"] for p in res["profiles"])
    check("NVIDIA L40S-4Q" in names, "profiles lack NVIDIA L40S-4Q: %r" % names)
    q4 = [p for p in res["profiles"] if p["name"] == "NVIDIA L40S-4Q"][0]
    eq(q4["framebuffer_mb"], 4096, "L40S-4Q framebuffer_mb")
    eq(q4["type"], "nvidia-1157", "L40S-4Q type")


def test_properties_no_iommu():
    p = props(ROOT, DEVICES)
    eq(p["GpuMode"], "none", "GpuMode")
    eq(p["IommuEnabled"], False, "IommuEnabled")
    eq(p["VfioAvailable"], False, "VfioAvailable")
    report = call(DEVICES, "CheckHost")
    eq(report["iommu_enabled"], False, "CheckHost iommu_enabled")
    check(len(report["problems"]) > 0 and len(report["problems"]) == len(report["hints"]),
          "CheckHost problems/hints: %r" % report)
    expect_error("IommuUnavailable", register, "0000:01:00.0")


def test_big_replies():
    """bench-vgpu (8 GPUs x 32 VFs): ListAvailable's replies are big enough for the replier thread. Every client
    gets the whole, same reply while others call at once, and a change shows in the next reply."""
    gpus = call(DEVICES, "ListAvailable", no_opts())
    everything = call(DEVICES, "ListAvailable", sv(all=True))
    check(len(gpus) >= 200, "bench-vgpu lists only %d GPU functions" % len(gpus))
    eq(sorted(d["pci_address"] for d in gpus), sorted(d["pci_address"] for d in everything if d["is_gpu"]),
       "ListAvailable({}) = the GPUs of ListAvailable({all})")
    for d in everything:
        for key in ("pci_address", "vendor_id", "device_id", "class", "iommu_group", "is_gpu", "registered"):
            check(key in d, "entry %s lacks %s" % (d.get("pci_address"), key))
        eq(d["registered"], "/", "registered of %s" % d["pci_address"])
    want = (repr(gpus), repr(everything))

    def reads():
        conn = dbus.bus.BusConnection(os.environ["DBUS_SYSTEM_BUS_ADDRESS"])
        method = conn.get_object(BUS_NAME, ROOT, introspect=False).get_dbus_method("ListAvailable", DEVICES)
        return all((repr(plain(method(no_opts()))), repr(plain(method(sv(all=True))))) == want for _ in range(5))

    children = [in_child(reads) for _ in range(4)]
    for _ in range(100):  # while they read
        call("org.freedesktop.DBus.Peer", "Ping")
    for child in children:
        eq(child_result(*child), ("ok", True), "a client's ListAvailable replies while others called")

    address = gpus[0]["pci_address"]
    path = register(address, "big-replies")
    after = {d["pci_address"]: d for d in call(DEVICES, "ListAvailable", no_opts())}
    eq(after[address]["registered"], path, "registered after Register")
    call(DEVICES, "Unregister", "big-replies", no_opts())
    after = {d["pci_address"]: d for d in call(DEVICES, "ListAvailable", sv(all=True))}
    eq(after[address]["registered"], "/", "registered after Unregister")


def test_reads():
    gpus = call(DEVICES, "ListAvailable", no_opts())
    eq(sorted(d["pci_address"] for d in gpus), [GPU, AUDIO], "ListAvailable GPUs (NVIDIA functions)")
    gpu = [d for d in gpus if d["pci_address"] == GPU][0]
    for key in ("vendor_id", "device_id", "class", "iommu_group", "driver", "is_gpu", "numa_node",
                "reset_method", "iommu_group_members", "registered"):
        check(key in gpu, "ListAvailable entry lacks %s: %r" % (key, sorted(gpu)))
    eq(gpu["vendor_id"], "10de", "vendor_id")
    eq(gpu["device_id"], "27b8", "device_id")
    eq(gpu["class"], "0x030200", "class")
    eq(gpu["driver"], "nvidia", "driver")
    eq(gpu["registered"], "/", "registered before Register")
    everything = call(DEVICES, "ListAvailable", sv(all=True))
    eq(sorted(d["pci_address"] for d in everything), [BRIDGE, GPU, AUDIO, NIC, BARE], "ListAvailable all=true")
    check("driver" not in [d for d in everything if d["pci_address"] == BARE][0],
          "a driverless function should leave out driver (null)")
    expect_error("InvalidArgument", call, DEVICES, "ListAvailable", sv(bogus=True))
    expect_error("InvalidArgument", call, DEVICES, "ListAvailable", sv(all="yes"))
    call(DEVICES, "ListAvailable", sv(interactive=True))
    res = call(DEVICES, "GetGpuResources")
    eq(res["mode"], "passthrough", "resources mode")
    eq([d["pci_address"] for d in res["devices"]], [GPU], "passthrough devices (display class only)")
    report = call(DEVICES, "CheckHost")
    eq(report["iommu_enabled"], True, "CheckHost iommu_enabled")
    eq(report["vfio_available"], True, "CheckHost vfio_available")
    eq(report["gpu_mode"], "passthrough", "CheckHost gpu_mode")
    eq(call(DEVICES, "ListDevices"), [], "ListDevices on a fresh store")
    eq(call(INSTANCES, "ListInstances"), [], "ListInstances on a fresh store")
    expect_error("NotFound", call, DEVICES, "GetDevice", "nosuch")
    expect_error("InvalidName", call, DEVICES, "GetDevice", "../etc")
    expect_error("NotFound", call, INSTANCES, "GetInstance", "nosuch")
    expect_error("InvalidName", call, INSTANCES, "GetInstance", "bad name!")
    # reads are open to everyone
    eq(len(call(DEVICES, "ListAvailable", no_opts(), user="hdtest")), 2, "ListAvailable as hdtest")
    eq(call(PROPS, "Get", DEVICES, "GpuMode", user="hdtest"), "passthrough", "GpuMode as hdtest")


def test_devices():
    path = register(NIC, "nic0")
    check(path.startswith(ROOT + "/devices/"), "Register returned %s" % path)
    eq(call(DEVICES, "GetDevice", "nic0"), path, "GetDevice by name")
    p = props(path, DEVICE)
    eq(call(DEVICES, "GetDevice", p["Id"]), path, "GetDevice by id")
    eq(p["Name"], "nic0", "Name")
    eq(p["PciAddress"], NIC, "PciAddress")
    eq(p["Type"], "pci", "Type")
    eq((p["VendorId"], p["DeviceId"]), ("8086", "1533"), "ids")
    eq(p["IommuGroup"], 2, "IommuGroup")
    eq(p["Driver"], "igb", "Driver")
    eq(p["BoundToVfio"], False, "BoundToVfio")
    eq(p["AttachedTo"], "/", "AttachedTo")
    check(p["CreatedAt"] > 1600000000 * 10**6, "CreatedAt in µs: %r" % p["CreatedAt"])
    check(p["SysfsPath"].endswith("/sys/bus/pci/devices/" + NIC), "SysfsPath %r" % p["SysfsPath"])
    eq(call(DEVICES, "ListDevices"), [path], "ListDevices")
    nic = [d for d in call(DEVICES, "ListAvailable", sv(all=True)) if d["pci_address"] == NIC][0]
    eq(nic["registered"], path, "ListAvailable registered")
    auto = register(BARE)
    eq(prop(auto, DEVICE, "Name"), "pci-0000-03-00-0", "automatic name")

    expect_error("InvalidPciAddress", register, "0000:zz:00.0")
    expect_error("InvalidPciAddress", register, "not-an-address", "x1")
    expect_error("InvalidName", register, GPU, "bad name!")
    expect_error("InvalidName", register, GPU, "-leadingdash")
    expect_error("DeviceNotFound", register, "0000:7f:00.0", "ghost")
    expect_error("AlreadyExists", register, NIC, "nic-again")
    expect_error("NameExists", register, GPU, "nic0")
    expect_error("InvalidArgument", call, DEVICES, "Register", "g", GPU, sv(bogus=1))
    expect_error("InvalidArgument", call, DEVICES, "Register", "g", GPU, sv(interactive="true"))

    call(DEVICE, "BindVfio", no_opts(), path=path)
    eq(prop(path, DEVICE, "Driver"), "vfio-pci", "Driver after BindVfio")
    eq(prop(path, DEVICE, "BoundToVfio"), True, "BoundToVfio after BindVfio")
    expect_error("AlreadyBound", call, DEVICE, "BindVfio", no_opts(), path=path)
    expect_error("InvalidArgument", call, DEVICE, "BindVfio", sv(force=True), path=path)
    call(DEVICE, "UnbindVfio", no_opts(), path=path)
    eq(prop(path, DEVICE, "Driver"), "igb", "Driver after UnbindVfio")
    expect_error("NotBound", call, DEVICE, "UnbindVfio", no_opts(), path=path)
    call(DEVICE, "BindVfio", sv(interactive=False), path=path)
    call(DEVICE, "Restore", no_opts(), path=path)
    eq(prop(path, DEVICE, "Driver"), "igb", "Driver after Restore")
    expect_error("InvalidArgument", call, DEVICE, "Restore", sv(interactive=1), path=path)

    gpu = register(GPU, "gpu0")
    msg = expect_error("IommuGroupConflict", call, DEVICE, "BindVfio", no_opts(), path=gpu)
    check(AUDIO in msg, "IommuGroupConflict should name the blocker %s: %s" % (AUDIO, msg))

    call(DEVICES, "Unregister", "nic0", no_opts())
    expect_error("NotFound", call, DEVICES, "GetDevice", "nic0")
    expect_error("NotFound", call, DEVICES, "Unregister", "nic0", no_opts())
    expect_error("InvalidName", call, DEVICES, "Unregister", "../x", no_opts())
    expect_error("InvalidArgument", call, DEVICES, "Unregister", "gpu0", sv(all=True))
    expect_error("org.freedesktop.DBus.Error.UnknownObject", call, DEVICE, "BindVfio", no_opts(), path=path)


def test_instances():
    gpu = register(GPU, "gpu0")
    audio = register(AUDIO, "gpu0-audio")
    inst = call(INSTANCES, "Create", "vm1", sv(devices=dbus.Array(["gpu0", "gpu0-audio"], signature="s"),
                                                image="debian-12"))
    check(inst.startswith(ROOT + "/instances/"), "Create returned %s" % inst)
    eq(call(INSTANCES, "GetInstance", "vm1"), inst, "GetInstance by name")
    p = props(inst, INSTANCE)
    eq(call(INSTANCES, "GetInstance", p["Id"]), inst, "GetInstance by id")
    eq(p["Name"], "vm1", "Name")
    eq(p["Image"], "debian-12", "Image")
    eq(p["Devices"], [gpu, audio], "Devices")
    eq(p["Owner"], 0, "Owner")
    eq(p["GpuProfile"], "", "GpuProfile")
    eq(p["MdevUuid"], "", "MdevUuid")
    eq(p["DevicePaths"], ["/sys/bus/pci/devices/%s/" % GPU, "/sys/bus/pci/devices/%s/" % AUDIO], "DevicePaths")
    eq(p["QemuArgs"], ["-device", "vfio-pci,host=" + GPU, "-device", "vfio-pci,host=" + AUDIO], "QemuArgs")
    eq(p["CloudHypervisorArgs"], ["--device", "path=/sys/bus/pci/devices/%s/" % GPU,
                                  "path=/sys/bus/pci/devices/%s/" % AUDIO], "CloudHypervisorArgs")
    check(p["CreatedAt"] > 0, "CreatedAt")
    eq(prop(gpu, DEVICE, "AttachedTo"), inst, "gpu AttachedTo")
    eq(prop(gpu, DEVICE, "Driver"), "vfio-pci", "gpu Driver while attached")
    eq(call(INSTANCES, "ListInstances"), [inst], "ListInstances")

    expect_error("InUse", call, INSTANCES, "Create", "vm2", sv(devices=dbus.Array(["gpu0"], signature="s")))
    expect_error("NameExists", call, INSTANCES, "Create", "vm1", sv(image="x"))
    expect_error("InvalidName", call, INSTANCES, "Create", "bad name", sv(image="x"))
    expect_error("InvalidArgument", call, INSTANCES, "Create", "vm3", no_opts())
    expect_error("InvalidArgument", call, INSTANCES, "Create", "vm3", sv(memory=4096))
    expect_error("InvalidArgument", call, INSTANCES, "Create", "vm3", sv(devices="gpu0"))
    expect_error("InvalidArgument", call, INSTANCES, "Create", "vm3", sv(gpu_profile=dbus.UInt32(1)))
    expect_error("NotFound", call, INSTANCES, "Create", "vm3", sv(devices=dbus.Array(["nosuch"], signature="s")))
    expect_error("ProfileUnavailable", call, INSTANCES, "Create", "vm3", sv(gpu_profile="NVIDIA L40S-4Q"))
    expect_error("InUse", call, DEVICES, "Unregister", "gpu0", no_opts())
    expect_error("InUse", call, DEVICE, "UnbindVfio", no_opts(), path=gpu)
    expect_error("InvalidArgument", call, INSTANCE, "Delete", sv(now=True), path=inst)
    expect_error("InvalidArgument", call, INSTANCES, "Delete", "vm1", sv(interactive="no"))

    call(INSTANCE, "Delete", no_opts(), path=inst)
    eq(call(INSTANCES, "ListInstances"), [], "ListInstances after Delete")
    eq(prop(gpu, DEVICE, "AttachedTo"), "/", "AttachedTo after Delete")
    eq(prop(gpu, DEVICE, "Driver"), "nvidia", "gpu given back to nvidia after Delete")
    expect_error("NotFound", call, INSTANCES, "Delete", "vm1", no_opts())
    expect_error("InvalidName", call, INSTANCES, "Delete", "a/b", no_opts())

    inst2 = call(INSTANCES, "Create", "vm2", sv(devices=dbus.Array([gpu.rsplit("/", 1)[1], "gpu0-audio"],
                                                                    signature="s")))
    call(INSTANCES, "Delete", inst2.rsplit("/", 1)[1], no_opts())
    eq(call(INSTANCES, "ListInstances"), [], "ListInstances after Instances.Delete by id")


def test_vgpu_instances():
    rec = Recorder()
    inst = call(INSTANCES, "Create", "vgpu1", sv(gpu_profile="NVIDIA L40S-4Q"))
    p = props(inst, INSTANCE)
    eq(p["GpuProfile"], "NVIDIA L40S-4Q", "GpuProfile")
    uuid = p["MdevUuid"]
    check(len(uuid) == 36, "MdevUuid %r" % uuid)
    eq(p["DevicePaths"], ["/sys/bus/mdev/devices/%s/" % uuid], "DevicePaths")
    eq(p["QemuArgs"], ["-device", "vfio-pci,sysfsdev=/sys/bus/mdev/devices/" + uuid], "QemuArgs")
    eq(p["CloudHypervisorArgs"], ["--device", "path=/sys/bus/mdev/devices/%s/" % uuid], "CloudHypervisorArgs")
    s = rec.wait_for(DEVICES, "MdevCreated")
    eq(s[3][0], uuid, "MdevCreated uuid")
    eq(s[3][1], "NVIDIA L40S-4Q", "MdevCreated profile")
    check(s[3][2].startswith("0000:a2:") or s[3][2].startswith("0000:c1:"), "MdevCreated parent %r" % s[3][2])
    eq(s[3][3], inst, "MdevCreated instance")
    eq(call(DEVICES, "GetGpuResources")["used_slots"], 1, "used_slots after Create")
    expect_error("ProfileUnavailable", call, INSTANCES, "Create", "vgpu2", sv(gpu_profile="NVIDIA L40S-99Q"))
    call(INSTANCES, "Delete", "vgpu1", no_opts())
    s = rec.wait_for(DEVICES, "MdevDestroyed")
    eq(s[3], [uuid, inst], "MdevDestroyed args")
    eq(call(DEVICES, "GetGpuResources")["used_slots"], 0, "used_slots after Delete")


def test_signals():
    rec = Recorder()
    path = register(NIC, "nic0")
    s = rec.wait_for(OM, "InterfacesAdded", ROOT, pred=lambda s: s[3][0] == path)
    check(DEVICE in s[3][1] and s[3][1][DEVICE]["Name"] == "nic0", "InterfacesAdded carries the properties: %r" % (s,))
    rec.clear()
    call(DEVICE, "BindVfio", no_opts(), path=path)
    s = rec.wait_for(PROPS, "PropertiesChanged", path)
    eq(s[3][0], DEVICE, "PropertiesChanged interface")
    eq(s[3][1].get("Driver"), "vfio-pci", "PropertiesChanged Driver")
    eq(s[3][1].get("BoundToVfio"), True, "PropertiesChanged BoundToVfio")
    rec.clear()
    call(DEVICE, "UnbindVfio", no_opts(), path=path)
    s = rec.wait_for(PROPS, "PropertiesChanged", path)
    eq(s[3][1].get("Driver"), "igb", "PropertiesChanged Driver after unbind")
    rec.clear()
    inst = call(INSTANCES, "Create", "vm1", sv(devices=dbus.Array(["nic0"], signature="s")))
    rec.wait_for(OM, "InterfacesAdded", ROOT, pred=lambda s: s[3][0] == inst)
    s = rec.wait_for(PROPS, "PropertiesChanged", path, pred=lambda s: "AttachedTo" in s[3][1])
    eq(s[3][1]["AttachedTo"], inst, "PropertiesChanged AttachedTo")
    rec.clear()
    call(INSTANCES, "Delete", "vm1", no_opts())
    s = rec.wait_for(OM, "InterfacesRemoved", ROOT, pred=lambda s: s[3][0] == inst)
    check(INSTANCE in s[3][1], "InterfacesRemoved lists %s: %r" % (INSTANCE, (s,)))
    s = rec.wait_for(PROPS, "PropertiesChanged", path, pred=lambda s: "AttachedTo" in s[3][1])
    eq(s[3][1]["AttachedTo"], "/", "AttachedTo after Delete")
    rec.clear()
    stats = call(DEVICES, "Reconcile", no_opts())
    for key in ("destroyed", "skipped_not_ours", "skipped_in_use", "cleared_attachments", "errors"):
        check(key in stats, "Reconcile stats lack %s: %r" % (key, stats))
    s = rec.wait_for(DEVICES, "MdevsReconciled")
    eq(s[3][0], stats, "MdevsReconciled carries the stats")
    rec.clear()
    call(DEVICES, "Unregister", "nic0", no_opts())
    rec.wait_for(OM, "InterfacesRemoved", ROOT, pred=lambda s: s[3][0] == path)
    managed = call(OM, "GetManagedObjects")
    check(path not in managed, "GetManagedObjects still lists %s" % path)


def test_object_manager():
    dev = register(GPU, "gpu0")
    register(AUDIO, "gpu0-audio")
    inst = call(INSTANCES, "Create", "vm1", sv(devices=dbus.Array(["gpu0", "gpu0-audio"], signature="s"),
                                                image="img"))
    managed = call(OM, "GetManagedObjects")
    check(dev in managed and DEVICE in managed[dev], "GetManagedObjects lacks the device: %r" % sorted(managed))
    check(inst in managed and INSTANCE in managed[inst], "GetManagedObjects lacks the instance")
    eq(managed[dev][DEVICE]["AttachedTo"], inst, "managed AttachedTo")
    eq(managed[inst][INSTANCE]["Image"], "img", "managed Image")


def restart_reconciles_common(rec):
    """kill -9 after an instance with an mdev exists: the restarted daemon keeps it and says so."""
    inst = call(INSTANCES, "Create", "keep", sv(gpu_profile="NVIDIA L40S-1Q"))
    uuid = prop(inst, INSTANCE, "MdevUuid")
    old = kill_daemon()
    rec.clear()
    eq(call(INSTANCES, "ListInstances"), [inst], "instances after kill -9 and re-activation")
    check(daemon_pid() != old, "the daemon was not restarted")
    s = rec.wait_for(DEVICES, "MdevsReconciled")
    eq(s[3][0]["destroyed"], 0, "nothing to destroy after a clean kill")
    eq(prop(inst, INSTANCE, "MdevUuid"), uuid, "the instance keeps its mdev")
    return inst


def test_restart_reconciles():
    rec = Recorder()
    restart_reconciles_common(rec)
    # Crash between the mdev create and the instance commit: the next start destroys the orphan.
    with open(os.path.join(TEST_DIR, "crash-at"), "w") as f:
        f.write("after-mdev-create\n")
    call("org.freedesktop.DBus.Peer", "Ping")  # any running daemon has read the file already: restart it
    kill_daemon()
    call("org.freedesktop.DBus.Peer", "Ping")  # this start reads crash-at
    rec.clear()
    try:
        call(INSTANCES, "Create", "doomed", sv(gpu_profile="NVIDIA L40S-2Q"))
        raise Failure("Create returned although the daemon should have crashed after the mdev write")
    except dbus.DBusException as e:
        check("NoReply" in e.get_dbus_name() or "Disconnected" in e.get_dbus_name() or
              "ServiceUnknown" in e.get_dbus_name(), "unexpected error from the crashed call: %s" % e)
    wait_until(lambda: not name_has_owner(), "the crashed daemon to drop the name")
    rec.clear()
    names = [prop(p, INSTANCE, "Name") for p in call(INSTANCES, "ListInstances")]
    eq(names, ["keep"], "instances after the crash")
    s = rec.wait_for(DEVICES, "MdevsReconciled")
    eq(s[3][0]["destroyed"], 1, "the orphan mdev destroyed at start-up")
    d = rec.wait_for(DEVICES, "MdevDestroyed")
    check(len(d[3][0]) == 36, "MdevDestroyed uuid %r" % d[3][0])
    eq(call(DEVICES, "GetGpuResources")["used_slots"], 1, "only the kept instance's mdev remains")


# --------------------------------------------------------------------------------------------- authorization

def authz(method_desc, setup, attempt, verify=None):
    """hdtest denied (nothing changes), hdadmin allowed by the group rule, root allowed."""
    ctx = setup()
    msg = expect_error("NotAuthorized", attempt, ctx, "hdtest")
    check("org.hostdev.passthrough1." in msg, "the denial should name the action: %s" % msg)
    if verify:
        verify(ctx, False)
    attempt(ctx, "hdadmin")
    if verify:
        verify(ctx, True)
    ctx = setup()
    attempt(ctx, None)
    if verify:
        verify(ctx, True)
    print("%s: hdtest denied, hdadmin and root allowed" % method_desc)


def test_authz_register():
    names = iter(["a1", "a2"])
    addrs = iter([NIC, BARE])

    def attempt(ctx, user):
        return register(ctx[0], ctx[1], user=user)

    def setup():
        return (next(addrs), next(names))

    authz("Register", setup, attempt,
          lambda ctx, ok: eq(len([d for d in call(DEVICES, "ListDevices")
                                  if prop(d, DEVICE, "Name") == ctx[1]]), 1 if ok else 0, "registered " + ctx[1]))


def test_authz_unregister():
    n = iter(range(10))

    def setup():
        name = "d%d" % next(n)
        register(NIC, name)
        return name

    def attempt(name, user):
        return call(DEVICES, "Unregister", name, no_opts(), user=user)

    def verify(name, ok):
        eq(len(call(DEVICES, "ListDevices")), 0 if ok else 1, "devices after Unregister of " + name)

    authz("Unregister", setup, attempt, verify)


def device_method_authz(method, prepare, driver_after_ok, driver_after_denied):
    n = iter(range(10))

    def setup():
        for p in call(DEVICES, "ListDevices"):
            call(DEVICE, "Restore", no_opts(), path=p)
            call(DEVICES, "Unregister", p.rsplit("/", 1)[1], no_opts())
        path = register(NIC, "nic%d" % next(n))
        prepare(path)
        return path

    def attempt(path, user):
        return call(DEVICE, method, no_opts(), path=path, user=user)

    def verify(path, ok):
        eq(prop(path, DEVICE, "Driver"), driver_after_ok if ok else driver_after_denied, "Driver after " + method)

    authz(method, setup, attempt, verify)


def test_authz_bind():
    device_method_authz("BindVfio", lambda p: None, "vfio-pci", "igb")


def test_authz_unbind():
    device_method_authz("UnbindVfio", lambda p: call(DEVICE, "BindVfio", no_opts(), path=p), "igb", "vfio-pci")


def test_authz_restore():
    device_method_authz("Restore", lambda p: call(DEVICE, "BindVfio", no_opts(), path=p), "igb", "vfio-pci")


def test_authz_reconcile():
    authz("Reconcile", lambda: None, lambda ctx, user: call(DEVICES, "Reconcile", no_opts(), user=user))


def test_authz_create():
    n = iter(range(10))

    def setup():
        return "vm%d" % next(n)

    def attempt(name, user):
        return call(INSTANCES, "Create", name, sv(gpu_profile="NVIDIA L40S-1Q"), user=user)

    def verify(name, ok):
        found = [p for p in call(INSTANCES, "ListInstances") if prop(p, INSTANCE, "Name") == name]
        eq(len(found), 1 if ok else 0, "instance " + name)
        if ok:
            eq(prop(found[0], INSTANCE, "Owner"), {"vm0": 4712, "vm1": 0}[name], "Owner of " + name)

    authz("Create", setup, attempt, verify)


def delete_authz(method):
    n = iter(range(10))

    def setup():
        # root-owned: everyone but root needs manage-all-instances; hdadmin has it via the group rule
        return call(INSTANCES, "Create", "vm%d" % next(n), sv(gpu_profile="NVIDIA L40S-1Q"))

    def attempt(path, user):
        if method == "Instance.Delete":
            return call(INSTANCE, "Delete", no_opts(), path=path, user=user)
        return call(INSTANCES, "Delete", prop(path, INSTANCE, "Name"), no_opts(), user=user)

    def verify(path, ok):
        eq(path not in call(INSTANCES, "ListInstances"), ok, "instance deleted by " + method)

    authz(method, setup, attempt, verify)


def test_authz_delete():
    delete_authz("Instances.Delete")


def test_authz_instance_delete():
    delete_authz("Instance.Delete")


def test_authz_delete_other_user():
    # hdtest may manage its own instances (an extra rule), not other users'.
    write_rules("60-hdtest.rules", """
polkit.addRule(function(action, subject) {
    if (action.id == "org.hostdev.passthrough1.manage-instances" && subject.user == "hdtest")
        return polkit.Result.YES;
});
""")
    wait_until(lambda: call(INSTANCES, "Create", "probe", sv(gpu_profile="NVIDIA L40S-1Q"), user="hdtest"),
               "polkitd to load the hdtest rule")
    mine = call(INSTANCES, "GetInstance", "probe")
    eq(prop(mine, INSTANCE, "Owner"), 4711, "Owner of hdtest's instance")
    theirs = call(INSTANCES, "Create", "admins", sv(gpu_profile="NVIDIA L40S-1Q"), user="hdadmin")
    eq(prop(theirs, INSTANCE, "Owner"), 4712, "Owner of hdadmin's instance")
    msg = expect_error("NotAuthorized", call, INSTANCES, "Delete", "admins", no_opts(), user="hdtest")
    check("manage-all-instances" in msg, "the denial should name manage-all-instances: %s" % msg)
    expect_error("NotAuthorized", call, INSTANCE, "Delete", no_opts(), path=theirs, user="hdtest")
    call(INSTANCES, "Delete", "probe", no_opts(), user="hdtest")
    call(INSTANCES, "Delete", "admins", no_opts(), user="hdadmin")
    mine = call(INSTANCES, "Create", "probe2", sv(gpu_profile="NVIDIA L40S-1Q"), user="hdtest")
    call(INSTANCE, "Delete", no_opts(), path=mine, user="hdadmin")  # hdadmin has manage-all-instances
    eq(call(INSTANCES, "ListInstances"), [], "all deleted")
    # hdtest still may not touch devices
    expect_error("NotAuthorized", register, NIC, "nn", user="hdtest")


def test_authz_canonical_details():
    # polkit rules see what hostdev will act on, however the caller spelled it: the normalized address, the
    # name actually used, devices by name (and id), the profile by name (and type id).
    write_rules("10-deny-by-details.rules", """
polkit.addRule(function(action, subject) {
    if (subject.user != "hdadmin")
        return polkit.Result.NOT_HANDLED;
    if (action.id == "org.hostdev.passthrough1.reconcile" ||
        action.lookup("pci_address") == "0000:a2:00.0" ||
        action.lookup("device") == "pci-0000-a2-00-4" ||
        action.lookup("device") == "gpu-denied" ||
        action.lookup("profile") == "NVIDIA L40S-1Q")
        return polkit.Result.NO;
    return polkit.Result.NOT_HANDLED;
});
""")

    def reconcile_denied():
        try:
            call(DEVICES, "Reconcile", no_opts(), user="hdadmin")
            return False
        except dbus.DBusException as e:
            return e.get_dbus_name() == ERR + "NotAuthorized"
    wait_until(reconcile_denied, "polkitd to load the rule")
    expect_error("NotAuthorized", register, "0000:A2:00.0", "pf0", user="hdadmin")  # upper case
    expect_error("NotAuthorized", register, "0000:a2:00.4", "", user="hdadmin")  # the automatic name
    expect_error("NotAuthorized", call, INSTANCES, "Create", "vm1", sv(gpu_profile="nvidia-1155"),
                 user="hdadmin")  # the type id of NVIDIA L40S-1Q
    denied = register("0000:c1:00.4", "gpu-denied")
    denied_id = prop(denied, DEVICE, "Id")
    expect_error("NotAuthorized", call, INSTANCES, "Create", "vm2",
                 sv(devices=dbus.Array([denied_id], signature="s")), user="hdadmin")  # by id
    eq(call(DEVICES, "ListDevices"), [denied], "nothing registered by the denied calls")
    eq(call(INSTANCES, "ListInstances"), [], "no instance from the denied calls")
    # The rule denies only these: hdadmin's other calls still go through (the group rule).
    register("0000:c1:00.5", "", user="hdadmin")
    call(INSTANCES, "Create", "vm3", sv(gpu_profile="NVIDIA L40S-2Q"), user="hdadmin")


def test_authz_stalled_agent():
    # A user whose polkit agent never answers holds up only their own calls: polkit is asked asynchronously,
    # at most a few of one user's checks may wait for a person, and leaving the bus cancels them.
    import subprocess
    helper = os.path.join(os.environ["HOSTDEV_SRC"], "tests/bus/stall_agent.py")
    as_hdtest = ["setpriv", "--reuid=4711", "--regid=4711", "--clear-groups", "/usr/bin/python3", helper]
    caller = subprocess.Popen(as_hdtest + ["caller"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    agent = None
    try:
        words = caller.stdout.readline().split()
        check(words[:1] == ["pid"], "the caller's first line: %r" % words)
        agent = subprocess.Popen(as_hdtest + ["agent", words[1]], stdout=subprocess.PIPE, text=True)
        eq(agent.stdout.readline().strip(), "registered", "the agent's first line")
        caller.stdin.write("go 1\n")
        caller.stdin.flush()
        eq(agent.stdout.readline().split()[:1], ["begin"], "polkit asks the agent, which never answers")
        t0 = time.monotonic()
        register(BARE, "bare0")  # root, while hdtest's check waits for a person
        took = time.monotonic() - t0
        check(took < 3, "root's Register took %.1f s behind another user's pending authentication" % took)
        caller.stdin.write("go 4\n")
        caller.stdin.flush()
        refused = caller.stdout.readline().split()
        eq(refused[:4], ["reply", "5", "ERROR", ERR + "NotAuthorized"], "the fifth waiting check of one uid")
        check("waiting for authentication" in " ".join(refused), "the refusal says why: %r" % refused)
        caller.kill()  # the caller leaves the bus: its four checks are cancelled
        caller.wait()
        begun = 1
        cancelled = 0
        end = time.monotonic() + 5
        while cancelled < begun and time.monotonic() < end:
            line = agent.stdout.readline().split()
            begun += line[:1] == ["begin"]
            cancelled += line[:1] == ["cancel"]
        check(cancelled >= 1 and cancelled == begun,
              "polkit's sessions cancelled when the caller left: %d begun, %d cancelled" % (begun, cancelled))
        eq([prop(p, DEVICE, "Name") for p in call(DEVICES, "ListDevices")], ["bare0"], "nothing of hdtest's")
    finally:
        for p in (caller, agent):
            if p and p.poll() is None:
                p.kill()


def test_authz_polkit_missing():
    # polkit gone (not activatable, not running): everyone but root is refused.
    os.rename(os.path.join(TEST_DIR, "gen/services/org.freedesktop.PolicyKit1.service"),
              os.path.join(TEST_DIR, "gen/polkit.service.off"))
    call("org.freedesktop.DBus", "ReloadConfig", path="/org/freedesktop/DBus") if False else None
    dbus_obj = bus().get_object("org.freedesktop.DBus", "/org/freedesktop/DBus")
    dbus_obj.ReloadConfig(dbus_interface="org.freedesktop.DBus")
    if dbus_obj.NameHasOwner("org.freedesktop.PolicyKit1", dbus_interface="org.freedesktop.DBus"):
        os.kill(int(dbus_obj.GetConnectionUnixProcessID("org.freedesktop.PolicyKit1",
                                                        dbus_interface="org.freedesktop.DBus")), signal.SIGKILL)
    wait_until(lambda: not dbus_obj.NameHasOwner("org.freedesktop.PolicyKit1", dbus_interface="org.freedesktop.DBus"),
               "polkitd to go")
    msg = expect_error("NotAuthorized", register, NIC, "n1", user="hdadmin")
    check("polkit" in msg, "the denial should say polkit failed: %s" % msg)
    register(NIC, "n1")  # root needs no polkit
    eq(len(call(DEVICES, "ListDevices", user="hdadmin")), 1, "reads still open")


def test_idle_exit():
    # run with HOSTDEV_FAKE_EXTRA="--idle-exit 1" (see meson.build)
    register(NIC, "nic0")
    pid = daemon_pid()
    t0 = time.monotonic()
    wait_until(lambda: not name_has_owner(), "the idle daemon to exit", seconds=5)
    waited = time.monotonic() - t0
    check(waited >= 0.5, "exited after %.2f s, before its idle time" % waited)
    eq(call(DEVICES, "ListDevices") != [], True, "the store survives an idle exit")
    check(daemon_pid() != pid, "re-activated daemon has a new pid")
    print("idle exit after %.2f s" % waited)


def test_out_of_band_change():
    # A driver change made behind hostdev's back shows up when the kernel says so (a uevent), by signal and in
    # every read; until then reads answer from the model and read nothing.
    rec = Recorder()
    path = register(NIC, "nic0")
    root = fixture_root(path)
    eq(prop(path, DEVICE, "Driver"), "igb", "Driver after Register")
    link = os.path.join(root, "sys/bus/pci/devices", NIC, "driver")
    target = os.readlink(link)
    os.unlink(link)  # "unbound" out of band
    time.sleep(0.3)
    eq(prop(path, DEVICE, "Driver"), "igb", "Driver before the kernel said anything: the model, not sysfs")
    t0 = time.monotonic()
    pci_uevent(root, "unbind", NIC)
    s = rec.wait_for(PROPS, "PropertiesChanged", path, pred=lambda s: "Driver" in s[3][1])
    eq(s[3][1]["Driver"], "", "PropertiesChanged Driver after the unbind uevent")
    print("uevent to PropertiesChanged: %.1f ms" % ((time.monotonic() - t0) * 1000))
    eq(call(OM, "GetManagedObjects")[path][DEVICE]["Driver"], "", "GetManagedObjects after the unbind uevent")
    os.symlink(target, link)  # and bound again
    pci_uevent(root, "bind", NIC, DRIVER="igb")
    wait_until(lambda: prop(path, DEVICE, "Driver") == "igb", "Get(Driver) to show the out-of-band bind",
               seconds=3)
    eq(props(path, DEVICE)["BoundToVfio"], False, "BoundToVfio after the out-of-band bind")
    # Events not believed: another uid's datagram is dropped (here: none to send as; a malformed one instead).
    os.unlink(link)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sk:
        sk.sendto(b"unbind@/devices/pci0000:00/" + NIC.encode() + b"\0ACTION=bind\0", os.path.join(root, "uevent.sock"))
    time.sleep(0.3)
    eq(prop(path, DEVICE, "Driver"), "igb", "a malformed uevent changes nothing")
    os.symlink(target, link)


def test_non_utf8_sysfs():
    # sysfs strings are bytes: one that is not UTF-8 must not break reads for everyone, nor the next start.
    path = register(NIC, "nic0")
    root = fixture_root(path)
    with open(os.path.join(root, "sys/bus/pci/devices", BARE, "driver_override"), "wb") as f:
        f.write(b"\xff\xfe\n")  # an unregistered device
    pci_uevent(root, "change", BARE)

    def override_shown():
        entries = call(DEVICES, "ListAvailable", sv(all=True))
        return [e for e in entries if e["pci_address"] == BARE][0].get("driver_override") == "\\xff\\xfe"
    wait_until(override_shown, "ListAvailable({all}) with the escaped driver_override", seconds=3)
    with open(os.path.join(root, "sys/bus/pci/devices", BARE, "driver_override"), "wb") as f:
        f.write(b"a\x00b\n")  # a NUL: valid UTF-8, but no D-Bus string may hold it
    pci_uevent(root, "change", BARE)
    wait_until(lambda: [e for e in call(DEVICES, "ListAvailable", sv(all=True))
                        if e["pci_address"] == BARE][0].get("driver_override") == "a\\x00b",
               "ListAvailable({all}) with the NUL escaped", seconds=3)
    # A registered device whose driver's name is not UTF-8.
    drivers = os.path.join(root, "sys/bus/pci/drivers").encode()
    os.makedirs(os.path.join(drivers, b"drv\xff"), exist_ok=True)
    link = os.path.join(root, "sys/bus/pci/devices", NIC, "driver")
    os.unlink(link)
    os.symlink(os.path.relpath(os.path.join(drivers, b"drv\xff"),
                               os.path.dirname(os.path.realpath(link)).encode()), link.encode())
    pci_uevent(root, "bind", NIC)
    wait_until(lambda: call(OM, "GetManagedObjects")[path][DEVICE]["Driver"] == "drv\\xff",
               "GetManagedObjects with the escaped driver name", seconds=3)
    eq(props(path, DEVICE)["Driver"], "drv\\xff", "GetAll of the device")
    eq(len(call(DEVICES, "ListAvailable", sv(all=True), user="hdtest")), 5, "another user's ListAvailable({all})")


def test_generation():
    # Devices.Generation goes up with every change, hostdev's own or the kernel's, and is announced; a read that
    # finds nothing new leaves it alone.
    rec = Recorder()
    g0 = prop(ROOT, DEVICES, "Generation")
    check(g0 >= 1, "Generation at start: %r" % g0)
    path = register(NIC, "nic0")
    g1 = prop(ROOT, DEVICES, "Generation")
    check(g1 > g0, "Generation after Register: %d, before %d" % (g1, g0))
    s = rec.wait_for(PROPS, "PropertiesChanged", ROOT, pred=lambda s: "Generation" in s[3][1])
    eq(s[3][0], DEVICES, "the interface of the Generation change")
    root = fixture_root(path)
    pci_uevent(root, "change", NIC)  # the kernel says something changed: nothing did
    time.sleep(0.3)
    eq(prop(ROOT, DEVICES, "Generation"), g1, "Generation after a uevent that changed nothing")
    os.unlink(os.path.join(root, "sys/bus/pci/devices", NIC, "driver"))  # out of band
    pci_uevent(root, "unbind", NIC)
    wait_until(lambda: prop(ROOT, DEVICES, "Generation") > g1, "Generation to show the out-of-band unbind",
               seconds=3)
    eq(prop(path, DEVICE, "Driver"), "", "the out-of-band unbind")


def start_hung_bind():
    """Registers the NIC and starts a BindVfio whose unbind of igb hangs for 3 s in the fake kernel; returns the
    device path, the call's result dict (filled by pump() when it answers) and pump."""
    path = register(NIC, "nic0")
    root = fixture_root(path)
    set_faults("delay igb/unbind 3000\n")
    result = {}
    bus().get_object(BUS_NAME, path).get_dbus_method("BindVfio", DEVICE)(
        no_opts(), timeout=30, reply_handler=lambda *a: result.update(ok=True),
        error_handler=lambda e: result.update(error=e))

    def pump():
        while GLib.MainContext.default().iteration(False):
            pass
        return result

    wait_until(lambda: [pump(), sysfs_state(root, NIC)["override"] == "vfio-pci"][1],
               "BindVfio to reach the hung unbind")
    return path, result, pump


def test_dropped_caller():
    # A queued mutation whose caller left the bus (its call timed out behind a long job) never runs.
    path, result, pump = start_hung_bind()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            conn = dbus.bus.BusConnection(os.environ["DBUS_SYSTEM_BUS_ADDRESS"])
            # Unregister of the same device: it waits behind the bind (an unrelated device would not).
            conn.get_object(BUS_NAME, ROOT, introspect=False).get_dbus_method("Unregister", DEVICES)(
                "nic0", no_opts(), timeout=0.5)
        except dbus.DBusException as e:
            code = 0 if e.get_dbus_name() == "org.freedesktop.DBus.Error.NoReply" else 3
        except BaseException:  # noqa: BLE001
            code = 4
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    eq(os.waitstatus_to_exitcode(status), 0, "the queued Unregister should time out in the client (exit code)")
    end = time.monotonic() + 10
    while not pump() and time.monotonic() < end:
        time.sleep(0.005)
    check(result.get("ok"), "BindVfio with a slow unbind: %r" % result)
    set_faults("")
    call(DEVICE, "Restore", no_opts(), path=path)  # queued after the dropped Unregister: it has been dealt with
    eq(call(DEVICES, "ListDevices"), [path], "devices after an Unregister whose caller left")
    with open(os.path.join(TEST_DIR, "daemon.log")) as f:
        check("caller has left the bus" in f.read(), "the daemon should log the dropped call")


def test_stuck_write_elsewhere():
    # While one device's kernel write hangs, a mutation of another device is answered at once.
    path, result, pump = start_hung_bind()
    t0 = time.monotonic()
    bare = register(BARE, "bare0")
    call(DEVICE, "BindVfio", no_opts(), path=bare)  # a kernel write of its own
    took = time.monotonic() - t0
    check(took < 1.5, "Register and BindVfio of another device took %.2f s behind a hung unbind" % took)
    check(not result, "the hung bind is still in the kernel: %r" % result)
    eq(prop(bare, DEVICE, "Driver"), "vfio-pci", "the other device's bind")
    end = time.monotonic() + 10
    while not pump() and time.monotonic() < end:
        time.sleep(0.005)
    check(result.get("ok"), "BindVfio with a slow unbind: %r" % result)
    set_faults("")
    eq(prop(path, DEVICE, "Driver"), "vfio-pci", "the slow bind, finished")


def test_idle_exit_busy():
    # run with HOSTDEV_FAKE_EXTRA="--idle-exit 1 --write-timeout 0.5" (see meson.build): while a device is busy
    # (a kernel write timed out and may still run) the daemon stays, since a new one would forget the busy mark.
    delay_s = 5.0
    path = register(NIC, "nic0")
    pid = daemon_pid()
    unbind_line = "sys/bus/pci/drivers/igb/unbind\t" + NIC
    set_faults("delay igb/unbind %d\n" % (delay_s * 1000))
    t0 = time.monotonic()
    expect_error("Timeout", call, DEVICE, "BindVfio", no_opts(), path=path)
    time.sleep(2.5)  # well past the idle time, no calls to the daemon
    check(unbind_line not in kernel_log(), "the delayed unbind returned too early for this test")
    check(name_has_owner(), "the daemon idle-exited %.2f s after a Timeout left a device busy"
          % (time.monotonic() - t0))
    eq(daemon_pid(), pid, "the daemon's pid while a device is busy")
    wait_until(lambda: unbind_line in kernel_log(), "the delayed unbind to return", seconds=delay_s + 5)
    set_faults("")
    call(DEVICE, "Restore", no_opts(), path=path)
    eq(daemon_pid(), pid, "Restore served by the first daemon")
    t1 = time.monotonic()
    wait_until(lambda: not name_has_owner(), "the idle exit once Restore cleared busy", seconds=5)
    waited = time.monotonic() - t1
    check(waited >= 0.5, "exited %.2f s after Restore, before its idle time" % waited)
    print("stayed %.2f s with a busy device; idle exit %.2f s after Restore" % (t1 - t0, waited))


# ------------------------------------------------------------------------------- error names from the kernel side

def set_faults(text):
    """The fake kernel's faults file (hostdevd-fake reads it again before every write): 'delay SUFFIX MS' and
    'fail SUFFIX ERRNO' lines; replaced atomically so the daemon never reads half of it."""
    path = os.path.join(TEST_DIR, "faults")
    with open(path + ".new", "w") as f:
        f.write(text)
    os.rename(path + ".new", path)


def kernel_log():
    try:
        with open(os.path.join(TEST_DIR, "kernel.log")) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def store_files():
    """Every file of the store (state dir) with its content."""
    out = {}
    base = os.path.join(TEST_DIR, "state")
    for d, _, files in os.walk(base):
        for name in files:
            p = os.path.join(d, name)
            with open(p, "rb") as f:
                out[os.path.relpath(p, base)] = f.read()
    return out


def fixture_root(device_path):
    """The fixture tree's root, from a registered device's SysfsPath (<root>/sys/bus/pci/devices/<addr>)."""
    sysfs_path = prop(device_path, DEVICE, "SysfsPath")
    return sysfs_path[:sysfs_path.index("/sys/bus/pci/devices/")]


def uevent(root, action, devpath, subsystem="pci", **keys):
    """Plays the kernel: sends one uevent in the kernel's format to the fake daemon's uevent socket."""
    fields = ["%s@%s" % (action, devpath), "ACTION=" + action, "DEVPATH=" + devpath, "SUBSYSTEM=" + subsystem]
    fields += ["%s=%s" % (k, v) for k, v in keys.items()]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(b"".join(f.encode() + b"\0" for f in fields), os.path.join(root, "uevent.sock"))


def pci_uevent(root, action, address, **keys):
    uevent(root, action, "/devices/pci0000:00/" + address, **keys)


def sysfs_state(root, address):
    """What the kernel says about one function: its driver and driver_override."""
    dev = os.path.join(root, "sys/bus/pci/devices", address)
    drv = os.path.join(dev, "driver")
    with open(os.path.join(dev, "driver_override")) as f:
        override = f.read().strip()
    return {"driver": os.path.basename(os.readlink(drv)) if os.path.islink(drv) else None, "override": override}


def world(root=None, addresses=(), mdevs=False):
    """Everything a failed call must leave as it was: the bus's view, the store's files, the fixture's sysfs."""
    w = {
        "available": call(DEVICES, "ListAvailable", sv(all=True)),
        "managed": call(OM, "GetManagedObjects"),
        "resources": call(DEVICES, "GetGpuResources"),
        "store": store_files(),
    }
    if root:
        w["sysfs"] = {a: sysfs_state(root, a) for a in addresses}
        if mdevs:
            w["mdevs"] = sorted(os.listdir(os.path.join(root, "sys/bus/mdev/devices")))
    return w


def same_world(before, after, what):
    for key in before:
        eq(after[key], before[key], "%s after %s" % (key, what))


def test_error_timeout():
    # run with HOSTDEV_FAKE_EXTRA="--write-timeout 1.5" (see meson.build); the NIC's unbind from igb hangs 6 s
    delay_s, timeout_s = 6.0, 1.5
    path = register(NIC, "nic0")
    root = fixture_root(path)
    unbind_line = "sys/bus/pci/drivers/igb/unbind\t" + NIC
    set_faults("delay igb/unbind %d\n" % (delay_s * 1000))
    store_before = store_files()

    result = {}
    t0 = time.monotonic()
    bus().get_object(BUS_NAME, path).get_dbus_method("BindVfio", DEVICE)(
        no_opts(), timeout=30,
        reply_handler=lambda *a: result.update(ok=time.monotonic() - t0),
        error_handler=lambda e: result.update(error=e, at=time.monotonic() - t0))

    def pump():
        while GLib.MainContext.default().iteration(False):
            pass
        return result

    # The kernel has the override and is stuck in the unbind: the bus must still answer, at once.
    wait_until(lambda: [pump(), sysfs_state(root, NIC)["override"] == "vfio-pci"][1],
               "BindVfio to reach the unbind write")
    check(unbind_line not in kernel_log(), "the delayed unbind already returned")
    t1 = time.monotonic()
    call("org.freedesktop.DBus.Peer", "Ping")
    eq(call(DEVICES, "ListDevices"), [path], "ListDevices during the hung write")
    eq(prop(path, DEVICE, "Name"), "nic0", "Name during the hung write")
    answered = time.monotonic() - t1
    check(answered < 0.5, "reads took %.2f s while a kernel write hung" % answered)
    check(not pump(), "BindVfio answered before its deadline: %r" % result)
    end = time.monotonic() + 10
    while not pump() and time.monotonic() < end:
        time.sleep(0.005)
    check("error" in result, "BindVfio with a hung unbind: expected Error.Timeout, got %r" % result)
    e = result["error"]
    eq(e.get_dbus_name(), ERR + "Timeout", "BindVfio error")
    check("1500 ms" in e.get_dbus_message() and "igb/unbind" in e.get_dbus_message(),
          "the Timeout message should name the write and the deadline: %s" % e.get_dbus_message())
    check(timeout_s - 0.1 <= result["at"] < delay_s - 1.5,
          "Timeout after %.2f s: should come after the %.1f s deadline, well before the %.1f s write" % (
              result["at"], timeout_s, delay_s))
    check(unbind_line not in kernel_log(), "the unbind should still be in flight when Timeout is answered")
    eq(store_files(), store_before, "the store after Timeout")

    # Busy until Restore: every change to the device is refused, naming the reason.
    msg = expect_error("InUse", call, DEVICE, "BindVfio", no_opts(), path=path)
    check("busy" in msg and "restore" in msg, "InUse should say busy and how to clear it: %s" % msg)
    msg = expect_error("InUse", call, DEVICE, "UnbindVfio", no_opts(), path=path)
    check("busy" in msg, "UnbindVfio of a busy device: %s" % msg)
    expect_error("InUse", call, INSTANCES, "Create", "vm1", sv(devices=dbus.Array(["nic0"], signature="s")))
    eq(call(INSTANCES, "ListInstances"), [], "no instance with a busy device")
    register(BARE, "bare0")  # the worker is free again while the kernel still works on the unbind
    check(unbind_line not in kernel_log(), "the unbind returned earlier than its delay")

    wait_until(lambda: unbind_line in kernel_log(), "the delayed unbind to return", seconds=delay_s + 5)
    call(DEVICE, "Restore", no_opts(), path=path)
    eq(prop(path, DEVICE, "Driver"), "igb", "Driver after Restore")
    eq(sysfs_state(root, NIC), {"driver": "igb", "override": "(null)"}, "sysfs after Restore")
    set_faults("")
    call(DEVICE, "BindVfio", no_opts(), path=path)
    eq(prop(path, DEVICE, "Driver"), "vfio-pci", "Driver after a bind once Restore cleared busy")
    call(DEVICE, "Restore", no_opts(), path=path)
    eq(prop(path, DEVICE, "Driver"), "igb", "Driver after the last Restore")
    print("Timeout after %.2f s (deadline %.1f s, write %.1f s); reads answered in %.0f ms meanwhile" % (
        result["at"], timeout_s, delay_s, answered * 1000))


def test_error_kernel_error():
    # run with HOSTDEV_FAKE_EXTRA="--fail-writes igb/unbind=EBUSY": the NIC's driver refuses to let go
    path = register(NIC, "nic0")
    root = fixture_root(path)
    before = world(root, [NIC, GPU, AUDIO])
    msg = expect_error("KernelError", call, DEVICE, "BindVfio", no_opts(), path=path)
    check("igb/unbind" in msg and "busy" in msg.lower(), "KernelError should name the write and errno: %s" % msg)
    same_world(before, world(root, [NIC, GPU, AUDIO]), "a failed BindVfio")
    msg = expect_error("KernelError", call, INSTANCES, "Create", "vm1",
                       sv(devices=dbus.Array(["nic0"], signature="s")))
    check("igb/unbind" in msg, "Create's KernelError should name the write: %s" % msg)
    same_world(before, world(root, [NIC, GPU, AUDIO]), "a failed Create")
    eq(call(INSTANCES, "ListInstances"), [], "instances after a failed Create")
    # The same fault from the faults file, lifted again: the device was fine all along.
    set_faults("fail igb/unbind 0\n")
    call(DEVICE, "BindVfio", no_opts(), path=path)
    eq(sysfs_state(root, NIC), {"driver": "vfio-pci", "override": "vfio-pci"}, "sysfs after the fault is lifted")
    set_faults("fail vfio-pci/unbind EIO\n")
    msg = expect_error("KernelError", call, DEVICE, "Restore", no_opts(), path=path)
    check("vfio-pci/unbind" in msg and "Input/output error" in msg, "Restore's KernelError: %s" % msg)
    set_faults("")
    call(DEVICE, "Restore", no_opts(), path=path)
    eq(sysfs_state(root, NIC), {"driver": "igb", "override": "(null)"}, "sysfs after Restore")


def test_error_no_capacity():
    # fixture vgpu-one-slot: one VF, one vGPU of either profile
    res = call(DEVICES, "GetGpuResources")
    eq((res["total_slots"], res["used_slots"]), (1, 0), "slots of the one-slot fixture")
    pf = register("0000:a2:00.0", "pf0")  # only to find the fixture's root
    root = fixture_root(pf)
    inst = call(INSTANCES, "Create", "vm1", sv(gpu_profile="NVIDIA L40S-4Q"))
    eq(call(DEVICES, "GetGpuResources")["used_slots"], 1, "used_slots with the slot taken")
    before = world(root, mdevs=True)
    eq(len(before["mdevs"]), 1, "mdevs with the slot taken")
    for profile in ("NVIDIA L40S-4Q", "NVIDIA L40S-1Q", "nvidia-1155"):
        msg = expect_error("NoCapacity", call, INSTANCES, "Create", "vm2", sv(gpu_profile=profile))
        check(profile in msg, "NoCapacity should name the profile %s: %s" % (profile, msg))
        same_world(before, world(root, mdevs=True), "NoCapacity for " + profile)
    expect_error("ProfileUnavailable", call, INSTANCES, "Create", "vm2", sv(gpu_profile="NVIDIA L40S-2Q"))
    same_world(before, world(root, mdevs=True), "ProfileUnavailable")
    call(INSTANCE, "Delete", no_opts(), path=inst)
    inst2 = call(INSTANCES, "Create", "vm2", sv(gpu_profile="NVIDIA L40S-1Q"))
    eq(prop(inst2, INSTANCE, "GpuProfile"), "NVIDIA L40S-1Q", "GpuProfile once the slot is free again")


def test_error_vfio_unavailable():
    # fixture no-vfio: the passthrough host with vfio-pci not loaded
    p = props(ROOT, DEVICES)
    eq(p["VfioAvailable"], False, "VfioAvailable")
    eq(call(DEVICES, "CheckHost")["vfio_pci_available"], False, "CheckHost vfio_pci_available")
    nic = register(NIC, "nic0")
    register(GPU, "gpu0")
    register(AUDIO, "gpu0-audio")
    root = fixture_root(nic)
    before = world(root, [NIC, GPU, AUDIO])
    msg = expect_error("VfioUnavailable", call, DEVICE, "BindVfio", no_opts(), path=nic)
    check("modprobe vfio-pci" in msg, "VfioUnavailable should say how to fix it: %s" % msg)
    same_world(before, world(root, [NIC, GPU, AUDIO]), "BindVfio without vfio-pci")
    expect_error("VfioUnavailable", call, INSTANCES, "Create", "vm1",
                 sv(devices=dbus.Array(["gpu0", "gpu0-audio"], signature="s")))
    same_world(before, world(root, [NIC, GPU, AUDIO]), "Create without vfio-pci")
    eq(call(INSTANCES, "ListInstances"), [], "instances after a refused Create")
    expect_error("NotBound", call, DEVICE, "UnbindVfio", no_opts(), path=nic)


def test_daemon_usage():
    """Not on the bus: hostdevd's option parsing (HOSTDEV_DAEMON = the real hostdevd)."""
    import subprocess
    daemon = os.environ["HOSTDEV_DAEMON"]
    out = subprocess.run([daemon, "--help"], capture_output=True, text=True)
    eq(out.returncode, 0, "--help exit status")
    check("--write-timeout SECONDS" in out.stdout and "default 10" in out.stdout,
          "--help should document --write-timeout: %s" % out.stdout)
    for good in ("10", "0.2", ".5", "600", "0.001"):
        r = subprocess.run([daemon, "--write-timeout", good, "--version"], capture_output=True, text=True)
        eq((r.returncode, r.stderr), (0, ""), "--write-timeout %s" % good)
    for bad in ("0", "-1", "0.0001", "600.5", "601", "abc", "1e3", "1.2.3", "", "10s"):
        r = subprocess.run([daemon, "--write-timeout", bad, "--version"], capture_output=True, text=True)
        eq(r.returncode, 2, "exit status for --write-timeout %r" % bad)
        check("--write-timeout" in r.stderr and "0.001 to 600" in r.stderr,
              "the usage error for %r should say what is allowed: %s" % (bad, r.stderr))
    r = subprocess.run([daemon, "--write-timeout"], capture_output=True, text=True)
    eq(r.returncode, 2, "exit status for --write-timeout without a value")
    # The other options: usage errors are 2 and name what is wrong; a root that is no directory stops start-up.
    for args, says in ((["--bogus"], "--bogus"), (["--idle-exit", "-3"], "--idle-exit"),
                       (["--idle-exit", "abc"], "--idle-exit"), (["--bus", ""], "--bus"),
                       (["--sysfs-root"], "--sysfs-root"), (["--state-dir"], "--state-dir")):
        r = subprocess.run([daemon] + args, capture_output=True, text=True)
        eq(r.returncode, 2, "exit status for %r" % args)
        check(says in r.stderr, "the usage error for %r should name %s: %s" % (args, says, r.stderr))
    r = subprocess.run([daemon, "--sysfs-root", "/nonexistent/hostdev-root", "--bus", "unix:path=/nonexistent/bus"],
                       capture_output=True, text=True)
    eq(r.returncode, 1, "exit status for a missing sysfs root")
    check("/nonexistent/hostdev-root" in r.stderr, "the error should name the root: %s" % r.stderr)


# ------------------------------------------------------------------------------------ vendor-specific VFIO vGPUs

PF0, PF1 = "0000:a2:00.0", "0000:c1:00.0"


def vf_of(pf, index):
    bus_dev, fn = pf.rsplit(".", 1)
    n = int(fn) + 4 + index  # as the fixture places them: pf + 4 + index functions
    dom_bus, dev = bus_dev.rsplit(":", 1)
    d = int(dev, 16) + n // 8
    return "%s:%02x.%d" % (dom_bus, d, n % 8)


def vendor_file(root, vf, name):
    with open(os.path.join(root, "sys/bus/pci/devices", vf, "nvidia", name)) as f:
        return f.read()


def test_vendor_vgpu():
    rec = Recorder()
    report = call(DEVICES, "CheckHost")
    eq(report["gpu_mode"], "vgpu", "gpu_mode")
    eq(report["gpu_framework"], "vendor-vfio", "gpu_framework")
    eq(report["vendor_vf_count"], 16, "vendor_vf_count")
    res = call(DEVICES, "GetGpuResources")
    eq(res["frameworks"], ["vendor-vfio"], "frameworks")
    eq(res["total_slots"], 16, "total_slots")
    q4 = [p for p in res["profiles"] if p["name"] == "NVIDIA L40S-4Q"]
    eq(len(q4), 1, "the L40S-4Q profile")
    eq((q4[0]["type"], q4[0]["framebuffer_mb"], q4[0]["available"], q4[0]["framework"]),
       ("1150", 4096, 16, "vendor-vfio"), "L40S-4Q")
    # The PF registered only to learn where the fixture tree is (nothing binds it).
    root = fixture_root(register(PF0, "gpu0"))
    a = call(INSTANCES, "Create", "vm1", sv(gpu_profile="L40S-4Q"))
    b = call(INSTANCES, "Create", "vm2", sv(gpu_profile="1150"))
    pa, pb = props(a, INSTANCE), props(b, INSTANCE)
    eq(pa["VgpuVf"], vf_of(PF0, 0), "the first vGPU on the first GPU")
    eq(pb["VgpuVf"], vf_of(PF1, 0), "the second vGPU on the other, least-loaded GPU")
    eq(pb["GpuProfile"], "NVIDIA L40S-4Q", "GpuProfile by type id")
    eq(pb["MdevUuid"], "", "no mdev")
    check(len(pb["Uuid"]) == 36, "Uuid %r" % pb["Uuid"])
    eq(pb["DevicePaths"], ["/sys/bus/pci/devices/%s/" % pb["VgpuVf"]], "DevicePaths")
    eq(pb["QemuArgs"], ["-device", "vfio-pci,host=" + pb["VgpuVf"], "-uuid", pb["Uuid"]], "QemuArgs")
    eq(vendor_file(root, pb["VgpuVf"], "current_vgpu_type"), "1150\n", "the type written")
    s = rec.wait_for(DEVICES, "MdevCreated", pred=lambda s: s[3][2] == pb["VgpuVf"])
    eq(s[3][:2], [pb["Uuid"], "NVIDIA L40S-4Q"], "MdevCreated for a vendor vGPU")
    res = call(DEVICES, "GetGpuResources")
    eq(res["used_slots"], 2, "used_slots")
    eq([g["framebuffer_used_mb"] for g in res["gpus"]], [4096, 4096], "framebuffer per GPU")
    for vf in (pa["VgpuVf"], pb["VgpuVf"]):
        eq(sysfs_state(root, vf), {"driver": "nvidia", "override": "(null)"}, "the VF stays on its driver")
    call(INSTANCES, "Delete", "vm2", no_opts())
    eq(vendor_file(root, pb["VgpuVf"], "current_vgpu_type"), "0\n", "0 written back on Delete")
    s = rec.wait_for(DEVICES, "MdevDestroyed", pred=lambda s: s[3][0] == pb["Uuid"])
    expect_error("InvalidArgument", call, DEVICES, "Register", "vf", vf_of(PF0, 3), no_opts())
    expect_error("ProfileUnavailable", call, INSTANCES, "Create", "vm3", sv(gpu_profile="L40S-5Q"))


def test_vendor_vgpu_quarantine():
    rec = Recorder()
    vf = vf_of(PF0, 0)
    a = call(INSTANCES, "Create", "vm1", sv(gpu_profile="L40S-1Q"))
    eq(prop(a, INSTANCE, "VgpuVf"), vf, "placed on the first VF")
    eq(call(INSTANCES, "ReportGuestInit", "vm1", False, no_opts()), False, "one failure")
    call(INSTANCES, "Delete", "vm1", no_opts())
    call(INSTANCES, "Create", "vm2", sv(gpu_profile="L40S-1Q"))
    eq(call(INSTANCES, "ReportGuestInit", "vm2", False, no_opts()), True, "two instances failed: quarantined")
    s = rec.wait_for(DEVICES, "VfQuarantined")
    eq(s[3][0], vf, "VfQuarantined vf")
    eq(len(s[3][1]), 2, "VfQuarantined names both instances")
    call(INSTANCES, "Delete", "vm2", no_opts())
    c = call(INSTANCES, "Create", "vm3", sv(gpu_profile="L40S-1Q"))
    check(prop(c, INSTANCE, "VgpuVf") != vf, "placement skips the quarantined VF")
    eq(call(DEVICES, "GetGpuResources")["quarantined_slots"], 1, "quarantined_slots")
    call(DEVICES, "Unquarantine", vf, no_opts())
    expect_error("NotFound", call, DEVICES, "Unquarantine", vf, no_opts())
    expect_error("InvalidPciAddress", call, DEVICES, "Unquarantine", "nonsense", no_opts())
    expect_error("NotFound", call, INSTANCES, "ReportGuestInit", "nope", True, no_opts())
    eq(call(DEVICES, "GetGpuResources")["quarantined_slots"], 0, "quarantine lifted")


def test_authz_configure_sriov():
    counts = iter([4, 2, 6])

    def attempt(n, user):
        return call(DEVICES, "ConfigureSriov", PF1, dbus.UInt32(n), no_opts(), user=user)

    def verify(n, ok):
        if ok:
            eq(call(DEVICES, "ListAvailable", sv(all=True)) is not None, True, "reads still work")

    authz("ConfigureSriov", lambda: next(counts), attempt, verify)
    r = call(DEVICES, "ConfigureSriov", PF1, dbus.UInt32(3), no_opts())
    eq((r["pf"], r["num_vfs"], len(r["vfs"]), r["drivers_autoprobe"]), (PF1, 3, 3, True), "ConfigureSriov result")
    expect_error("InvalidArgument", call, DEVICES, "ConfigureSriov", PF1, dbus.UInt32(17), no_opts())
    expect_error("InvalidPciAddress", call, DEVICES, "ConfigureSriov", "x", dbus.UInt32(1), no_opts())
    expect_error("DeviceNotFound", call, DEVICES, "ConfigureSriov", "0000:ee:00.0", dbus.UInt32(1), no_opts())
    call(INSTANCES, "Create", "vm1", sv(gpu_profile="L40S-1Q"))
    expect_error("InUse", call, DEVICES, "ConfigureSriov", PF0, dbus.UInt32(2), no_opts())


def test_authz_unquarantine():
    vf = vf_of(PF0, 0)
    n = iter(range(20))

    def setup():
        # two failed guests on the same VF, then the instances go: the VF stays quarantined
        for _ in range(2):
            name = "q%d" % next(n)
            call(INSTANCES, "Create", name, sv(gpu_profile="L40S-1Q"))
            call(INSTANCES, "ReportGuestInit", name, False, no_opts())
            call(INSTANCES, "Delete", name, no_opts())
        return vf

    def attempt(v, user):
        return call(DEVICES, "Unquarantine", v, no_opts(), user=user)

    def verify(v, ok):
        eq(call(DEVICES, "GetGpuResources")["quarantined_slots"], 0 if ok else 1, "quarantined_slots")

    authz("Unquarantine", setup, attempt, verify)


def test_authz_report_guest_init():
    n = iter(range(10))

    def setup():
        # root-owned: hdtest would need manage-all-instances
        return call(INSTANCES, "Create", "vm%d" % next(n), sv(gpu_profile="L40S-1Q"))

    def attempt(path, user):
        return call(INSTANCES, "ReportGuestInit", prop(path, INSTANCE, "Name"), False, no_opts(), user=user)

    authz("ReportGuestInit", setup, attempt)


# --------------------------------------------------------------------------------------------------- reboot

def reboot(boot_id):
    """The host reboots: the daemon dies, the kernel forgets every write (the kernel log), a new boot id."""
    if name_has_owner():
        kill_daemon()
    log = os.path.join(TEST_DIR, "kernel.log")
    if os.path.exists(log):
        os.remove(log)
    with open(os.path.join(TEST_DIR, "boot_id"), "w") as f:
        f.write(boot_id + "\n")


BOOT_A = "11111111-2222-3333-4444-555555555555"
BOOT_B = "66666666-7777-8888-9999-000000000000"


def test_restore_after_reboot():
    reboot(BOOT_A)
    call(DEVICES, "CheckHost")  # the first start in this boot records its id
    vm1 = call(INSTANCES, "Create", "vm1", sv(gpu_profile="NVIDIA L40S-4Q"))
    uuid = prop(vm1, INSTANCE, "MdevUuid")
    eq(prop(vm1, INSTANCE, "State"), "active", "State")
    eq(prop(vm1, INSTANCE, "Persistent"), True, "Persistent by default")
    tmp = call(INSTANCES, "Create", "tmp", sv(gpu_profile="NVIDIA L40S-1Q", persistent=False))
    eq(prop(tmp, INSTANCE, "Persistent"), False, "persistent=false")
    eq(call(DEVICES, "GetGpuResources")["used_slots"], 2, "two vGPUs")
    reboot(BOOT_B)
    rec = Recorder()
    # The first call activates hostdevd, which restores before it takes its name.
    paths = call(INSTANCES, "ListInstances")
    eq(paths, [vm1], "the persistent instance is there, the other dropped")
    eq(prop(vm1, INSTANCE, "State"), "active", "State after the reboot")
    eq(prop(vm1, INSTANCE, "MdevUuid"), uuid, "the same UUID")
    eq(call(DEVICES, "GetGpuResources")["used_slots"], 1, "the mdev exists again, the dropped one is gone")
    s = rec.wait_for(DEVICES, "MdevCreated", pred=lambda s: s[3][0] == uuid)
    eq(s[3][3], vm1, "MdevCreated names the instance")
    s = rec.wait_for(INSTANCES, "InstanceStateChanged", pred=lambda s: s[3][0] == vm1 and s[3][1] == "active")
    # A restart within the same boot restores nothing and changes nothing.
    kill_daemon()
    eq(prop(vm1, INSTANCE, "State"), "active", "State after a plain restart")
    eq(call(DEVICES, "GetGpuResources")["used_slots"], 1, "still one vGPU")
    expect_error("InvalidArgument", call, INSTANCES, "Create", "vm2", sv(gpu_profile="NVIDIA L40S-1Q",
                                                                           persistent="yes"))


def test_authz_instance_restore():
    n = iter(range(10))

    def setup():
        return call(INSTANCES, "Create", "vm%d" % next(n), sv(gpu_profile="NVIDIA L40S-1Q"))

    def attempt(path, user):
        return call(INSTANCE, "Restore", no_opts(), path=path, user=user)

    def verify(path, ok):
        eq(prop(path, INSTANCE, "State"), "active", "State")

    authz("Instance.Restore", setup, attempt, verify)


# --------------------------------------------------------------------------------------------------- leases

def leasing_child(name, profile):
    """A process with its own bus connection that creates a leased instance and then waits to be killed, like a
    VMM launcher. Returns (pid, read end of a pipe that gets the instance path)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            conn = dbus.bus.BusConnection(os.environ["DBUS_SYSTEM_BUS_ADDRESS"])
            inst = conn.get_object(BUS_NAME, ROOT, introspect=False).get_dbus_method("Create", INSTANCES)(
                name, sv(gpu_profile=profile, lease=True), timeout=30)
            os.write(w, (str(inst) + "\n").encode())
            os.close(w)
            while True:
                time.sleep(1)
        except BaseException as e:  # noqa: BLE001
            os.write(w, ("ERROR %r\n" % e).encode())
        os._exit(1)
    os.close(w)
    with os.fdopen(r) as f:
        line = f.readline().strip()
    check(line.startswith("/"), "the child's Create: " + line)
    return pid, line


def test_lease():
    pid, inst = leasing_child("leased1", "NVIDIA L40S-1Q")
    owner = prop(inst, INSTANCE, "LeaseOwner")
    check(owner.startswith(":"), "LeaseOwner %r" % owner)
    eq(prop(inst, INSTANCE, "Persistent"), False, "a lease is never persistent")
    eq(call(DEVICES, "GetGpuResources")["used_slots"], 1, "the leased vGPU")
    expect_error("InvalidArgument", call, INSTANCES, "Create", "x1", sv(gpu_profile="NVIDIA L40S-1Q", lease=True,
                                                                         persistent=True))
    # hostdevd restarts while the owner lives: the lease stays.
    kill_daemon()
    eq(call(INSTANCES, "ListInstances"), [inst], "the lease survives a restart of hostdevd")
    # The owner dies: the instance goes, and its vGPU with it.
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    wait_until(lambda: call(INSTANCES, "ListInstances") == [], "the leased instance to go", seconds=5)
    print("lease ended %.0f ms after its owner died" % ((time.monotonic() - t0) * 1000))
    eq(call(DEVICES, "GetGpuResources")["used_slots"], 0, "the vGPU is gone")
    # An owner that dies while hostdevd is down: the next start ends the lease.
    pid, inst = leasing_child("leased2", "NVIDIA L40S-1Q")
    kill_daemon()
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    call(DEVICES, "CheckHost")  # activates hostdevd
    wait_until(lambda: call(INSTANCES, "ListInstances") == [], "the orphaned lease to end at start", seconds=5)


def test_lease_owner_gone_mid_create():
    # The owner dies while its leased Create is still in the kernel (a slow mdev create): once the Create
    # finishes, the lease ends at once, not at hostdevd's next start.
    set_faults("delay /create 1500\n")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        conn = dbus.bus.BusConnection(os.environ["DBUS_SYSTEM_BUS_ADDRESS"])
        conn.get_object(BUS_NAME, ROOT, introspect=False).get_dbus_method("Create", INSTANCES)(
            "leased1", sv(gpu_profile="NVIDIA L40S-1Q", lease=True), timeout=30,
            reply_handler=lambda *a: None, error_handler=lambda *a: None)
        conn.flush()
        os.write(w, b"sent\n")
        time.sleep(30)
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        eq(f.readline().strip(), "sent", "the child's Create")
    time.sleep(0.5)  # the Create is in the delayed write now
    eq(call(INSTANCES, "ListInstances"), [], "instances while the Create is in the kernel (else this test proves "
       "nothing)")
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    t0 = time.monotonic()
    def ended_as_created():
        with open(os.path.join(TEST_DIR, "daemon.log")) as f:
            return "left while it was being created" in f.read()
    wait_until(ended_as_created, "the Create to finish and its lease to be ended (daemon log)", seconds=5)
    set_faults("")
    wait_until(lambda: call(INSTANCES, "ListInstances") == [], "the lease of a gone owner to end", seconds=5)
    print("lease ended %.0f ms after the owner's death" % ((time.monotonic() - t0) * 1000))
    eq(call(DEVICES, "GetGpuResources")["used_slots"], 0, "the vGPU is gone")


def acl_users(path):
    """The uids with a user: entry in a file's access ACL (the kernel's xattr form)."""
    import struct
    try:
        raw = os.getxattr(path, "system.posix_acl_access")
    except OSError:
        return []
    return [uid for tag, _perm, uid in struct.iter_unpack("<HHI", raw[4:]) if tag == 0x02]


def test_open_vfio():
    root = fixture_root(register("0000:c1:00.0", "gpu1"))
    inst = call(INSTANCES, "Create", "vm1", sv(gpu_profile="NVIDIA L40S-1Q"), user="hdadmin")
    fds, layout = call(INSTANCE, "OpenVfio", no_opts(), path=inst, user="hdadmin")
    eq(fds, [], "no fd on a kernel without iommufd")
    eq(layout["mode"], "acl", "mode")
    eq(layout["uid"], 4712, "the caller's uid")
    check(layout["nodes"][0] == "/dev/vfio/vfio" and len(layout["nodes"]) == 2, "nodes %r" % layout["nodes"])
    check(layout["qemu_args"][0] == "-device", "qemu_args %r" % layout["qemu_args"])
    for node in layout["nodes"]:
        eq(acl_users(root + node), [4712], "the ACL of " + node)
    # Another user: not authorized, and no ACL for them.
    expect_error("NotAuthorized", call, INSTANCE, "OpenVfio", no_opts(), path=inst, user="hdtest")
    for node in layout["nodes"]:
        eq(acl_users(root + node), [4712], "no entry for hdtest on " + node)
    expect_error("InvalidArgument", call, INSTANCE, "OpenVfio", sv(nonsense=True), path=inst, user="hdadmin")
    fds_before = len(os.listdir("/proc/%d/fd" % daemon_pid()))
    call(INSTANCES, "Delete", "vm1", no_opts(), user="hdadmin")
    eq(acl_users(root + "/dev/vfio/vfio"), [], "revoked with the instance")
    try:
        call(INSTANCE, "OpenVfio", no_opts(), path=inst, user="hdadmin")
        raise Failure("OpenVfio on a deleted instance answered")
    except dbus.DBusException as e:
        eq(e.get_dbus_name(), "org.freedesktop.DBus.Error.UnknownObject", "OpenVfio on a deleted instance")
    eq(len(os.listdir("/proc/%d/fd" % daemon_pid())), fds_before, "no descriptor leaked in the daemon")


def test_open_vfio_cdev():
    # run with hostdevd-fake --vfio-cdev: /dev/iommu and a cdev per VFIO device (real nodes of /dev/null etc.).
    root = fixture_root(register("0000:c1:00.0", "gpu1"))
    inst = call(INSTANCES, "Create", "vm1", sv(devices=["gpu1"], gpu_profile="NVIDIA L40S-1Q"), user="hdadmin")
    uuid = prop(inst, INSTANCE, "MdevUuid")
    pid = daemon_pid()
    fds_before = len(os.listdir("/proc/%d/fd" % pid))
    fds, layout = call(INSTANCE, "OpenVfio", no_opts(), path=inst, user="hdadmin")
    eq(layout["mode"], "cdev", "mode on a kernel with VFIO cdevs")
    eq(layout["fds_of"], ["iommufd", "0000:c1:00.0", uuid], "what each fd is")
    eq(layout["fd_base"], 3, "fd_base")
    eq(len(fds), 3, "one iommufd and two cdevs")
    for fd, node in zip(fds, layout["nodes"]):
        st = os.stat(root + node)
        eq(fd, ("fd", os.major(st.st_rdev), os.minor(st.st_rdev)), "the fd for " + node)
    eq(layout["nodes"][0], "/dev/iommu", "the first fd")
    eq(layout["qemu_args"], ["-object", "iommufd,id=iommufd0,fd=3", "-device", "vfio-pci,iommufd=iommufd0,fd=4",
                              "-device", "vfio-pci,iommufd=iommufd0,fd=5,sysfsdev=/sys/bus/mdev/devices/" + uuid],
       "qemu_args (the mdev's sysfsdev tells QEMU it is one)")
    for node in layout["nodes"] + ["/dev/vfio/vfio"]:
        eq(acl_users(root + node), [], "no ACL in cdev mode on " + node)
    # Another user: no fd.
    expect_error("NotAuthorized", call, INSTANCE, "OpenVfio", no_opts(), path=inst, user="hdtest")
    # Bad options, held devices: clear errors and no descriptor left in the daemon.
    expect_error("InvalidArgument", call, INSTANCE, "OpenVfio", sv(mode="fds"), path=inst, user="hdadmin")
    expect_error("InvalidArgument", call, INSTANCE, "OpenVfio", sv(mode=True), path=inst, user="hdadmin")
    holder = os.path.join(root, "proc/4242")
    os.makedirs(holder + "/fd")
    with open(holder + "/comm", "w") as f:
        f.write("qemu-system-x86\n")
    os.symlink(layout["nodes"][2], holder + "/fd/3")
    msg = expect_error("InUse", call, INSTANCE, "OpenVfio", no_opts(), path=inst, user="hdadmin")
    check("4242" in msg and layout["nodes"][2] in msg, "the holder is named: " + msg)
    os.unlink(holder + "/fd/3")
    fds, layout = call(INSTANCE, "OpenVfio", sv(mode="acl"), path=inst, user="hdadmin")
    eq((fds, layout["mode"]), ([], "acl"), "mode acl on request")
    eq(len(os.listdir("/proc/%d/fd" % pid)), fds_before, "no descriptor leaked in the daemon")
    call(INSTANCES, "Delete", "vm1", no_opts(), user="hdadmin")
    eq(acl_users(root + "/dev/vfio/vfio"), [], "revoked with the instance")


def test_raise_memlock():
    # Only the lease's own connection may raise its VMM's limit (the rest is in the core's tests and cli-bus).
    pid, inst = leasing_child("leased1", "NVIDIA L40S-1Q")
    try:
        pidfd = os.pidfd_open(pid)
        msg = expect_error("NotAuthorized", call, INSTANCE, "RaiseMemlock", dbus.types.UnixFd(pidfd),
                           dbus.UInt64(4 << 20), no_opts(), path=inst)
        check("holds the lease" in msg, "the refusal says why: " + msg)
        expect_error("InvalidArgument", call, INSTANCE, "RaiseMemlock", dbus.types.UnixFd(pidfd),
                     dbus.UInt64(4 << 20), sv(nonsense=True), path=inst)
        os.close(pidfd)
        plain_inst = call(INSTANCES, "Create", "plain1", sv(gpu_profile="NVIDIA L40S-1Q"))
        pidfd = os.pidfd_open(os.getpid())
        msg = expect_error("InvalidArgument", call, INSTANCE, "RaiseMemlock", dbus.types.UnixFd(pidfd),
                           dbus.UInt64(4 << 20), no_opts(), path=plain_inst)
        check("not leased" in msg, "a plain instance: " + msg)
        os.close(pidfd)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


TESTS = {name[5:].replace("_", "-"): fn for name, fn in globals().items() if name.startswith("test_")}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in TESTS:
        print("usage: test_bus.py " + "|".join(sorted(TESTS)), file=sys.stderr)
        return 2
    name = sys.argv[1]
    t0 = time.monotonic()
    try:
        TESTS[name]()
    except Failure as e:
        print("FAIL %s: %s" % (name, e))
        traceback.print_exc()
        return 1
    except dbus.DBusException as e:
        print("FAIL %s: unexpected D-Bus error %s: %s" % (name, e.get_dbus_name(), e.get_dbus_message()))
        traceback.print_exc()
        return 1
    print("PASS %s (%.0f ms)" % (name, (time.monotonic() - t0) * 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
