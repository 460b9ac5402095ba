#include "core/uevent.hpp"

#include "core/validate.hpp"

namespace hostdev::core {
namespace {

constexpr std::size_t kMaxField = 4096;

bool good(std::string_view s) { return s.size() <= kMaxField && to_valid_utf8(s) == s; }

} // namespace

std::string Uevent::name() const {
  const auto slash = devpath.rfind('/');
  return slash == std::string::npos ? devpath : devpath.substr(slash + 1);
}

std::optional<Uevent> parse_uevent(std::string_view data) {
  // The header "ACTION@DEVPATH", then NUL-separated KEY=VALUE pairs.
  const auto header_end = data.find('\0');
  const auto header = data.substr(0, header_end);
  const auto at = header.find('@');
  if (header_end == std::string_view::npos || at == std::string_view::npos || at == 0 || at + 1 >= header.size())
    return std::nullopt; // libudev's messages start "libudev\0": no '@' in their header
  Uevent ev;
  std::string_view action = header.substr(0, at), devpath = header.substr(at + 1);
  std::string_view key_action, key_devpath;
  for (std::size_t pos = header_end + 1; pos < data.size();) {
    auto end = data.find('\0', pos);
    if (end == std::string_view::npos)
      end = data.size();
    const auto field = data.substr(pos, end - pos);
    pos = end + 1;
    const auto eq = field.find('=');
    if (eq == std::string_view::npos)
      continue;
    const auto key = field.substr(0, eq), value = field.substr(eq + 1);
    if (!good(value))
      return std::nullopt;
    if (key == "ACTION")
      key_action = value;
    else if (key == "DEVPATH")
      key_devpath = value;
    else if (key == "SUBSYSTEM")
      ev.subsystem = value;
    else if (key == "DRIVER")
      ev.driver = value;
  }
  if (key_action != action || key_devpath != devpath || !good(action) || !good(devpath) || devpath[0] != '/')
    return std::nullopt;
  ev.action = action;
  ev.devpath = devpath;
  return ev;
}

} // namespace hostdev::core
