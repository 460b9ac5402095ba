#include "daemon/units.hpp"

#include "core/error.hpp"

#include <thread>

namespace hostdev::daemon {
namespace {
constexpr const char *kSystemd = "org.freedesktop.systemd1";
constexpr const char *kManager = "org.freedesktop.systemd1.Manager";
} // namespace

SystemdUnits::SystemdUnits(sdbus::IConnection &connection, std::chrono::milliseconds deadline)
    : connection_(connection), manager_(sdbus::createProxy(connection, kSystemd, "/org/freedesktop/systemd1")),
      deadline_(deadline) {}

std::optional<sdbus::ObjectPath> SystemdUnits::load(const std::string &unit) {
  try {
    sdbus::ObjectPath path;
    manager_->callMethod("LoadUnit")
        .onInterface(kManager)
        .withTimeout(std::chrono::seconds(5))
        .withArguments(unit)
        .storeResultsTo(path);
    return path;
  } catch (const sdbus::Error &) {
    return std::nullopt; // no systemd on this bus (or it refused): treat as absent
  }
}

std::string SystemdUnits::property(const sdbus::ObjectPath &path, const std::string &name) {
  auto unit = sdbus::createProxy(connection_, kSystemd, path);
  sdbus::Variant value;
  unit->callMethod("Get")
      .onInterface("org.freedesktop.DBus.Properties")
      .withTimeout(std::chrono::seconds(5))
      .withArguments(std::string("org.freedesktop.systemd1.Unit"), name)
      .storeResultsTo(value);
  return value.get<std::string>();
}

bool SystemdUnits::exists(const std::string &unit) {
  auto path = load(unit);
  if (!path)
    return false;
  try {
    return property(*path, "LoadState") != "not-found";
  } catch (const sdbus::Error &) {
    return false;
  }
}

bool SystemdUnits::is_active(const std::string &unit) {
  auto path = load(unit);
  if (!path)
    return false;
  try {
    const auto state = property(*path, "ActiveState");
    return state == "active" || state == "reloading" || state == "activating";
  } catch (const sdbus::Error &) {
    return false;
  }
}

void SystemdUnits::wait_for(const std::string &unit, bool active) {
  const auto until = std::chrono::steady_clock::now() + deadline_;
  auto path = load(unit);
  if (!path)
    core::fail(core::Errc::KernelError, "systemd vanished while waiting for " + unit);
  std::string state;
  while (std::chrono::steady_clock::now() < until) {
    try {
      state = property(*path, "ActiveState");
    } catch (const sdbus::Error &e) {
      core::fail(core::Errc::KernelError, "cannot read the state of " + unit + " from systemd while waiting for it: " +
                                              e.getName() + ": " + e.getMessage());
    }
    if (active ? state == "active" : (state == "inactive" || state == "failed"))
      return;
    if (active && state == "failed")
      core::fail(core::Errc::KernelError, unit + " failed to start; see 'journalctl -u " + unit + "'");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  core::fail(core::Errc::Timeout, unit + " did not become " + (active ? "active" : "inactive") + " within " +
                                      std::to_string(deadline_.count()) + " ms (it is " + state + ")");
}

void SystemdUnits::stop(const std::string &unit) {
  try {
    sdbus::ObjectPath job;
    manager_->callMethod("StopUnit")
        .onInterface(kManager)
        .withArguments(unit, std::string("replace"))
        .storeResultsTo(job);
  } catch (const sdbus::Error &e) {
    core::fail(core::Errc::KernelError, "stopping " + unit + " failed: " + e.getMessage());
  }
  wait_for(unit, false);
}

void SystemdUnits::start(const std::string &unit) {
  try {
    sdbus::ObjectPath job;
    manager_->callMethod("StartUnit")
        .onInterface(kManager)
        .withArguments(unit, std::string("replace"))
        .storeResultsTo(job);
  } catch (const sdbus::Error &e) {
    core::fail(core::Errc::KernelError, "starting " + unit + " failed: " + e.getMessage());
  }
  wait_for(unit, true);
}

} // namespace hostdev::daemon
