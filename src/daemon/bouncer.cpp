#include "daemon/bouncer.hpp"

#include "core/error.hpp"
#include "names.hpp"

#include <sdbus-c++/sdbus-c++.h>

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
      {"Devices.ConfigureSriov", names::kActionManageDevices},
      {"Devices.Unquarantine", names::kActionManageDevices},
      {"Instance.Restore", names::kActionManageInstances},
      {"Instance.OpenVfio", names::kActionManageInstances},
      {"Instance.RaiseMemlock", names::kActionManageInstances},
      {"Instances.ReportGuestInit", names::kActionManageInstances},
  };
  return map;
}

const char *action_for(std::string_view method) {
  auto it = action_map().find(method);
  return it == action_map().end() ? nullptr : it->second;
}

PolkitAuthority::PolkitAuthority(sdbus::IConnection &connection)
    : proxy_(sdbus::createProxy(connection, "org.freedesktop.PolicyKit1", "/org/freedesktop/PolicyKit1/Authority")) {}

void PolkitAuthority::check(const std::string &sender, const std::string &action, const Details &details,
                            bool interactive, const std::string &cancellation_id, Answer answer) {
  using Subject = sdbus::Struct<std::string, std::map<std::string, sdbus::Variant>>;
  Subject subject{std::string("system-bus-name"),
                  std::map<std::string, sdbus::Variant>{{"name", sdbus::Variant(sender)}}};
  const std::uint32_t flags = interactive ? 1 : 0;
  try {
    // Interactive authentication waits for a person; give it the time an agent dialog needs.
    proxy_->callMethodAsync("CheckAuthorization")
        .onInterface("org.freedesktop.PolicyKit1.Authority")
        .withTimeout(std::chrono::seconds(interactive ? 120 : 25))
        .withArguments(subject, action, details, flags, cancellation_id)
        .uponReplyInvoke([answer](const sdbus::Error *error,
                                  const sdbus::Struct<bool, bool, std::map<std::string, std::string>> &result) {
          if (error != nullptr)
            answer(false, "polkit failed: " + error->getName() + ": " + error->getMessage());
          else
            answer(std::get<0>(result), "");
        });
  } catch (const sdbus::Error &e) {
    answer(false, "polkit failed: " + e.getName() + ": " + e.getMessage());
  }
}

void PolkitAuthority::cancel(const std::string &cancellation_id) {
  if (cancellation_id.empty())
    return;
  try {
    proxy_->callMethodAsync("CancelCheckAuthorization")
        .onInterface("org.freedesktop.PolicyKit1.Authority")
        .withArguments(cancellation_id)
        .uponReplyInvoke([](const sdbus::Error *) {}); // the check itself answers (Cancelled)
  } catch (const sdbus::Error &) {
  }
}

const char *Bouncer::action(std::string_view method, std::uint32_t caller_uid,
                            std::optional<std::uint32_t> instance_owner) {
  const char *act = action_for(method);
  if (act == nullptr)
    return nullptr;
  if ((method == "Instances.Delete" || method == "Instance.Delete" || method == "Instances.ReportGuestInit" ||
       method == "Instance.Restore" || method == "Instance.OpenVfio" || method == "Instance.RaiseMemlock") &&
      instance_owner && *instance_owner != caller_uid)
    return names::kActionManageAllInstances;
  return act;
}

void Bouncer::authorize(const Caller &caller, std::string_view method, const Details &details, bool interactive,
                        std::optional<std::uint32_t> instance_owner, std::function<void(std::exception_ptr)> done,
                        const std::string &cancellation_id) const {
  const char *act = action(method, caller.uid, instance_owner);
  if (act == nullptr) {
    done(std::make_exception_ptr(
        core::Error(core::Errc::NotAuthorized, "method " + std::string(method) + " is not allowed for anyone")));
    return;
  }
  if (caller.uid == 0) {
    done(nullptr);
    return;
  }
  auto refuse = [uid = caller.uid, action = std::string(act), interactive, done](const std::string &why) {
    done(std::make_exception_ptr(core::Error(
        core::Errc::NotAuthorized,
        "uid " + std::to_string(uid) + " is not authorized for " + action + (why.empty() ? "" : " (" + why + ")") +
            (interactive ? "" : "; pass the option interactive=true to let polkit ask for authentication") +
            ", or ask an administrator to grant it (e.g. membership of group hostdev with the example rules)")));
  };
  if (authority_ == nullptr) {
    refuse("no authority to ask");
    return;
  }
  authority_->check(caller.sender, act, details, interactive, cancellation_id,
                    [done, refuse](bool allowed, const std::string &why) {
                      if (allowed)
                        done(nullptr);
                      else
                        refuse(why);
                    });
}

} // namespace hostdev::daemon
