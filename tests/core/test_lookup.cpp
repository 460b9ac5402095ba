#include "core/lookup.hpp"

#include "fixtures/test_util.hpp"

#include <gtest/gtest.h>

#include <map>
#include <string>

using namespace hostdev::core;
using hostdev::test::error_code_of;

namespace {

struct Thing {
  std::string name;
};
const std::string kIdA = "0123456789abcdef0123456789abcdef";
const std::string kIdB = "fedcba9876543210fedcba9876543210";
const std::string &name_of(const Thing &t) { return t.name; }

} // namespace

TEST(Lookup, ByIdThenByName) {
  std::map<std::string, Thing> things{{kIdA, {"alpha"}}, {kIdB, {"beta"}}};
  EXPECT_EQ(&find_by_id_or_name(things, kIdA, "thing", name_of), &things.at(kIdA));
  EXPECT_EQ(&find_by_id_or_name(things, "beta", "thing", name_of), &things.at(kIdB));
  EXPECT_EQ(lookup_by_id_or_name(things, "gamma", name_of), nullptr);
}

TEST(Lookup, AnIdWinsOverANameSpelledLikeIt) {
  std::map<std::string, Thing> things{{kIdA, {"alpha"}}, {kIdB, {kIdA}}};
  EXPECT_EQ(&find_by_id_or_name(things, kIdA, "thing", name_of), &things.at(kIdA));
}

TEST(Lookup, BadReferencesAndMissesAreTypedErrors) {
  std::map<std::string, Thing> things{{kIdA, {"alpha"}}};
  std::string message;
  EXPECT_EQ(error_code_of([&] { find_by_id_or_name(things, "../etc", "thing", name_of); }, &message),
            Errc::InvalidName);
  EXPECT_NE(message.find("neither a thing id nor a valid thing name"), std::string::npos) << message;
  EXPECT_EQ(
      error_code_of([&] { find_by_id_or_name(things, std::string(5000, 'x') + "/", "thing", name_of); }, &message),
      Errc::InvalidName);
  EXPECT_LT(message.size(), 200u) << "the echo of a long reference is bounded";
  EXPECT_EQ(error_code_of([&] { find_by_id_or_name(things, "omega", "thing", name_of); }, &message), Errc::NotFound);
  EXPECT_EQ(message, "no thing 'omega'");
}
