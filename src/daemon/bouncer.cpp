#include "daemon/bouncer.hpp"

#include "core/error.hpp"
#include "names.hpp"

#include <sdbus-c++/Types.h>

namespace hostdev::daemon {

const std::map<std::string_view, const char *> &action_map() {
  static const std::map<std::string_view, const char *> map = {
      {"Devices.Register", names::kActionManageDevices},
      {"Devices.Unregister", names::kActionManageDevices},
      {"Device.BindVfio", names::kActionManageDevices},
      {"Device.UnbindVfio", names::kActionManageDevices},
      {"Device.Restore", names::kActionManageDevices},
      {"Devices.Reconcile", names::kActionReconcile},
      {"Instances.Create", names::kActionManageInstances},
      {"Instances.Delete", names::kActionManageInstances},
      {"Instance.Delete", names::kActionManageInstances},
  };
  return map;
}

const char *action_for(std::string_view method) {
  auto it = action_map().find(method);
  return it == action_map().end() ? nullptr : it->second;
}

PolkitAuthority::PolkitAuthority(sdbus::IConnection &connection)
    : proxy_(sdbus::createProxy(connection, "org.freedesktop.PolicyKit1", "/org/freedesktop/PolicyKit1/Authority")) {}

bool PolkitAuthority::check(const std::string &sender, const std::string &action, const Details &details,
                            bool interactive) {
  using Subject = sdbus::Struct<std::string, std::map<std::string, sdbus::Variant>>;
  Subject subject{std::string("system-bus-name"), std::map<std::string, sdbus::Variant>{{"name", sdbus::Variant(sender)}}};
  sdbus::Struct<bool, bool, std::map<std::string, std::string>> result;
  const std::uint32_t flags = interactive ? 1 : 0;
  // Interactive authentication waits for a person; give it the time an agent dialog needs.
  proxy_->callMethod("CheckAuthorization")
      .onInterface("org.freedesktop.PolicyKit1.Authority")
      .withTimeout(std::chrono::seconds(interactive ? 120 : 25))
      .withArguments(subject, action, details, flags, std::string())
      .storeResultsTo(result);
  return std::get<0>(result);
}

const char *Bouncer::action(std::string_view method, std::uint32_t caller_uid,
                            std::optional<std::uint32_t> instance_owner) {
  const char *act = action_for(method);
  if (act == nullptr)
    return nullptr;
  if ((method == "Instances.Delete" || method == "Instance.Delete") && instance_owner && *instance_owner != caller_uid)
    return names::kActionManageAllInstances;
  return act;
}

void Bouncer::authorize(const Caller &caller, std::string_view method, const Details &details, bool interactive,
                        std::optional<std::uint32_t> instance_owner) const {
  const char *act = action(method, caller.uid, instance_owner);
  if (act == nullptr)
    core::fail(core::Errc::NotAuthorized, "method " + std::string(method) + " is not allowed for anyone");
  if (caller.uid == 0)
    return;
  bool allowed = false;
  std::string why;
  try {
    allowed = authority_ != nullptr && authority_->check(caller.sender, act, details, interactive);
    if (authority_ == nullptr)
      why = " (no authority to ask)";
  } catch (const sdbus::Error &e) {
    why = " (polkit failed: " + e.getName() + ": " + e.getMessage() + ")";
  } catch (const std::exception &e) {
    why = std::string(" (polkit failed: ") + e.what() + ")";
  }
  if (!allowed)
    core::fail(core::Errc::NotAuthorized,
               "uid " + std::to_string(caller.uid) + " is not authorized for " + act + why +
                   (interactive ? "" : "; pass the option interactive=true to let polkit ask for authentication") +
                   ", or ask an administrator to grant it (e.g. membership of group hostdev with the example rules)");
}

} // namespace hostdev::daemon
