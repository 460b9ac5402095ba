// core::UnitControl over systemd's D-Bus API (org.freedesktop.systemd1). With no systemd on the bus every unit
// "does not exist", so the core skips nvidia-persistenced handling.
#pragma once

#include "core/vfio.hpp"

#include <sdbus-c++/IConnection.h>
#include <sdbus-c++/IProxy.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

namespace hostdev::daemon {

class SystemdUnits : public core::UnitControl {
public:
  // `connection` is used only from the thread that calls the methods (the worker).
  explicit SystemdUnits(sdbus::IConnection &connection, std::chrono::milliseconds deadline = std::chrono::seconds(20));

  bool exists(const std::string &unit) override;
  bool is_active(const std::string &unit) override;
  void stop(
      const std::string &unit) override; // StopUnit "replace", waits for inactive/failed; KernelError past the deadline
  void start(const std::string &unit) override; // StartUnit "replace", waits for active; KernelError past the deadline

private:
  std::optional<sdbus::ObjectPath> load(const std::string &unit); // nullopt when systemd is absent
  std::string property(const sdbus::ObjectPath &path, const std::string &name);
  void wait_for(const std::string &unit, bool active);

  sdbus::IConnection &connection_;
  std::unique_ptr<sdbus::IProxy> manager_;
  std::chrono::milliseconds deadline_;
};

} // namespace hostdev::daemon
