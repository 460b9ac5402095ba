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
  Error(Errc code, const std::string &message, int sys_errno = 0)
      : std::runtime_error(message), code_(code), sys_errno_(sys_errno) {}
  Errc code() const noexcept { return code_; }
  // The errno of the kernel's refusal (a sysfs write), 0 when the error has none.
  int sys_errno() const noexcept { return sys_errno_; }

private:
  Errc code_;
  int sys_errno_ = 0;
};

// Throws Error(code, message). Keeps call sites to one line.
[[noreturn]] void fail(Errc code, const std::string &message);

} // namespace hostdev::core
