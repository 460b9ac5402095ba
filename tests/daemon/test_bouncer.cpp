#include "daemon/bouncer.hpp"

#include "core/error.hpp"
#include "names.hpp"

#include <gtest/gtest.h>

#include <set>
#include <stdexcept>

using namespace hostdev;
using daemon::Bouncer;
using daemon::Caller;

namespace {

struct FakeAuthority : daemon::Authority {
  bool answer = false;
  bool fail = false;
  int calls = 0;
  std::string last_sender, last_action;
  daemon::Details last_details;
  bool last_interactive = false;
  bool check(const std::string &sender, const std::string &action, const daemon::Details &details,
             bool interactive) override {
    ++calls;
    last_sender = sender;
    last_action = action;
    last_details = details;
    last_interactive = interactive;
    if (fail)
      throw sdbus::Error("org.freedesktop.DBus.Error.ServiceUnknown", "no polkit");
    return answer;
  }
};

bool denied(const Bouncer &b, const Caller &c, std::string_view method, std::optional<std::uint32_t> owner = {}) {
  try {
    b.authorize(c, method, {}, false, owner);
    return false;
  } catch (const core::Error &e) {
    EXPECT_EQ(e.code(), core::Errc::NotAuthorized);
    return true;
  }
}

} // namespace

TEST(Bouncer, EveryMutatingMethodMapsToItsAction) {
  const std::pair<const char *, const char *> expected[] = {
      {"Devices.Register", names::kActionManageDevices},   {"Devices.Unregister", names::kActionManageDevices},
      {"Device.BindVfio", names::kActionManageDevices},    {"Device.UnbindVfio", names::kActionManageDevices},
      {"Device.Restore", names::kActionManageDevices},     {"Devices.Reconcile", names::kActionReconcile},
      {"Instances.Create", names::kActionManageInstances}, {"Instances.Delete", names::kActionManageInstances},
      {"Instance.Delete", names::kActionManageInstances},
  };
  for (const auto &[method, action] : expected)
    EXPECT_STREQ(daemon::action_for(method), action) << method;
  EXPECT_EQ(daemon::action_map().size(), std::size(expected)) << "a method without a test";
}

TEST(Bouncer, UnknownMethodIsDeniedEvenForRoot) {
  EXPECT_EQ(daemon::action_for("Devices.ListAvailable"), nullptr);
  EXPECT_EQ(daemon::action_for("Devices.Explode"), nullptr);
  FakeAuthority polkit;
  polkit.answer = true;
  Bouncer b(&polkit);
  EXPECT_TRUE(denied(b, {":1.1", 0}, "Devices.Explode"));
  EXPECT_TRUE(denied(b, {":1.1", 1000}, "Devices.Explode"));
  EXPECT_EQ(polkit.calls, 0);
}

TEST(Bouncer, AsksPolkitWithSenderActionDetailsAndFlag) {
  FakeAuthority polkit;
  polkit.answer = true;
  Bouncer b(&polkit);
  b.authorize({":1.7", 1000}, "Device.BindVfio", {{"pci_address", "0000:01:00.0"}}, true);
  EXPECT_EQ(polkit.last_sender, ":1.7");
  EXPECT_EQ(polkit.last_action, names::kActionManageDevices);
  EXPECT_EQ(polkit.last_details.at("pci_address"), "0000:01:00.0");
  EXPECT_TRUE(polkit.last_interactive);
}

TEST(Bouncer, PolkitNoIsNotAuthorized) {
  FakeAuthority polkit;
  Bouncer b(&polkit);
  EXPECT_TRUE(denied(b, {":1.7", 1000}, "Devices.Register"));
}

TEST(Bouncer, PolkitFailingOrMissingDeniesAllButRoot) {
  FakeAuthority polkit;
  polkit.fail = true;
  Bouncer b(&polkit);
  EXPECT_TRUE(denied(b, {":1.7", 1000}, "Devices.Register"));
  EXPECT_FALSE(denied(b, {":1.7", 0}, "Devices.Register"));
  Bouncer none(nullptr);
  EXPECT_TRUE(denied(none, {":1.7", 1000}, "Instances.Create"));
  EXPECT_FALSE(denied(none, {":1.7", 0}, "Instances.Create"));
}

TEST(Bouncer, DeletingAnotherUsersInstanceNeedsManageAll) {
  EXPECT_STREQ(Bouncer::action("Instances.Delete", 1000, 1000), names::kActionManageInstances);
  EXPECT_STREQ(Bouncer::action("Instances.Delete", 1000, 1001), names::kActionManageAllInstances);
  EXPECT_STREQ(Bouncer::action("Instance.Delete", 1000, 0), names::kActionManageAllInstances);
  EXPECT_STREQ(Bouncer::action("Device.BindVfio", 1000, 0), names::kActionManageDevices);
  FakeAuthority polkit;
  polkit.answer = true;
  Bouncer b(&polkit);
  b.authorize({":1.9", 1000}, "Instance.Delete", {}, false, 1001u);
  EXPECT_EQ(polkit.last_action, names::kActionManageAllInstances);
}
