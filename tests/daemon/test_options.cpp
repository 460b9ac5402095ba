#include "daemon/options.hpp"

#include "core/error.hpp"

#include <gtest/gtest.h>

using namespace hostdev;
using daemon::Options;

namespace {
core::Error parse_error(const Options::Map &in, const std::vector<daemon::OptionSpec> &allowed) {
  try {
    Options::parse(in, allowed);
  } catch (const core::Error &e) {
    return e;
  }
  ADD_FAILURE() << "no error";
  return core::Error(core::Errc::KernelError, "none");
}
} // namespace

TEST(Options, EmptyIsFine) {
  auto o = Options::parse({}, {});
  EXPECT_FALSE(o.interactive());
  EXPECT_FALSE(o.get_bool("all", false));
  EXPECT_EQ(o.get_string("image", "none"), "none");
  EXPECT_TRUE(o.get_strings("devices").empty());
}

TEST(Options, InteractiveAcceptedEverywhere) {
  auto o = Options::parse({{"interactive", sdbus::Variant(true)}}, {});
  EXPECT_TRUE(o.interactive());
}

TEST(Options, KnownKeysOfTheRightType) {
  auto o = Options::parse({{"all", sdbus::Variant(true)},
                           {"image", sdbus::Variant(std::string("debian"))},
                           {"devices", sdbus::Variant(std::vector<std::string>{"a", "b"})}},
                          {{"all", "b"}, {"image", "s"}, {"devices", "as"}});
  EXPECT_TRUE(o.get_bool("all", false));
  EXPECT_EQ(o.get_string("image"), "debian");
  EXPECT_EQ(o.get_strings("devices"), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(o.has("image"));
  EXPECT_FALSE(o.interactive());
}

TEST(Options, UnknownKeyIsInvalidArgumentNamingIt) {
  auto e = parse_error({{"bogus", sdbus::Variant(true)}}, {{"all", "b"}});
  EXPECT_EQ(e.code(), core::Errc::InvalidArgument);
  EXPECT_NE(std::string(e.what()).find("'bogus'"), std::string::npos);
  EXPECT_NE(std::string(e.what()).find("all"), std::string::npos) << "lists the known keys";
}

TEST(Options, WrongTypeIsInvalidArgumentNamingKeyAndTypes) {
  auto e = parse_error({{"all", sdbus::Variant(std::string("yes"))}}, {{"all", "b"}});
  EXPECT_EQ(e.code(), core::Errc::InvalidArgument);
  EXPECT_NE(std::string(e.what()).find("'all'"), std::string::npos);
  EXPECT_NE(std::string(e.what()).find("'b'"), std::string::npos);
  EXPECT_NE(std::string(e.what()).find("'s'"), std::string::npos);
}

TEST(Options, InteractiveOfWrongTypeIsRefused) {
  auto e = parse_error({{"interactive", sdbus::Variant(std::uint32_t{1})}}, {});
  EXPECT_EQ(e.code(), core::Errc::InvalidArgument);
  EXPECT_NE(std::string(e.what()).find("'interactive'"), std::string::npos);
}

TEST(Options, StringArrayIsNotAString) {
  auto e = parse_error({{"devices", sdbus::Variant(std::string("gpu0"))}}, {{"devices", "as"}});
  EXPECT_EQ(e.code(), core::Errc::InvalidArgument);
}

TEST(Options, ALongKeyIsEchoedWithinBounds) {
  const std::string key(64 * 1024, 'k');
  try {
    Options::parse({{key, sdbus::Variant(true)}}, {});
    FAIL() << "accepted";
  } catch (const hostdev::core::Error &e) {
    EXPECT_EQ(e.code(), hostdev::core::Errc::InvalidArgument);
    EXPECT_LT(std::string(e.what()).size(), 200u);
  }
}
