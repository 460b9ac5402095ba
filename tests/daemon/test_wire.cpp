#include "daemon/wire.hpp"

#include "daemon/convert.hpp"

#include <gtest/gtest.h>
#include <sdbus-c++/sdbus-c++.h>

#include <thread>

// Exported by libsdbus-c++ 1.2 (a public declaration only from 2.0 on): a message on no bus, to serialize into.
namespace sdbus {
PlainMessage createPlainMessage();
}

using namespace hostdev::daemon;
using json = nlohmann::json;

namespace {

std::string signature(const json &value) { return wire_of(value).signature(); }

// `map` serialized straight (as a reply is) and read back as sdbus-c++ Variants.
VariantMap round_trip(const WireMap &map) {
  auto msg = sdbus::createPlainMessage();
  append_map(msg, map);
  msg.seal();
  VariantMap out;
  msg >> out;
  return out;
}

json device() {
  return {{"pci_address", "0000:01:00.0"},
          {"is_gpu", true},
          {"numa_node", -1},
          {"iommu_group", 7u},
          {"big", 5000000000u},
          {"virtfns", json::array({"0000:01:00.1", "0000:01:00.2"})},
          {"driver", nullptr},
          {"empty", json::array()},
          {"ratio", 0.5},
          {"nested", {{"a", 1u}}},
          {"types", json::array({{{"name", "A"}}, {{"name", "B"}}})}};
}

} // namespace

TEST(Wire, TypeRulesFollowTheJsonKinds) {
  EXPECT_EQ(signature("x"), "s");
  EXPECT_EQ(signature(true), "b");
  EXPECT_EQ(signature(7u), "u");
  EXPECT_EQ(signature(4294967296u), "t");
  EXPECT_EQ(signature(-1), "i");
  EXPECT_EQ(signature(static_cast<std::int64_t>(-4294967296LL)), "x");
  EXPECT_EQ(signature(0.5), "d");
  EXPECT_EQ(signature(json::array()), "as");
  EXPECT_EQ(signature(json::array({"a"})), "as");
  EXPECT_EQ(signature(json::array({1u, 2u})), "au");
  EXPECT_EQ(signature(json::array({-1, 2})), "ai");
  EXPECT_EQ(signature(json::array({{{"k", 1u}}})), "aa{sv}");
  EXPECT_EQ(signature(json{{"k", 1u}}), "a{sv}");
  const auto mixed = wire_of(json::array({1u, "a"}));
  EXPECT_EQ(std::get<std::string>(mixed.value), "[1,\"a\"]");
}

TEST(Wire, NullMembersAreLeftOutAndKeysStaySorted) {
  const auto map = wire_map_of(device());
  for (const auto &e : map)
    EXPECT_NE(e.key, "driver");
  EXPECT_TRUE(std::is_sorted(map.begin(), map.end(), [](const auto &a, const auto &b) { return a.key < b.key; }));
}

TEST(Wire, SetAddsInOrderAndReplaces) {
  auto map = wire_map_of(device());
  const auto size = map.size();
  wire_set(map, "registered", {sdbus::ObjectPath("/")});
  wire_set(map, "is_gpu", {false});
  EXPECT_EQ(map.size(), size + 1);
  EXPECT_TRUE(std::is_sorted(map.begin(), map.end(), [](const auto &a, const auto &b) { return a.key < b.key; }));
  const auto back = round_trip(map);
  EXPECT_EQ(back.at("registered").get<sdbus::ObjectPath>(), "/");
  EXPECT_FALSE(back.at("is_gpu").get<bool>());
}

// What a client reads from a reply serialized straight from Wire is what the Variants of the same value say.
TEST(Wire, SerializedStraightReadsBackAsTheVariantsWould) {
  const auto map = wire_map_of(device());
  const auto back = round_trip(map);
  const auto variants = to_variant_map(map);
  ASSERT_EQ(back.size(), variants.size());
  for (const auto &[key, value] : variants) {
    ASSERT_TRUE(back.count(key)) << key;
    EXPECT_EQ(back.at(key).peekValueType(), value.peekValueType()) << key;
  }
  EXPECT_EQ(back.at("pci_address").get<std::string>(), "0000:01:00.0");
  EXPECT_TRUE(back.at("is_gpu").get<bool>());
  EXPECT_EQ(back.at("numa_node").get<std::int32_t>(), -1);
  EXPECT_EQ(back.at("iommu_group").get<std::uint32_t>(), 7u);
  EXPECT_EQ(back.at("big").get<std::uint64_t>(), 5000000000u);
  EXPECT_DOUBLE_EQ(back.at("ratio").get<double>(), 0.5);
  EXPECT_EQ(back.at("virtfns").get<std::vector<std::string>>(),
            (std::vector<std::string>{"0000:01:00.1", "0000:01:00.2"}));
  EXPECT_TRUE(back.at("empty").get<std::vector<std::string>>().empty());
  EXPECT_EQ(back.at("nested").get<VariantMap>().at("a").get<std::uint32_t>(), 1u);
  const auto types = back.at("types").get<std::vector<VariantMap>>();
  ASSERT_EQ(types.size(), 2u);
  EXPECT_EQ(types[1].at("name").get<std::string>(), "B");
}

TEST(Wire, AListOfMapsIsAnArrayOfDictionaries) {
  const auto a = wire_map_of(json{{"n", 1u}}), b = wire_map_of(json{{"n", 2u}});
  auto msg = sdbus::createPlainMessage();
  append_maps(msg, {&a, &b, &a});
  msg.seal();
  std::vector<VariantMap> out;
  msg >> out;
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[1].at("n").get<std::uint32_t>(), 2u);
  EXPECT_EQ(out[2].at("n").get<std::uint32_t>(), 1u);
}

// The convert.hpp functions keep their rules: they are Wire's.
TEST(Wire, JsonToVariantUsesTheSameRules) {
  const auto v = json_object_to_map(device());
  EXPECT_EQ(v.at("big").peekValueType(), "t");
  EXPECT_EQ(v.at("types").peekValueType(), "aa{sv}");
  EXPECT_FALSE(v.count("driver"));
}
