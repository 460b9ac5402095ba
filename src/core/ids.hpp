#pragma once

#include <cstdint>
#include <string>

namespace hostdev::core {

// A fresh random UUID (sd-id128, version 4), lower-case 8-4-4-4-12.
std::string new_uuid();
// A fresh random 128-bit id, 32 lower-case hex characters.
std::string new_object_id();
// Microseconds since the epoch (CLOCK_REALTIME).
std::uint64_t now_usec();

} // namespace hostdev::core
