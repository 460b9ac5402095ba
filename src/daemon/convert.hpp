// Plain data -> D-Bus values (bus thread only: sdbus::Variant is built on the pseudo connection of sdbus-c++).
#pragma once

#include "core/service.hpp"
#include "daemon/wire.hpp"

#include <nlohmann/json.hpp>
#include <sdbus-c++/Types.h>

#include <map>
#include <string>

namespace hostdev::daemon {

using VariantMap = std::map<std::string, sdbus::Variant>;

// JSON -> a{sv} value, by the rules of wire_of (wire.hpp). Null has no D-Bus form: the caller leaves such keys
// out (json_object_to_map does).
sdbus::Variant json_to_variant(const nlohmann::json &value);
VariantMap json_object_to_map(const nlohmann::json &object);

// One ListAvailable entry: device_json (the keys of `hostdevctl inspect --json`) + registered (o).
WireMap available_entry(const core::AvailableDevice &device);
VariantMap resources_map(const core::GpuResources &resources);
VariantMap report_map(const core::HostReport &report);
VariantMap stats_map(const core::ReconcileStats &stats);

} // namespace hostdev::daemon
