#include "daemon/errors.hpp"

#include "core/validate.hpp"
#include "names.hpp"

namespace hostdev::daemon {

std::string error_name(core::Errc code) {
  return std::string(names::kErrorPrefix) + std::string(core::errc_name(code));
}

sdbus::Error to_dbus_error(std::exception_ptr error) {
  try {
    if (error)
      std::rethrow_exception(error);
    return sdbus::Error(error_name(core::Errc::KernelError), "internal error: no exception to report");
  } catch (const core::Error &e) {
    return sdbus::Error(error_name(e.code()), core::to_valid_utf8(e.what()));
  } catch (const sdbus::Error &e) {
    if (e.getName().rfind(names::kErrorPrefix, 0) == 0)
      return e;
    return sdbus::Error(error_name(core::Errc::KernelError),
                        "a bus call failed: " + e.getName() + ": " + e.getMessage());
  } catch (const std::exception &e) {
    return sdbus::Error(error_name(core::Errc::KernelError), std::string("hostdevd failed: ") + e.what());
  } catch (...) {
    return sdbus::Error(error_name(core::Errc::KernelError), "hostdevd failed with an unknown exception");
  }
}

std::string describe_exception(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const sdbus::Error &e) {
    return e.getName() + ": " + e.getMessage();
  } catch (const std::exception &e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

} // namespace hostdev::daemon
