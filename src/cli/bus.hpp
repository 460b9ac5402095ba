// hostdevctl's side of the bus: the connection, the generated proxies, and D-Bus values as JSON.
#pragma once

#include "common/bus.hpp"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wold-style-cast"
#include "org_hostdev_passthrough1_proxy.h"
#pragma GCC diagnostic pop

#include <sdbus-c++/sdbus-c++.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace hostdev::cli {

using VariantMap = std::map<std::string, sdbus::Variant>;
using ManagedObjects = std::map<sdbus::ObjectPath, std::map<std::string, VariantMap>>;

// Any D-Bus value hostdev uses, as JSON (object paths and signatures become strings).
nlohmann::json variant_json(const sdbus::Variant &v);
nlohmann::json map_json(const VariantMap &m);
// "PciAddress" -> "pci_address"
std::string snake_case(const std::string &camel);
// The properties of a Device or Instance object as JSON: keys in snake_case; "" and "/" become null, and so does
// IommuGroup -1.
nlohmann::json properties_json(const VariantMap &props);

using common::connect_bus;
using common::valid_bus_option;

namespace gen = org::hostdev::Passthrough1;

// The root object: Devices, Instances and the ObjectManager. The signal hooks are for `monitor`.
class RootProxy final
    : public sdbus::ProxyInterfaces<gen::Devices_proxy, gen::Instances_proxy, sdbus::ObjectManager_proxy> {
public:
  explicit RootProxy(sdbus::IConnection &connection);
  ~RootProxy();
  RootProxy(const RootProxy &) = delete;
  RootProxy &operator=(const RootProxy &) = delete;

  std::function<void(const std::string &, const std::string &, const std::string &, const sdbus::ObjectPath &)>
      on_mdev_created;
  std::function<void(const std::string &, const sdbus::ObjectPath &)> on_mdev_destroyed;
  std::function<void(const VariantMap &)> on_mdevs_reconciled;
  std::function<void(const std::string &, const std::vector<std::string> &)> on_vf_quarantined;
  std::function<void(const sdbus::ObjectPath &, const std::string &, const std::string &)> on_instance_state_changed;
  std::function<void(const sdbus::ObjectPath &, const std::map<std::string, VariantMap> &)> on_interfaces_added;
  std::function<void(const sdbus::ObjectPath &, const std::vector<std::string> &)> on_interfaces_removed;

private:
  void onMdevCreated(const std::string &uuid, const std::string &profile, const std::string &parent,
                     const sdbus::ObjectPath &instance) override;
  void onMdevDestroyed(const std::string &uuid, const sdbus::ObjectPath &instance) override;
  void onMdevsReconciled(const VariantMap &stats) override;
  void onVfQuarantined(const std::string &vf, const std::vector<std::string> &instance_ids) override;
  void onInstanceStateChanged(const sdbus::ObjectPath &instance, const std::string &state,
                              const std::string &reason) override;
  void onInterfacesAdded(const sdbus::ObjectPath &path, const std::map<std::string, VariantMap> &ifaces) override;
  void onInterfacesRemoved(const sdbus::ObjectPath &path, const std::vector<std::string> &ifaces) override;
};

class InstanceProxy final : public sdbus::ProxyInterfaces<gen::Instance_proxy> {
public:
  InstanceProxy(sdbus::IConnection &connection, const std::string &path);
  ~InstanceProxy();
  InstanceProxy(const InstanceProxy &) = delete;
  InstanceProxy &operator=(const InstanceProxy &) = delete;
};

class DeviceProxy final : public sdbus::ProxyInterfaces<gen::Device_proxy> {
public:
  DeviceProxy(sdbus::IConnection &connection, const std::string &path);
  ~DeviceProxy();
  DeviceProxy(const DeviceProxy &) = delete;
  DeviceProxy &operator=(const DeviceProxy &) = delete;
};

// A snapshot of every device and instance object with its properties (one GetManagedObjects call).
struct Objects {
  struct Object {
    std::string path;
    VariantMap props;
  };
  std::vector<Object> devices;   // sorted by Name
  std::vector<Object> instances; // sorted by Name

  static Objects fetch(RootProxy &root);
  const Object *device(const std::string &path) const;
  const Object *instance(const std::string &path) const;
  // The Name property of a device or instance object; the last path element when unknown; "" for "/".
  std::string name_of(const std::string &path) const;
  // properties_json plus "path" and the resolved names ("attached_to_name"; "device_names").
  nlohmann::json device_json(const Object &o) const;
  nlohmann::json instance_json(const Object &o) const;
};

} // namespace hostdev::cli
