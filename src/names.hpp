// Every bus, object, interface, error and polkit action name of hostdev, in one place.
#pragma once

namespace hostdev::names {

inline constexpr const char *kBusName = "org.hostdev.Passthrough1";
inline constexpr const char *kRootPath = "/org/hostdev/Passthrough1";
inline constexpr const char *kDevicesPathPrefix = "/org/hostdev/Passthrough1/devices/";
inline constexpr const char *kInstancesPathPrefix = "/org/hostdev/Passthrough1/instances/";

inline constexpr const char *kDevicesInterface = "org.hostdev.Passthrough1.Devices";
inline constexpr const char *kInstancesInterface = "org.hostdev.Passthrough1.Instances";
inline constexpr const char *kDeviceInterface = "org.hostdev.Passthrough1.Device";
inline constexpr const char *kInstanceInterface = "org.hostdev.Passthrough1.Instance";
inline constexpr const char *kErrorPrefix = "org.hostdev.Passthrough1.Error.";

inline constexpr const char *kActionManageDevices = "org.hostdev.passthrough1.manage-devices";
inline constexpr const char *kActionManageInstances = "org.hostdev.passthrough1.manage-instances";
inline constexpr const char *kActionManageAllInstances = "org.hostdev.passthrough1.manage-all-instances";
inline constexpr const char *kActionReconcile = "org.hostdev.passthrough1.reconcile";

inline constexpr const char *kDaemon = "hostdevd";
inline constexpr const char *kCli = "hostdevctl";
inline constexpr const char *kUnit = "hostdevd.service";
inline constexpr const char *kDefaultStateDir = "/var/lib/hostdev";

} // namespace hostdev::names
