// The one mapping from D-Bus error names to exit codes and hints, and the error line.
#include "cli/bus.hpp"
#include "cli/errors.hpp"

#include <gtest/gtest.h>

#include <sstream>

using namespace hostdev::cli;

namespace {
const std::string P = "org.hostdev.Passthrough1.Error.";
}

TEST(ExitCodes, EveryHostdevError) {
  const std::map<std::string, int> want{
      {"NotFound", 3},
      {"NameExists", 5},
      {"AlreadyExists", 5},
      {"InvalidName", 2},
      {"InvalidPciAddress", 2},
      {"DeviceNotFound", 3},
      {"InUse", 5},
      {"NotBound", 5},
      {"AlreadyBound", 5},
      {"VfioUnavailable", 7},
      {"IommuUnavailable", 7},
      {"IommuGroupConflict", 5},
      {"ProfileUnavailable", 7},
      {"NoCapacity", 7},
      {"Timeout", 6},
      {"NotAuthorized", 4},
      {"InvalidArgument", 2},
      {"KernelError", 6},
  };
  for (const auto &[name, code] : want) {
    const auto c = classify_error(P + name);
    EXPECT_EQ(c.exit_code, code) << name;
    EXPECT_EQ(c.short_name, name);
    EXPECT_FALSE(c.hint.empty()) << name;
  }
  EXPECT_EQ(classify_error(P + "SomethingNew").exit_code, 1);
}

TEST(ExitCodes, BusErrors) {
  EXPECT_EQ(classify_error("org.freedesktop.DBus.Error.ServiceUnknown").exit_code, kExitNoDaemon);
  EXPECT_EQ(classify_error("org.freedesktop.DBus.Error.NameHasNoOwner").exit_code, kExitNoDaemon);
  EXPECT_EQ(classify_error("org.freedesktop.DBus.Error.Spawn.ChildExited").exit_code, kExitNoDaemon);
  EXPECT_EQ(classify_error("org.freedesktop.DBus.Error.NoReply").exit_code, kExitKernel);
  EXPECT_EQ(classify_error("org.freedesktop.DBus.Error.AccessDenied").exit_code, kExitNotAuthorized);
  EXPECT_EQ(classify_error("org.freedesktop.DBus.Error.UnknownObject").exit_code, kExitNotFound);
  EXPECT_EQ(classify_error("org.freedesktop.DBus.Error.UnknownMethod").exit_code, kExitFailure);
  EXPECT_EQ(classify_error("").exit_code, kExitFailure);
}

TEST(ErrorLine, OneLineWithNameAndHint) {
  std::ostringstream err;
  EXPECT_EQ(report_error(err, "bind gpu0", P + "NotAuthorized", "not authorized to bind gpu0.\n"), 4);
  EXPECT_EQ(err.str(), "hostdevctl: bind gpu0: not authorized to bind gpu0 [NotAuthorized]; hint: run as root or "
                       "join group hostdev (see README)\n");
}

TEST(Json, SnakeCase) {
  EXPECT_EQ(snake_case("PciAddress"), "pci_address");
  EXPECT_EQ(snake_case("CloudHypervisorArgs"), "cloud_hypervisor_args");
  EXPECT_EQ(snake_case("Id"), "id");
}

TEST(Json, PropertiesNullRules) {
  VariantMap p{{"Driver", sdbus::Variant(std::string())},
               {"AttachedTo", sdbus::Variant(sdbus::ObjectPath("/"))},
               {"IommuGroup", sdbus::Variant(std::int32_t{-1})},
               {"Name", sdbus::Variant(std::string("gpu0"))},
               {"BoundToVfio", sdbus::Variant(true)},
               {"CreatedAt", sdbus::Variant(std::uint64_t{1700000000000000})},
               {"QemuArgs", sdbus::Variant(std::vector<std::string>{"-device", "x"})},
               {"Devices", sdbus::Variant(std::vector<sdbus::ObjectPath>{sdbus::ObjectPath("/a/b")})}};
  const auto j = properties_json(p);
  EXPECT_TRUE(j["driver"].is_null());
  EXPECT_TRUE(j["attached_to"].is_null());
  EXPECT_TRUE(j["iommu_group"].is_null());
  EXPECT_EQ(j["name"], "gpu0");
  EXPECT_EQ(j["bound_to_vfio"], true);
  EXPECT_EQ(j["created_at"], 1700000000000000u);
  EXPECT_EQ(j["qemu_args"], nlohmann::json({"-device", "x"}));
  EXPECT_EQ(j["devices"], nlohmann::json({"/a/b"}));
}

TEST(Json, NestedMaps) {
  VariantMap inner{{"name", sdbus::Variant(std::string("p"))}, {"available", sdbus::Variant(std::uint32_t{3})}};
  VariantMap m{{"profiles", sdbus::Variant(std::vector<VariantMap>{inner})},
               {"problems", sdbus::Variant(std::vector<std::string>{})},
               {"stats", sdbus::Variant(inner)}};
  const auto j = map_json(m);
  EXPECT_EQ(j["profiles"][0]["available"], 3);
  EXPECT_TRUE(j["problems"].is_array());
  EXPECT_EQ(j["stats"]["name"], "p");
}
