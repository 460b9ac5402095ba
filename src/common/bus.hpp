// What hostdevd and hostdevctl both need of D-Bus that is not the core's business: connecting to the bus the user
// named. (The adaptor and proxy classes of org.hostdev.Passthrough1 are generated into this directory's build
// folder from dbus/org.hostdev.Passthrough1.xml.)
#pragma once

#include <sdbus-c++/IConnection.h>

#include <memory>
#include <string>

namespace hostdev::common {

// "system" (honours DBUS_SYSTEM_BUS_ADDRESS), "session", or a D-Bus address such as unix:path=/run/x.
// Throws sdbus::Error when the bus cannot be reached.
std::unique_ptr<sdbus::IConnection> connect_bus(const std::string &bus);
// Whether `bus` is one of the forms connect_bus takes.
bool valid_bus_option(const std::string &bus);

} // namespace hostdev::common
