// Authorization: a default-deny map from each mutating method to its polkit action, and the one check every
// mutation goes through before it is queued. Reads are open. polkit absent or failing = denied (uid 0 excepted).
// Asynchronous: the answer comes through a callback on the bus thread, so a person slow to type a password (or
// an agent that never answers) delays only the call it was asked for.
#pragma once

#include <sdbus-c++/IConnection.h>
#include <sdbus-c++/IProxy.h>

#include <cstdint>
#include <exception>
#include <functional>
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
  std::uint32_t pid = 0; // the process behind the connection, as the bus driver says (0 when it does not)
};

// The authority the bouncer asks.
class Authority {
public:
  // Called exactly once: allowed, or not with `why` saying what failed ("" for a plain no).
  using Answer = std::function<void(bool allowed, const std::string &why)>;
  virtual ~Authority() = default;
  // `cancellation_id` (may be empty) names the check for cancel().
  virtual void check(const std::string &sender, const std::string &action, const Details &details, bool interactive,
                     const std::string &cancellation_id, Answer answer) = 0;
  // Gives up a check that has not been answered (its caller left): the answer then comes as a refusal.
  virtual void cancel(const std::string & /*cancellation_id*/) {}
};

// org.freedesktop.PolicyKit1 CheckAuthorization, subject ("system-bus-name", {"name": sender}), flags 1 when
// interactive, as an asynchronous call on `connection` (the bus thread's): the answer arrives through its loop.
class PolkitAuthority : public Authority {
public:
  explicit PolkitAuthority(sdbus::IConnection &connection);
  void check(const std::string &sender, const std::string &action, const Details &details, bool interactive,
             const std::string &cancellation_id, Answer answer) override;
  void cancel(const std::string &cancellation_id) override; // CancelCheckAuthorization

private:
  std::unique_ptr<sdbus::IProxy> proxy_;
};

class Bouncer {
public:
  // nullptr: no authority to ask (everyone but root is refused).
  explicit Bouncer(Authority *authority) : authority_(authority) {}

  // Calls `done` once: with nullptr when allowed, else with a core::Error(NotAuthorized) naming the action.
  // `instance_owner`: for the Delete methods, the owner uid of the instance; another user's instance needs
  // manage-all-instances. Root is allowed without asking; an unknown method is refused without asking.
  // `cancellation_id`: see Authority::check.
  void authorize(const Caller &caller, std::string_view method, const Details &details, bool interactive,
                 std::optional<std::uint32_t> instance_owner, std::function<void(std::exception_ptr)> done,
                 const std::string &cancellation_id = "") const;
  void cancel(const std::string &cancellation_id) const {
    if (authority_ != nullptr)
      authority_->cancel(cancellation_id);
  }

  // The action `authorize` asks for (nullptr: denied outright).
  static const char *action(std::string_view method, std::uint32_t caller_uid,
                            std::optional<std::uint32_t> instance_owner);

private:
  Authority *authority_;
};

} // namespace hostdev::daemon
