#include "cli/bus.hpp"

#include "names.hpp"

#include <algorithm>
#include <cctype>
#include <cstdint>

namespace hostdev::cli {

using nlohmann::json;

namespace {

template <class T> json array_json(const sdbus::Variant &v) {
  json a = json::array();
  for (const auto &x : v.get<std::vector<T>>())
    a.push_back(x);
  return a;
}

template <class T> json string_array_json(const sdbus::Variant &v) {
  json a = json::array();
  for (const auto &x : v.get<std::vector<T>>())
    a.push_back(std::string(x));
  return a;
}

std::string string_prop(const VariantMap &props, const char *key) {
  auto it = props.find(key);
  if (it == props.end() || !it->second.containsValueOfType<std::string>())
    return "";
  return it->second.get<std::string>();
}

} // namespace

json variant_json(const sdbus::Variant &v) {
  if (v.isEmpty())
    return nullptr;
  const std::string t = v.peekValueType();
  // clang-format off
  if (t == "b") return v.get<bool>();
  if (t == "y") return v.get<std::uint8_t>();
  if (t == "n") return v.get<std::int16_t>();
  if (t == "q") return v.get<std::uint16_t>();
  if (t == "i") return v.get<std::int32_t>();
  if (t == "u") return v.get<std::uint32_t>();
  if (t == "x") return v.get<std::int64_t>();
  if (t == "t") return v.get<std::uint64_t>();
  if (t == "d") return v.get<double>();
  if (t == "s") return v.get<std::string>();
  if (t == "o") return std::string(v.get<sdbus::ObjectPath>());
  if (t == "g") return std::string(v.get<sdbus::Signature>());
  if (t == "v") return variant_json(v.get<sdbus::Variant>());
  if (t == "as") return array_json<std::string>(v);
  if (t == "ao") return string_array_json<sdbus::ObjectPath>(v);
  if (t == "ai") return array_json<std::int32_t>(v);
  if (t == "au") return array_json<std::uint32_t>(v);
  if (t == "ax") return array_json<std::int64_t>(v);
  if (t == "at") return array_json<std::uint64_t>(v);
  if (t == "ab") return array_json<bool>(v);
  if (t == "a{sv}") return map_json(v.get<VariantMap>());
  if (t == "a{ss}") return json(v.get<std::map<std::string, std::string>>());
  // clang-format on
  if (t == "aa{sv}") {
    json a = json::array();
    for (const auto &m : v.get<std::vector<VariantMap>>())
      a.push_back(map_json(m));
    return a;
  }
  if (t == "av") {
    json a = json::array();
    for (const auto &x : v.get<std::vector<sdbus::Variant>>())
      a.push_back(variant_json(x));
    return a;
  }
  return "<value of D-Bus type " + t + ">";
}

json map_json(const VariantMap &m) {
  json o = json::object();
  for (const auto &[k, v] : m)
    o[k] = variant_json(v);
  return o;
}

std::string snake_case(const std::string &camel) {
  std::string out;
  for (std::size_t i = 0; i < camel.size(); ++i) {
    const auto c = static_cast<unsigned char>(camel[i]);
    if (std::isupper(c)) {
      if (i != 0)
        out += '_';
      out += static_cast<char>(std::tolower(c));
    } else {
      out += camel[i];
    }
  }
  return out;
}

json properties_json(const VariantMap &props) {
  json o = json::object();
  for (const auto &[k, v] : props) {
    json value = variant_json(v);
    const std::string t = v.isEmpty() ? "" : v.peekValueType();
    if ((t == "s" && value == "") || (t == "o" && value == "/") || (k == "IommuGroup" && value == -1))
      value = nullptr;
    o[snake_case(k)] = value;
  }
  return o;
}

RootProxy::RootProxy(sdbus::IConnection &connection) : ProxyInterfaces(connection, names::kBusName, names::kRootPath) {
  registerProxy();
}
RootProxy::~RootProxy() { unregisterProxy(); }

void RootProxy::onMdevCreated(const std::string &uuid, const std::string &profile, const std::string &parent,
                              const sdbus::ObjectPath &instance) {
  if (on_mdev_created)
    on_mdev_created(uuid, profile, parent, instance);
}
void RootProxy::onMdevDestroyed(const std::string &uuid, const sdbus::ObjectPath &instance) {
  if (on_mdev_destroyed)
    on_mdev_destroyed(uuid, instance);
}
void RootProxy::onMdevsReconciled(const VariantMap &stats) {
  if (on_mdevs_reconciled)
    on_mdevs_reconciled(stats);
}
void RootProxy::onVfQuarantined(const std::string &vf, const std::vector<std::string> &instance_ids) {
  if (on_vf_quarantined)
    on_vf_quarantined(vf, instance_ids);
}
void RootProxy::onInstanceStateChanged(const sdbus::ObjectPath &instance, const std::string &state,
                                       const std::string &reason) {
  if (on_instance_state_changed)
    on_instance_state_changed(instance, state, reason);
}
void RootProxy::onInterfacesAdded(const sdbus::ObjectPath &path, const std::map<std::string, VariantMap> &ifaces) {
  if (on_interfaces_added)
    on_interfaces_added(path, ifaces);
}
void RootProxy::onInterfacesRemoved(const sdbus::ObjectPath &path, const std::vector<std::string> &ifaces) {
  if (on_interfaces_removed)
    on_interfaces_removed(path, ifaces);
}

InstanceProxy::InstanceProxy(sdbus::IConnection &connection, const std::string &path)
    : ProxyInterfaces(connection, names::kBusName, path) {
  registerProxy();
}
InstanceProxy::~InstanceProxy() { unregisterProxy(); }

DeviceProxy::DeviceProxy(sdbus::IConnection &connection, const std::string &path)
    : ProxyInterfaces(connection, names::kBusName, path) {
  registerProxy();
}
DeviceProxy::~DeviceProxy() { unregisterProxy(); }

Objects Objects::fetch(RootProxy &root) {
  Objects objs;
  for (const auto &[path, ifaces] : root.GetManagedObjects()) {
    if (auto it = ifaces.find(names::kDeviceInterface); it != ifaces.end())
      objs.devices.push_back({path, it->second});
    if (auto it = ifaces.find(names::kInstanceInterface); it != ifaces.end())
      objs.instances.push_back({path, it->second});
  }
  auto by_name = [](const Object &a, const Object &b) {
    return string_prop(a.props, "Name") < string_prop(b.props, "Name");
  };
  std::sort(objs.devices.begin(), objs.devices.end(), by_name);
  std::sort(objs.instances.begin(), objs.instances.end(), by_name);
  return objs;
}

const Objects::Object *Objects::device(const std::string &path) const {
  for (const auto &o : devices)
    if (o.path == path)
      return &o;
  return nullptr;
}

const Objects::Object *Objects::instance(const std::string &path) const {
  for (const auto &o : instances)
    if (o.path == path)
      return &o;
  return nullptr;
}

std::string Objects::name_of(const std::string &path) const {
  if (path.empty() || path == "/")
    return "";
  const Object *o = device(path);
  if (o == nullptr)
    o = instance(path);
  if (o != nullptr) {
    auto name = string_prop(o->props, "Name");
    if (!name.empty())
      return name;
  }
  return path.substr(path.rfind('/') + 1);
}

json Objects::device_json(const Object &o) const {
  json j = properties_json(o.props);
  j["path"] = o.path;
  const auto attached = j.value("attached_to", json());
  j["attached_to_name"] = attached.is_string() ? json(name_of(attached.get<std::string>())) : json();
  return j;
}

json Objects::instance_json(const Object &o) const {
  json j = properties_json(o.props);
  j["path"] = o.path;
  json names = json::array();
  if (j.contains("devices") && j["devices"].is_array())
    for (const auto &p : j["devices"])
      names.push_back(name_of(p.get<std::string>()));
  j["device_names"] = names;
  return j;
}

} // namespace hostdev::cli
