// Logging: to the journal with structured fields when stderr is connected to it (JOURNAL_STREAM), else to
// stderr as "hostdevd: <level>: message".
#pragma once

#include <map>
#include <string>

namespace hostdev::daemon {

enum class Level { Error = 3, Warning = 4, Notice = 5, Info = 6, Debug = 7 };

// `fields`: extra journal fields, upper-case names ("HOSTDEV_DEVICE" = "0000:01:00.0").
void log(Level level, const std::string &message, const std::map<std::string, std::string> &fields = {});

} // namespace hostdev::daemon
