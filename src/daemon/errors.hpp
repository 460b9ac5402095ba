// The one place where failures become D-Bus errors: core::Errc -> org.hostdev.Passthrough1.Error.<Name>.
#pragma once

#include "core/error.hpp"

#include <sdbus-c++/Error.h>

#include <exception>
#include <string>

namespace hostdev::daemon {

// "org.hostdev.Passthrough1.Error.NotFound"
std::string error_name(core::Errc code);

// Maps whatever was thrown to the error the caller gets: core::Error keeps its code and message; an sdbus::Error
// that already carries one of our names passes through; anything else (a failing bus call, std::exception,
// unknown) becomes Error.KernelError with a message saying what failed.
sdbus::Error to_dbus_error(std::exception_ptr error);

// What was thrown, as one line for the log: "org.x.Error: message", what(), or "unknown exception".
std::string describe_exception(std::exception_ptr error);

} // namespace hostdev::daemon
