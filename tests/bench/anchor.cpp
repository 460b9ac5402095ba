// bench-anchor: the floor of the bus benchmark, a trivial sdbus-c++ service on org.hostdev.BenchAnchor.
//   Capture(as specs): calls each read of hostdevd once ("Devices.ListAvailable", "Devices.ListAvailable+all",
//     "ObjectManager.GetManagedObjects", "Properties.GetAll:Devices", see bus_bench.c) and keeps its reply;
//   L0, M1, ... (the kind of reply, then the spec's index): answer with the kept values, serialized again per call: a
//   reply of the same shape and size as
//     hostdevd's, with no work behind it but sdbus-c++'s. Peer.Ping is sd-bus's own.
// Test code only: bus-activated by the benchmark's private bus (tests/bench/bus-bench.sh).
#include <sdbus-c++/sdbus-c++.h>

#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace {

constexpr const char *kName = "org.hostdev.BenchAnchor";
constexpr const char *kPath = "/org/hostdev/BenchAnchor";
constexpr const char *kIface = "org.hostdev.BenchAnchor";
constexpr const char *kHostdev = "org.hostdev.Passthrough1";
constexpr const char *kRoot = "/org/hostdev/Passthrough1";

using Options = std::map<std::string, sdbus::Variant>;

// One read of hostdevd, by spec.
sdbus::MethodReply call_hostdev(sdbus::IProxy &proxy, const std::string &spec) {
  const auto dot = spec.find('.');
  const auto group = spec.substr(0, dot);
  auto method = spec.substr(dot + 1);
  std::string arg;
  if (const auto sep = method.find_first_of("+:"); sep != std::string::npos) {
    arg = method.substr(sep + 1);
    method = method.substr(0, sep);
  }
  if (group == "ObjectManager") {
    auto call = proxy.createMethodCall("org.freedesktop.DBus.ObjectManager", method);
    return proxy.callMethod(call);
  }
  if (group == "Properties") {
    auto call = proxy.createMethodCall("org.freedesktop.DBus.Properties", method);
    const auto colon = arg.find(':'); // "Devices:Generation" for Get
    call << (std::string("org.hostdev.Passthrough1.") + arg.substr(0, colon));
    if (colon != std::string::npos)
      call << arg.substr(colon + 1);
    return proxy.callMethod(call);
  }
  auto call = proxy.createMethodCall(std::string("org.hostdev.Passthrough1.") + group, method);
  Options opts;
  if (arg == "all")
    opts["all"] = sdbus::Variant(true);
  if (method == "ListAvailable")
    call << opts;
  return proxy.callMethod(call);
}

} // namespace

// A kept reply, as sdbus-c++ values of its shape: serialized again for every call, as a real service does.
struct Kept {
  char kind = 0; // 'L' aa{sv}, 'M' a{sv}, 'O' ao, 'G' a{oa{sa{sv}}}, 'V' v
  std::vector<Options> list;
  Options map;
  std::vector<sdbus::ObjectPath> paths;
  std::map<sdbus::ObjectPath, std::map<std::string, Options>> objects;
  sdbus::Variant value;
};

Kept keep(sdbus::MethodReply reply, const std::string &spec) {
  Kept k;
  if (spec.find("ListAvailable") != std::string::npos)
    k.kind = 'L', reply >> k.list;
  else if (spec.find("GetManagedObjects") != std::string::npos)
    k.kind = 'G', reply >> k.objects;
  else if (spec.find("ListDevices") != std::string::npos || spec.find("ListInstances") != std::string::npos)
    k.kind = 'O', reply >> k.paths;
  else if (spec.find("Properties.Get:") != std::string::npos)
    k.kind = 'V', reply >> k.value;
  else
    k.kind = 'M', reply >> k.map;
  return k;
}

int main() {
  auto conn = sdbus::createSystemBusConnection(kName);
  auto client = sdbus::createSystemBusConnection();
  auto proxy = sdbus::createProxy(*client, kHostdev, kRoot);
  auto object = sdbus::createObject(*conn, kPath);
  std::vector<Kept> kept;
  object->registerMethod(kIface, "Capture", "as", "u", [&](sdbus::MethodCall call) {
    std::vector<std::string> specs;
    call >> specs;
    if (specs.size() > 32)
      throw sdbus::Error("org.hostdev.BenchAnchor.Error", "at most 32 specs");
    kept.clear();
    for (const auto &s : specs)
      kept.push_back(keep(call_hostdev(*proxy, s), s));
    auto reply = call.createReply();
    reply << static_cast<std::uint32_t>(kept.size());
    reply.send();
  });
  // sd-bus enforces the declared reply signature: one method per kind and index ("L0", "M3" ...).
  const std::pair<char, const char *> kinds[] = {
      {'L', "aa{sv}"}, {'M', "a{sv}"}, {'O', "ao"}, {'G', "a{oa{sa{sv}}}"}, {'V', "v"}};
  for (const auto &[kind, signature] : kinds)
    for (unsigned i = 0; i < 32; ++i)
      object->registerMethod(kIface, std::string(1, kind) + std::to_string(i), "", signature,
                             [&kept, i, kind = kind](sdbus::MethodCall call) {
                               if (i >= kept.size() || kept[i].kind != kind)
                                 throw sdbus::Error("org.hostdev.BenchAnchor.Error", "not captured so");
                               const auto &k = kept[i];
                               auto reply = call.createReply();
                               switch (k.kind) {
                               case 'L': reply << k.list; break;
                               case 'G': reply << k.objects; break;
                               case 'O': reply << k.paths; break;
                               case 'V': reply << k.value; break;
                               default: reply << k.map; break;
                               }
                               reply.send();
                             });
  object->finishRegistration();
  conn->enterEventLoop();
  return 0;
}
