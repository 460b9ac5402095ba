#!/usr/bin/env python3
"""org.hostdev.Passthrough1(5) names every method, property, signal, error and polkit action of the API, and
hostdevctl(1) every error name its exit codes map.

    test_man_api.py API.xml ACTIONS.policy error.hpp org.hostdev.Passthrough1.5 hostdevctl.1
"""
import re
import sys
import xml.etree.ElementTree as ET

xml_path, policy_path, errors_path, man5_path, man1_path = sys.argv[1:6]


def plain(roff):
    """roff source -> words as rendered: drop font escapes and the backslash of \\- ."""
    text = re.sub(r"\\f[BIRP]", "", roff)
    return text.replace("\\-", "-").replace("\\e", "\\")


man5 = plain(open(man5_path, encoding="utf-8").read())
man1 = plain(open(man1_path, encoding="utf-8").read())
missing = []


def need(text, what, where):
    if what not in text:
        missing.append("%s: %s" % (where, what))


root = ET.parse(xml_path).getroot()
for iface in root.findall("interface"):
    name = iface.get("name")
    need(man5, "INTERFACE " + name, "man 5")
    for m in iface.findall("method"):
        args = ", ".join("%s %s %s" % (a.get("direction", "in"), a.get("type"), a.get("name"))
                         for a in m.findall("arg"))
        need(man5, "%s(%s)" % (m.get("name"), args), "man 5 method of " + name)
    for p in iface.findall("property"):
        need(man5, "%s (%s, %s" % (p.get("name"), p.get("type"), p.get("access")), "man 5 property of " + name)
    for s in iface.findall("signal"):
        args = ", ".join("%s %s" % (a.get("type"), a.get("name")) for a in s.findall("arg"))
        need(man5, "%s(%s)" % (s.get("name"), args), "man 5 signal of " + name)

errors = re.findall(r"^\s+(\w+),", re.search(r"enum class Errc \{(.*?)\};", open(errors_path).read(), re.S).group(1),
                    re.M)
if len(errors) < 10:
    missing.append("could not read the error names from " + errors_path)
for e in errors:
    need(man5, ".B " + e + "\n", "man 5 ERRORS")
    need(man1, e, "man 1 EXIT STATUS")

for action in re.findall(r'<action id="([^"]+)"', open(policy_path).read()):
    need(man5, action, "man 5 AUTHORIZATION")

if missing:
    print("missing from the man pages:\n  " + "\n  ".join(missing))
    sys.exit(1)
print("ok: the man pages name every method, property, signal, error and polkit action")
