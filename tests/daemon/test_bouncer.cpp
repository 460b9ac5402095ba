#include "daemon/bouncer.hpp"

#include "core/error.hpp"
#include "names.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <set>
#include <stdexcept>

using namespace hostdev;
using daemon::Bouncer;
using daemon::Caller;

namespace {

struct FakeAuthority : daemon::Authority {
  bool answer = false;
  bool fail = false;
  bool hold = false; // keep the answer back, as polkit does while a person types a password
  int calls = 0;
  std::string last_sender, last_action;
  daemon::Details last_details;
  bool last_interactive = false;
  Answer held;
  void check(const std::string &sender, const std::string &action, const daemon::Details &details, bool interactive,
             const std::string &, Answer reply) override {
    ++calls;
    last_sender = sender;
    last_action = action;
    last_details = details;
    last_interactive = interactive;
    if (hold)
      held = reply;
    else if (fail)
      reply(false, "polkit failed: org.freedesktop.DBus.Error.ServiceUnknown: no polkit");
    else
      reply(answer, "");
  }
};

// The bouncer's verdict: nullopt while it has not answered; "" when allowed; else the refusal's message.
struct Verdict {
  std::optional<std::string> refusal;
  bool answered = false;
  int answers = 0;
};

std::shared_ptr<Verdict> ask(const Bouncer &b, const Caller &c, std::string_view method,
                             const daemon::Details &details = {}, bool interactive = false,
                             std::optional<std::uint32_t> owner = {}) {
  auto v = std::make_shared<Verdict>();
  b.authorize(c, method, details, interactive, owner, [v](std::exception_ptr refused) {
    v->answered = true;
    ++v->answers;
    if (!refused)
      return;
    try {
      std::rethrow_exception(refused);
    } catch (const core::Error &e) {
      EXPECT_EQ(e.code(), core::Errc::NotAuthorized);
      v->refusal = e.what();
    }
  });
  return v;
}

bool denied(const Bouncer &b, const Caller &c, std::string_view method, std::optional<std::uint32_t> owner = {}) {
  auto v = ask(b, c, method, {}, false, owner);
  EXPECT_TRUE(v->answered);
  EXPECT_EQ(v->answers, 1);
  return v->refusal.has_value();
}

} // namespace

TEST(Bouncer, EveryMutatingMethodMapsToItsAction) {
  const std::pair<const char *, const char *> expected[] = {
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
  EXPECT_FALSE(ask(b, {":1.7", 1000}, "Device.BindVfio", {{"pci_address", "0000:01:00.0"}}, true)->refusal);
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
  EXPECT_FALSE(ask(b, {":1.9", 1000}, "Instance.Delete", {}, false, 1001u)->refusal);
  EXPECT_EQ(polkit.last_action, names::kActionManageAllInstances);
}

TEST(Bouncer, TheAnswerMayComeLaterAndComesOnce) {
  FakeAuthority polkit;
  polkit.hold = true;
  Bouncer b(&polkit);
  auto v = ask(b, {":1.7", 1000}, "Devices.Register", {}, true);
  EXPECT_FALSE(v->answered) << "nothing is decided while polkit has not answered";
  ASSERT_TRUE(polkit.held);
  polkit.held(false, "");
  EXPECT_TRUE(v->answered);
  EXPECT_EQ(v->answers, 1);
  ASSERT_TRUE(v->refusal);
  EXPECT_NE(v->refusal->find(names::kActionManageDevices), std::string::npos) << *v->refusal;
}

TEST(Bouncer, AFailingPolkitIsNamedInTheRefusal) {
  FakeAuthority polkit;
  polkit.fail = true;
  Bouncer b(&polkit);
  auto v = ask(b, {":1.7", 1000}, "Devices.Register");
  ASSERT_TRUE(v->refusal);
  EXPECT_NE(v->refusal->find("polkit failed"), std::string::npos) << *v->refusal;
  EXPECT_NE(v->refusal->find("interactive=true"), std::string::npos) << "a non-interactive caller is told how";
}
