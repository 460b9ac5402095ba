// Plain data -> D-Bus values (bus thread only: sdbus::Variant is built on the pseudo connection of sdbus-c++).
#pragma once

#include "core/service.hpp"

#include <nlohmann/json.hpp>
#include <sdbus-c++/Types.h>

#include <map>
#include <string>

namespace hostdev::daemon {

using VariantMap = std::map<std::string, sdbus::Variant>;

// JSON -> a{sv} value: string s, bool b, unsigned u (t when > 32 bits), integer i (x when > 32 bits), double d,
// array of strings as, array of numbers ai/au, array of objects aa{sv}, object a{sv}. Null has no D-Bus form:
// the caller leaves such keys out (json_object_to_map does).
sdbus::Variant json_to_variant(const nlohmann::json &value);
VariantMap json_object_to_map(const nlohmann::json &object);

// One ListAvailable entry: device_json (the keys of `hostdevctl inspect --json`) + registered (o).
VariantMap available_entry(const core::AvailableDevice &device);
VariantMap resources_map(const core::GpuResources &resources);
VariantMap report_map(const core::HostReport &report);
VariantMap stats_map(const core::ReconcileStats &stats);

} // namespace hostdev::daemon
