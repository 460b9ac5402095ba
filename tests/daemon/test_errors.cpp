#include "daemon/errors.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

using namespace hostdev;

namespace {
sdbus::Error mapped(auto &&thrower) {
  try {
    thrower();
  } catch (...) {
    return daemon::to_dbus_error(std::current_exception());
  }
  return daemon::to_dbus_error(nullptr);
}
} // namespace

TEST(Errors, EveryErrcHasItsName) {
  const std::pair<core::Errc, const char *> all[] = {
      {core::Errc::NotFound, "NotFound"},
      {core::Errc::NameExists, "NameExists"},
      {core::Errc::AlreadyExists, "AlreadyExists"},
      {core::Errc::InvalidName, "InvalidName"},
      {core::Errc::InvalidPciAddress, "InvalidPciAddress"},
      {core::Errc::DeviceNotFound, "DeviceNotFound"},
      {core::Errc::InUse, "InUse"},
      {core::Errc::NotBound, "NotBound"},
      {core::Errc::AlreadyBound, "AlreadyBound"},
      {core::Errc::VfioUnavailable, "VfioUnavailable"},
      {core::Errc::IommuUnavailable, "IommuUnavailable"},
      {core::Errc::IommuGroupConflict, "IommuGroupConflict"},
      {core::Errc::ProfileUnavailable, "ProfileUnavailable"},
      {core::Errc::NoCapacity, "NoCapacity"},
      {core::Errc::Timeout, "Timeout"},
      {core::Errc::NotAuthorized, "NotAuthorized"},
      {core::Errc::InvalidArgument, "InvalidArgument"},
      {core::Errc::KernelError, "KernelError"},
  };
  for (const auto &[code, name] : all) {
    auto e = mapped([&] { core::fail(code, std::string("message for ") + name); });
    EXPECT_EQ(e.getName(), std::string("org.hostdev.Passthrough1.Error.") + name);
    EXPECT_EQ(e.getMessage(), std::string("message for ") + name);
    EXPECT_EQ(daemon::error_name(code), std::string("org.hostdev.Passthrough1.Error.") + name);
  }
}

TEST(Errors, StdExceptionBecomesKernelErrorWithItsMessage) {
  auto e = mapped([] { throw std::runtime_error("disk on fire"); });
  EXPECT_EQ(e.getName(), "org.hostdev.Passthrough1.Error.KernelError");
  EXPECT_NE(e.getMessage().find("disk on fire"), std::string::npos);
}

TEST(Errors, ForeignBusErrorBecomesKernelErrorNamingIt) {
  auto e = mapped([] { throw sdbus::Error("org.freedesktop.DBus.Error.NoReply", "timeout"); });
  EXPECT_EQ(e.getName(), "org.hostdev.Passthrough1.Error.KernelError");
  EXPECT_NE(e.getMessage().find("org.freedesktop.DBus.Error.NoReply"), std::string::npos);
}

TEST(Errors, OurBusErrorPassesThrough) {
  auto e = mapped([] { throw sdbus::Error("org.hostdev.Passthrough1.Error.InUse", "busy"); });
  EXPECT_EQ(e.getName(), "org.hostdev.Passthrough1.Error.InUse");
  EXPECT_EQ(e.getMessage(), "busy");
}

TEST(Errors, UnknownExceptionBecomesKernelError) {
  auto e = mapped([] { throw 42; });
  EXPECT_EQ(e.getName(), "org.hostdev.Passthrough1.Error.KernelError");
  EXPECT_FALSE(e.getMessage().empty());
}
