#!/usr/bin/python3
"""Helpers for the bus test authz-stalled-agent, run as an unprivileged user.

    stall_agent.py caller     prints its pid, then per line "go N" on stdin makes N interactive Register calls
                              and prints "reply K OK" / "reply K ERROR <name> <message>" as each answers
    stall_agent.py agent PID  registers a polkit authentication agent for process PID that never answers: prints
                              "registered", then "begin" and "cancel" as polkitd asks and gives up
"""
import os
import sys
import threading

import dbus
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

BUS_NAME = "org.hostdev.Passthrough1"
ROOT = "/org/hostdev/Passthrough1"
DEVICES = "org.hostdev.Passthrough1.Devices"
AGENT_IFACE = "org.freedesktop.PolicyKit1.AuthenticationAgent"


def say(*words):
    print(*words, flush=True)


def start_time(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


class Agent(dbus.service.Object):
    def __init__(self, conn):
        super().__init__(conn, "/org/hostdev/test/StallingAgent")
        self.pending = []

    @dbus.service.method(AGENT_IFACE, in_signature="sssa{ss}sa(sa{sv})", out_signature="",
                         async_callbacks=("ok", "err"))
    def BeginAuthentication(self, action_id, message, icon, details, cookie, identities, ok, err):
        self.pending.append((ok, err))  # never answered: a person who never types
        say("begin", action_id)

    @dbus.service.method(AGENT_IFACE, in_signature="s", out_signature="")
    def CancelAuthentication(self, cookie):
        say("cancel")


def main():
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    conn = dbus.bus.BusConnection(os.environ["DBUS_SYSTEM_BUS_ADDRESS"])
    loop = GLib.MainLoop()
    if sys.argv[1] == "agent":
        pid = int(sys.argv[2])
        Agent(conn)
        subject = ("unix-process", {"pid": dbus.UInt32(pid), "start-time": dbus.UInt64(start_time(pid)),
                                    "uid": dbus.Int32(os.getuid())})
        authority = conn.get_object("org.freedesktop.PolicyKit1", "/org/freedesktop/PolicyKit1/Authority")
        authority.RegisterAuthenticationAgent(subject, "C", "/org/hostdev/test/StallingAgent",
                                              dbus_interface="org.freedesktop.PolicyKit1.Authority")
        say("registered")
        loop.run()
        return 0
    root = conn.get_object(BUS_NAME, ROOT)
    counter = [0]

    def go(n):
        for _ in range(n):
            counter[0] += 1
            k = counter[0]
            root.Register("stall%d" % k, "0000:02:00.0", {"interactive": dbus.Boolean(True)},
                          dbus_interface=DEVICES, timeout=300,
                          reply_handler=lambda *a, k=k: say("reply", k, "OK"),
                          error_handler=lambda e, k=k: say("reply", k, "ERROR", e.get_dbus_name(),
                                                           e.get_dbus_message()))
        return False

    def read_stdin():
        for line in sys.stdin:
            words = line.split()
            if words and words[0] == "go":
                GLib.idle_add(go, int(words[1]))
        GLib.idle_add(loop.quit)

    threading.Thread(target=read_stdin, daemon=True).start()
    say("pid", os.getpid())
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
