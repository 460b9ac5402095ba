// Looking an object up by what a caller calls it: its 32-hex id, else its unique name. One way for the store,
// the use cases and the daemon's model alike.
#pragma once

#include "core/error.hpp"

#include <string>
#include <string_view>

namespace hostdev::core {

// Throws Error(InvalidName) when `ref` is neither an object id nor a valid name. `what`: "device", "instance".
void validate_ref(std::string_view ref, std::string_view what);

// The value of `map` (keyed by id) whose key is `ref`, else the one whose name_of(value) is `ref`; nullptr.
template <class Map, class NameOf>
const typename Map::mapped_type *lookup_by_id_or_name(const Map &map, const std::string &ref, NameOf name_of) {
  if (auto it = map.find(ref); it != map.end())
    return &it->second;
  for (const auto &[id, value] : map)
    if (name_of(value) == ref)
      return &value;
  return nullptr;
}

// As lookup_by_id_or_name, after validate_ref; Error(NotFound) "no <what> '<ref>'" when nothing matches.
template <class Map, class NameOf>
const typename Map::mapped_type &find_by_id_or_name(const Map &map, const std::string &ref, std::string_view what,
                                                    NameOf name_of) {
  validate_ref(ref, what);
  if (const auto *found = lookup_by_id_or_name(map, ref, name_of))
    return *found;
  fail(Errc::NotFound, "no " + std::string(what) + " '" + ref + "'");
}

} // namespace hostdev::core
