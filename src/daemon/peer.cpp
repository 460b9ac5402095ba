#include "daemon/peer.hpp"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace hostdev::daemon {

std::uint64_t process_start_time(std::uint32_t pid) {
  if (pid == 0)
    return 0;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!in || !std::getline(in, text))
    return 0;
  const auto close = text.rfind(')'); // the command may hold spaces and parentheses
  if (close == std::string::npos)
    return 0;
  std::istringstream fields(text.substr(close + 1));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i)
    if (i == 22)
      return std::strtoull(field.c_str(), nullptr, 10);
  return 0;
}

} // namespace hostdev::daemon
