// Reply values kept between calls (the big reads): plain immutable data, serialized straight into each reply.
//
// Why not sdbus::Variant: every Variant is a whole sd-bus message of its own (a few hundred bytes of header and
// buffers for one boolean), re-read through its cursor on every serialization, and tied to the thread that
// built it. A ListAvailable({all}) of 4096 functions is 90 000 values: as Variants ~80 MB and ~100 ms per call;
// as Wire a few MB, serialized with one append per value, by any thread at once (it is never changed after it
// is built).
#pragma once

#include <nlohmann/json.hpp>
#include <sdbus-c++/Message.h>
#include <sdbus-c++/Types.h>

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace hostdev::daemon {

struct WireEntry;
using WireMap = std::vector<WireEntry>; // a{sv}, sorted by key, keys unique

struct Wire {
  std::variant<bool, std::uint32_t, std::int32_t, std::uint64_t, std::int64_t, double, std::string, sdbus::ObjectPath,
               std::vector<std::string>, std::vector<std::uint32_t>, std::vector<std::int32_t>, WireMap,
               std::vector<WireMap>>
      value;
  // The D-Bus signature of the value ("s", "aa{sv}", ...).
  const char *signature() const noexcept;
};

struct WireEntry {
  std::string key;
  Wire value;
};

// JSON -> D-Bus value, the one place of the rules: string s, bool b, unsigned u (t when > 32 bits), integer i
// (x when > 32 bits), double d, array of strings as, array of numbers ai/au, array of objects aa{sv}, object
// a{sv}, a mixed array its JSON text. Null has no D-Bus form: an object's null members are left out.
Wire wire_of(const nlohmann::json &value);
WireMap wire_map_of(const nlohmann::json &object);
// Adds or replaces `key` (keeps the map sorted).
void wire_set(WireMap &map, std::string key, Wire value);

// Serialization: a value as a variant (v), a map as a{sv}, a list of maps as aa{sv}.
void append_variant(sdbus::Message &msg, const Wire &value);
void append_map(sdbus::Message &msg, const WireMap &map);
void append_maps(sdbus::Message &msg, const std::vector<const WireMap *> &maps);

// The same value as sdbus-c++ Variants (bus thread only: see convert.hpp), for the small replies and properties.
sdbus::Variant to_variant(const Wire &value);
std::map<std::string, sdbus::Variant> to_variant_map(const WireMap &map);

} // namespace hostdev::daemon
