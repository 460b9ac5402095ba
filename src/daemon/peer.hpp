// The process behind a bus connection, for leases.
#pragma once

#include <cstdint>

namespace hostdev::daemon {

// The start time of a process (field 22 of /proc/<pid>/stat, clock ticks since boot): with the pid it names one
// process for good, where a pid alone may be reused. 0 when unreadable.
std::uint64_t process_start_time(std::uint32_t pid);

} // namespace hostdev::daemon
