#include "common/bus.hpp"

#include <sdbus-c++/sdbus-c++.h>

namespace hostdev::common {

bool valid_bus_option(const std::string &bus) {
  return bus == "system" || bus == "session" || bus.find(':') != std::string::npos;
}

std::unique_ptr<sdbus::IConnection> connect_bus(const std::string &bus) {
  if (bus == "system")
    return sdbus::createSystemBusConnection();
  if (bus == "session")
    return sdbus::createSessionBusConnection();
  return sdbus::createSessionBusConnectionWithAddress(bus);
}

} // namespace hostdev::common
