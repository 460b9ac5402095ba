#include "core/error.hpp"
#include "core/ids.hpp"
#include "core/validate.hpp"

#include "fixtures/test_util.hpp"

#include <gtest/gtest.h>

#include <set>

using namespace hostdev::core;

using hostdev::test::error_code_of;

TEST(PciAddress, NormalisesToLowerCase) {
  EXPECT_EQ(normalize_pci_address("0000:A2:00.0"), "0000:a2:00.0");
  EXPECT_EQ(normalize_pci_address("ffff:ff:1f.7"), "ffff:ff:1f.7");
}

TEST(PciAddress, RejectsEverythingElse) {
  for (const char *bad : {"", "0000:a2:00", "a2:00.0", "0000:a2:00.8", "0000:a2:00.0 ", " 0000:a2:00.0", "0000-a2-00.0",
                          "0000:g2:00.0", "0000:a2:000.0", "../../etc/passwd", "0000:a2:00.0/..", "00000:a2:00.0"}) {
    EXPECT_FALSE(is_pci_address(bad)) << bad;
    EXPECT_EQ(error_code_of([&] { normalize_pci_address(bad); }), Errc::InvalidPciAddress) << bad;
  }
}

TEST(PciAddress, ErrorMessageNamesTheInputAndTheForm) {
  try {
    normalize_pci_address("nope");
    FAIL();
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("'nope'"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("0000:a2:00.0"), std::string::npos);
  }
}

TEST(Names, FollowThePattern) {
  for (const std::string &good : {std::string("gpu0"), std::string("my-gpu"), std::string("a.b_c-d"), std::string("0x"),
                                  std::string("L4"), std::string(64, 'a')})
    EXPECT_TRUE(is_valid_name(good)) << good;
  for (const std::string &bad : {std::string(""), std::string("a"), std::string("-gpu"), std::string(".gpu"),
                                 std::string("_gpu"), std::string("gpu/0"), std::string("gpu 0"), std::string("../x"),
                                 std::string("gpü"), std::string("gpu\n"), std::string(65, 'a')}) {
    EXPECT_FALSE(is_valid_name(bad)) << bad;
    EXPECT_EQ(error_code_of([&] { validate_name(bad); }), Errc::InvalidName) << bad;
  }
}

TEST(Names, ANameMayNotLookLikeAnObjectId) {
  // Lookups try the id first: a name spelled like another object's id would be shadowed by it (or shadow it).
  for (const std::string &id_like :
       {std::string("0123456789abcdef0123456789abcdef"), std::string("0123456789ABCDEF0123456789ABCDEF")}) {
    EXPECT_FALSE(is_valid_name(id_like)) << id_like;
    EXPECT_EQ(error_code_of([&] { validate_name(id_like); }), Errc::InvalidName);
  }
  EXPECT_TRUE(is_valid_name("0123456789abcdef0123456789abcde")) << "31 hex digits are no id";
  EXPECT_TRUE(is_valid_name("0123456789abcdef0123456789abcdefg"));
}

TEST(Names, DefaultDeviceName) { EXPECT_EQ(default_device_name("0000:a2:00.0"), "pci-0000-a2-00-0"); }

TEST(Uuid, Validates) {
  EXPECT_EQ(normalize_uuid("83B8F4F2-509F-382F-3C1E-E6BFE0FA1001"), "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001");
  for (const char *bad : {"", "83b8f4f2509f382f3c1ee6bfe0fa1001", "83b8f4f2-509f-382f-3c1e-e6bfe0fa100",
                          "83b8f4f2-509f-382f-3c1e-e6bfe0fa100g", "../83b8f4f2-509f-382f-3c1e-e6bfe0fa1"}) {
    EXPECT_FALSE(is_uuid(bad)) << bad;
    EXPECT_EQ(error_code_of([&] { normalize_uuid(bad); }), Errc::InvalidArgument) << bad;
  }
}

TEST(Components, RefuseEscapes) {
  for (const char *bad : {"", ".", "..", "a/b", "a b", "x\x01"})
    EXPECT_EQ(error_code_of([&] { validate_component(bad, "type"); }), Errc::InvalidArgument) << bad;
  EXPECT_NO_THROW(validate_component("nvidia-1155", "type"));
}

TEST(Ids, AreFreshAndWellFormed) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    auto id = new_object_id();
    EXPECT_TRUE(is_object_id(id)) << id;
    auto uuid = new_uuid();
    EXPECT_TRUE(is_uuid(uuid)) << uuid;
    EXPECT_EQ(uuid, normalize_uuid(uuid));
    EXPECT_TRUE(seen.insert(id).second);
    EXPECT_TRUE(seen.insert(uuid).second);
  }
  EXPECT_FALSE(is_object_id("ABCDEF0123456789abcdef0123456789"));
  EXPECT_GT(now_usec(), 1600000000000000u);
}

TEST(Errors, EveryCodeHasItsDesignName) {
  EXPECT_EQ(errc_name(Errc::NotFound), "NotFound");
  EXPECT_EQ(errc_name(Errc::IommuGroupConflict), "IommuGroupConflict");
  EXPECT_EQ(errc_name(Errc::KernelError), "KernelError");
  std::set<std::string_view> names;
  for (int c = 0; c <= static_cast<int>(Errc::KernelError); ++c)
    names.insert(errc_name(static_cast<Errc>(c)));
  EXPECT_EQ(names.size(), 18u);
}

TEST(Utf8, ValidTextPassesAndEveryBadByteIsEscaped) {
  EXPECT_EQ(to_valid_utf8("vfio-pci"), "vfio-pci");
  EXPECT_EQ(to_valid_utf8("gp\xc3\xbc \xe2\x82\xac \xf0\x9f\x98\x80"), "gp\xc3\xbc \xe2\x82\xac \xf0\x9f\x98\x80");
  EXPECT_EQ(to_valid_utf8("\xff\xfe"), "\\xff\\xfe");
  EXPECT_EQ(to_valid_utf8("a\xc3"), "a\\xc3") << "a sequence cut short";
  EXPECT_EQ(to_valid_utf8("\xc0\xaf"), "\\xc0\\xaf") << "an overlong '/'";
  EXPECT_EQ(to_valid_utf8("\xed\xa0\x80"), "\\xed\\xa0\\x80") << "a UTF-16 surrogate";
  EXPECT_EQ(to_valid_utf8("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80") << "above U+10FFFF";
  EXPECT_EQ(to_valid_utf8(std::string("a\0b", 3)), "a\\x00b") << "D-Bus strings hold no NUL";
  EXPECT_EQ(to_valid_utf8("\xf0\xbf\xbf\xbf"), "\\xf0\\xbf\\xbf\\xbf") << "U+3FFFF, a noncharacter sd-bus refuses";
  EXPECT_EQ(to_valid_utf8("\xef\xb7\x90"), "\\xef\\xb7\\x90") << "U+FDD0";
  EXPECT_EQ(to_valid_utf8("\xef\xbf\xbd"), "\xef\xbf\xbd") << "U+FFFD is a character";
}

TEST(MemorySize, MebibytesByDefaultAndBinaryUnits) {
  EXPECT_EQ(parse_memory_size("2048"), std::optional<std::uint64_t>(2048ULL << 20));
  EXPECT_EQ(parse_memory_size("512M"), std::optional<std::uint64_t>(512ULL << 20));
  EXPECT_EQ(parse_memory_size("8g"), std::optional<std::uint64_t>(8ULL << 30));
  EXPECT_EQ(parse_memory_size("1T"), std::optional<std::uint64_t>(1ULL << 40));
  EXPECT_EQ(parse_memory_size("65536K"), std::optional<std::uint64_t>(64ULL << 20));
  EXPECT_EQ(parse_memory_size("1024T"), std::optional<std::uint64_t>(1ULL << 50));
  for (const char *bad : {"", "0", "0G", "G", "-1", "1.5G", "8GB", "8 G", "1025T", "99999999999999999999", " 8"})
    EXPECT_EQ(parse_memory_size(bad), std::nullopt) << bad;
}
