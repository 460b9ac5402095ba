#include "core/error.hpp"

namespace hostdev::core {

std::string_view errc_name(Errc code) noexcept {
  switch (code) {
  case Errc::NotFound: return "NotFound";
  case Errc::NameExists: return "NameExists";
  case Errc::AlreadyExists: return "AlreadyExists";
  case Errc::InvalidName: return "InvalidName";
  case Errc::InvalidPciAddress: return "InvalidPciAddress";
  case Errc::DeviceNotFound: return "DeviceNotFound";
  case Errc::InUse: return "InUse";
  case Errc::NotBound: return "NotBound";
  case Errc::AlreadyBound: return "AlreadyBound";
  case Errc::VfioUnavailable: return "VfioUnavailable";
  case Errc::IommuUnavailable: return "IommuUnavailable";
  case Errc::IommuGroupConflict: return "IommuGroupConflict";
  case Errc::ProfileUnavailable: return "ProfileUnavailable";
  case Errc::NoCapacity: return "NoCapacity";
  case Errc::Timeout: return "Timeout";
  case Errc::NotAuthorized: return "NotAuthorized";
  case Errc::InvalidArgument: return "InvalidArgument";
  case Errc::KernelError: return "KernelError";
  }
  return "KernelError";
}

void fail(Errc code, const std::string &message) { throw Error(code, message); }

} // namespace hostdev::core
