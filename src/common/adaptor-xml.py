#!/usr/bin/env python3
"""The interface XML for the generated adaptors, without the methods hostdevd registers by hand.

  adaptor-xml.py IN OUT METHOD...

hostdevd answers a few big reads (Devices.ListAvailable) with replies it keeps as plain data and serializes
straight into the reply message, on a thread of its own when they are big (src/daemon/replier.hpp): that needs
the call itself, which a generated adaptor hides. The bus still shows the interface of IN exactly: the method is
registered with the same signature and argument names (tests/bus checks Introspect against IN).
"""
import re
import sys

src, dst, *methods = sys.argv[1:]
with open(src, encoding="utf-8") as f:
    text = f.read()
for name in methods:
    pattern = re.compile(r'[ \t]*<method name="%s">.*?</method>[ \t]*\n' % re.escape(name), re.S)
    text, count = pattern.subn("", text)
    if count != 1:
        sys.exit("adaptor-xml.py: method %s found %d times in %s" % (name, count, src))
with open(dst, "w", encoding="utf-8") as f:
    f.write(text)
