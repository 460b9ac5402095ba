#include "core/uevent.hpp"

#include <gtest/gtest.h>

#include <string>

using namespace hostdev::core;

namespace {

std::string datagram(std::initializer_list<std::string> parts) {
  std::string out;
  for (const auto &p : parts)
    out += p + std::string(1, '\0');
  return out;
}

} // namespace

TEST(Uevent, AKernelBindEvent) {
  const auto ev = parse_uevent(
      datagram({"bind@/devices/pci0000:00/0000:00:02.0", "ACTION=bind", "DEVPATH=/devices/pci0000:00/0000:00:02.0",
                "SUBSYSTEM=pci", "DRIVER=vfio-pci", "PCI_SLOT_NAME=0000:00:02.0", "SEQNUM=1234"}));
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->action, "bind");
  EXPECT_EQ(ev->subsystem, "pci");
  EXPECT_EQ(ev->driver, "vfio-pci");
  EXPECT_EQ(ev->name(), "0000:00:02.0");
}

// What they change: test_model.cpp.
TEST(Uevent, AnMdevAddAndAnUnrelatedEvent) {
  const auto mdev =
      parse_uevent(datagram({"add@/devices/virtual/mtty/mtty/4b20d080-1b54-4048-85b3-a6a62d165c01", "ACTION=add",
                             "DEVPATH=/devices/virtual/mtty/mtty/4b20d080-1b54-4048-85b3-a6a62d165c01",
                             "SUBSYSTEM=mdev", "MDEV_TYPE=mtty-2"}));
  ASSERT_TRUE(mdev);
  EXPECT_EQ(mdev->name(), "4b20d080-1b54-4048-85b3-a6a62d165c01");
  const auto tty = parse_uevent(
      datagram({"add@/devices/virtual/tty/tty9", "ACTION=add", "DEVPATH=/devices/virtual/tty/tty9", "SUBSYSTEM=tty"}));
  ASSERT_TRUE(tty);
}

TEST(Uevent, WhatIsNotAKernelUeventIsRefused) {
  EXPECT_FALSE(parse_uevent(datagram({"libudev", "ACTION=add"}))) << "udev's own messages";
  EXPECT_FALSE(parse_uevent("add@/devices/x")) << "no NUL after the header";
  EXPECT_FALSE(parse_uevent(datagram({"@/devices/x"})));
  EXPECT_FALSE(parse_uevent(datagram({"add@/devices/x", "ACTION=remove", "DEVPATH=/devices/x"})))
      << "header and keys disagree";
  EXPECT_FALSE(parse_uevent(datagram({"add@/devices/x", "ACTION=add", "DEVPATH=/devices/x", "DRIVER=\xff"})))
      << "not UTF-8";
  EXPECT_FALSE(parse_uevent(datagram({"add@devices/x", "ACTION=add", "DEVPATH=devices/x"}))) << "relative path";
  EXPECT_FALSE(parse_uevent(""));
}
