// Authorization: a default-deny map from each mutating method to its polkit action, and the one check every
// mutation goes through. Reads are open. polkit absent or failing = denied (uid 0 excepted).
#pragma once

#include <sdbus-c++/IConnection.h>
#include <sdbus-c++/IProxy.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace hostdev::daemon {

// "Devices.Register", "Device.BindVfio", "Instances.Create", "Instance.Delete" ... -> the polkit action;
// nullptr for anything not in the map (denied).
const char *action_for(std::string_view method);
// Every method the map knows (for tests and docs).
const std::map<std::string_view, const char *> &action_map();

using Details = std::map<std::string, std::string>;

// Who asks, as the bus knows it.
struct Caller {
  std::string sender; // unique bus name ":1.42"
  std::uint32_t uid = 0;
};

// The authority the bouncer asks. Throws on any failure (the bouncer then denies).
class Authority {
public:
  virtual ~Authority() = default;
  virtual bool check(const std::string &sender, const std::string &action, const Details &details,
                     bool interactive) = 0;
};

// org.freedesktop.PolicyKit1 CheckAuthorization, subject ("system-bus-name", {"name": sender}), flags 1 when
// interactive. Uses the connection it is given (the worker's own; sd-bus connections are not thread-safe).
class PolkitAuthority : public Authority {
public:
  explicit PolkitAuthority(sdbus::IConnection &connection);
  bool check(const std::string &sender, const std::string &action, const Details &details,
             bool interactive) override;

private:
  std::unique_ptr<sdbus::IProxy> proxy_;
};

class Bouncer {
public:
  explicit Bouncer(Authority *authority) : authority_(authority) {}

  // Throws core::Error(NotAuthorized) unless allowed. `instance_owner`: for the Delete methods, the owner uid of
  // the instance; another user's instance needs manage-all-instances.
  void authorize(const Caller &caller, std::string_view method, const Details &details, bool interactive,
                 std::optional<std::uint32_t> instance_owner = std::nullopt) const;

  // The action `authorize` would ask for (nullptr: denied outright).
  static const char *action(std::string_view method, std::uint32_t caller_uid,
                            std::optional<std::uint32_t> instance_owner);

private:
  Authority *authority_;
};

} // namespace hostdev::daemon
