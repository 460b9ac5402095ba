#include "core/ids.hpp"

#include "core/error.hpp"

#include <systemd/sd-id128.h>

#include <cstring>
#include <ctime>

namespace hostdev::core {
namespace {

sd_id128_t random_id() {
  sd_id128_t id;
  int r = sd_id128_randomize(&id);
  if (r < 0)
    fail(Errc::KernelError, std::string("cannot get random bytes: ") + std::strerror(-r));
  return id;
}

} // namespace

std::string new_uuid() {
  char buf[SD_ID128_UUID_STRING_MAX];
  return sd_id128_to_uuid_string(random_id(), buf);
}

std::string new_object_id() {
  char buf[SD_ID128_STRING_MAX];
  return sd_id128_to_string(random_id(), buf);
}

std::uint64_t now_usec() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000u + static_cast<std::uint64_t>(ts.tv_nsec) / 1000u;
}

} // namespace hostdev::core
