// Typed errors of the core. The daemon maps Errc to org.hostdev.Passthrough1.Error.<name> in one place.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace hostdev::core {

enum class Errc {
  NotFound,
  NameExists,
  AlreadyExists,
  InvalidName,
  InvalidPciAddress,
  DeviceNotFound,
  InUse,
  NotBound,
  AlreadyBound,
  VfioUnavailable,
  IommuUnavailable,
  IommuGroupConflict,
  ProfileUnavailable,
  NoCapacity,
  Timeout,
  NotAuthorized,
  InvalidArgument,
  KernelError,
};

// "NotFound", "InvalidPciAddress", ... — the suffix of the D-Bus error name.
std::string_view errc_name(Errc code) noexcept;

class Error : public std::runtime_error {
public:
  Error(Errc code, const std::string &message) : std::runtime_error(message), code_(code) {}
  Errc code() const noexcept { return code_; }

private:
  Errc code_;
};

// Throws Error(code, message). Keeps call sites to one line.
[[noreturn]] void fail(Errc code, const std::string &message);

} // namespace hostdev::core
