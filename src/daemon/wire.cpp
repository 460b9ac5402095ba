#include "daemon/wire.hpp"

#include <algorithm>
#include <limits>
#include <type_traits>

namespace hostdev::daemon {

namespace {

template <class T> constexpr const char *signature_of() {
  if constexpr (std::is_same_v<T, bool>)
    return "b";
  else if constexpr (std::is_same_v<T, std::uint32_t>)
    return "u";
  else if constexpr (std::is_same_v<T, std::int32_t>)
    return "i";
  else if constexpr (std::is_same_v<T, std::uint64_t>)
    return "t";
  else if constexpr (std::is_same_v<T, std::int64_t>)
    return "x";
  else if constexpr (std::is_same_v<T, double>)
    return "d";
  else if constexpr (std::is_same_v<T, std::string>)
    return "s";
  else if constexpr (std::is_same_v<T, sdbus::ObjectPath>)
    return "o";
  else if constexpr (std::is_same_v<T, std::vector<std::string>>)
    return "as";
  else if constexpr (std::is_same_v<T, std::vector<std::uint32_t>>)
    return "au";
  else if constexpr (std::is_same_v<T, std::vector<std::int32_t>>)
    return "ai";
  else if constexpr (std::is_same_v<T, WireMap>)
    return "a{sv}";
  else
    return "aa{sv}";
}

template <class T> void append_list(sdbus::Message &msg, const std::vector<T> &items) {
  msg.openContainer(signature_of<T>());
  for (const auto &item : items)
    msg << item;
  msg.closeContainer();
}

} // namespace

const char *Wire::signature() const noexcept {
  return std::visit([](const auto &v) { return signature_of<std::decay_t<decltype(v)>>(); }, value);
}

Wire wire_of(const nlohmann::json &value) {
  using json = nlohmann::json;
  switch (value.type()) {
  case json::value_t::string: return {value.get<std::string>()};
  case json::value_t::boolean: return {value.get<bool>()};
  case json::value_t::number_unsigned: {
    const auto v = value.get<std::uint64_t>();
    if (v <= std::numeric_limits<std::uint32_t>::max())
      return {static_cast<std::uint32_t>(v)};
    return {v};
  }
  case json::value_t::number_integer: {
    const auto v = value.get<std::int64_t>();
    if (v >= std::numeric_limits<std::int32_t>::min() && v <= std::numeric_limits<std::int32_t>::max())
      return {static_cast<std::int32_t>(v)};
    return {v};
  }
  case json::value_t::number_float: return {value.get<double>()};
  case json::value_t::object: return {wire_map_of(value)};
  case json::value_t::array: {
    bool strings = true, objects = true, unsigneds = true, integers = true;
    for (const auto &item : value) {
      strings = strings && item.is_string();
      objects = objects && item.is_object();
      unsigneds = unsigneds && item.is_number_unsigned();
      integers = integers && item.is_number_integer();
    }
    if (strings)
      return {value.get<std::vector<std::string>>()}; // also the empty array: "as"
    if (objects) {
      std::vector<WireMap> out;
      out.reserve(value.size());
      for (const auto &item : value)
        out.push_back(wire_map_of(item));
      return {std::move(out)};
    }
    if (unsigneds)
      return {value.get<std::vector<std::uint32_t>>()};
    if (integers)
      return {value.get<std::vector<std::int32_t>>()};
    return {value.dump()}; // mixed arrays do not occur in our documents; keep them readable
  }
  case json::value_t::null:
  case json::value_t::binary:
  case json::value_t::discarded: break;
  }
  return {std::string()};
}

WireMap wire_map_of(const nlohmann::json &object) {
  WireMap out;
  out.reserve(object.size());
  for (const auto &[key, value] : object.items()) // nlohmann's objects iterate sorted by key
    if (!value.is_null())
      out.push_back({key, wire_of(value)});
  return out;
}

void wire_set(WireMap &map, std::string key, Wire value) {
  auto it =
      std::lower_bound(map.begin(), map.end(), key, [](const WireEntry &e, const std::string &k) { return e.key < k; });
  if (it != map.end() && it->key == key)
    it->value = std::move(value);
  else
    map.insert(it, {std::move(key), std::move(value)});
}

void append_variant(sdbus::Message &msg, const Wire &value) {
  msg.openVariant(value.signature());
  std::visit(
      [&](const auto &v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, WireMap>)
          append_map(msg, v);
        else if constexpr (std::is_same_v<T, std::vector<WireMap>>) {
          msg.openContainer("a{sv}");
          for (const auto &m : v)
            append_map(msg, m);
          msg.closeContainer();
        } else if constexpr (std::is_same_v<T, std::vector<std::string>> ||
                             std::is_same_v<T, std::vector<std::uint32_t>> ||
                             std::is_same_v<T, std::vector<std::int32_t>>)
          append_list(msg, v);
        else
          msg << v;
      },
      value.value);
  msg.closeVariant();
}

void append_map(sdbus::Message &msg, const WireMap &map) {
  msg.openContainer("{sv}");
  for (const auto &entry : map) {
    msg.openDictEntry("sv");
    msg << entry.key;
    append_variant(msg, entry.value);
    msg.closeDictEntry();
  }
  msg.closeContainer();
}

void append_maps(sdbus::Message &msg, const std::vector<const WireMap *> &maps) {
  msg.openContainer("a{sv}");
  for (const auto *map : maps)
    append_map(msg, *map);
  msg.closeContainer();
}

sdbus::Variant to_variant(const Wire &value) {
  return std::visit(
      [](const auto &v) -> sdbus::Variant {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, WireMap>)
          return sdbus::Variant(to_variant_map(v));
        else if constexpr (std::is_same_v<T, std::vector<WireMap>>) {
          std::vector<std::map<std::string, sdbus::Variant>> out;
          out.reserve(v.size());
          for (const auto &m : v)
            out.push_back(to_variant_map(m));
          return sdbus::Variant(out);
        } else
          return sdbus::Variant(v);
      },
      value.value);
}

std::map<std::string, sdbus::Variant> to_variant_map(const WireMap &map) {
  std::map<std::string, sdbus::Variant> out;
  for (const auto &entry : map)
    out.emplace(entry.key, to_variant(entry.value));
  return out;
}

} // namespace hostdev::daemon
