// `hostdevctl monitor`: the daemon's signals, live, one line each with a timestamp, until SIGINT/SIGTERM.
#include "cli/bus.hpp"
#include "cli/commands.hpp"
#include "cli/errors.hpp"

#include "names.hpp"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <ctime>
#include <poll.h>
#include <sys/signalfd.h>
#include <unistd.h>

namespace hostdev::cli {

using nlohmann::json;

namespace {

std::string timestamp() {
  const auto now = std::chrono::system_clock::now();
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
  const std::time_t t = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char date[32], zone[8];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
  std::strftime(zone, sizeof zone, "%z", &tm);
  char ms[8];
  std::snprintf(ms, sizeof ms, ".%03d", static_cast<int>((us / 1000) % 1000));
  return std::string(date) + ms + zone;
}

// key=value pairs of a JSON object, values as compact JSON.
std::string pairs(const nlohmann::ordered_json &o) {
  std::string s;
  for (const auto &[k, v] : o.items())
    s += " " + k + "=" + v.dump();
  return s;
}

class Printer {
public:
  Printer(std::ostream &out, bool as_json) : out_(out), json_(as_json) {}

  // One event: `fields` are the signal's arguments, in their order.
  void emit(const std::string &signal, const std::string &path, const nlohmann::ordered_json &fields) {
    const auto time = timestamp();
    if (json_) {
      nlohmann::ordered_json line{{"time", time}, {"signal", signal}, {"path", path}};
      for (const auto &[k, v] : fields.items())
        line[k] = v;
      out_ << line.dump() << std::endl;
    } else {
      out_ << time << ' ' << signal << ' ' << path << pairs(fields) << std::endl;
    }
  }

private:
  std::ostream &out_;
  bool json_;
};

} // namespace

int run_monitor(const Invocation &inv, std::ostream &out, std::ostream &err) {
  // Signals are read from a signalfd in the loop below, so that the last line is always complete.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  const int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
  if (sfd < 0) {
    err << "hostdevctl: monitor: signalfd failed\n";
    return kExitFailure;
  }

  std::unique_ptr<sdbus::IConnection> conn;
  try {
    conn = connect_bus(inv.bus);
  } catch (const sdbus::Error &e) {
    close(sfd);
    err << "hostdevctl: cannot connect to the " << inv.bus << " bus: " << e.getMessage()
        << "; hint: is dbus running? (--bus ADDRESS for another bus)\n";
    return kExitNoDaemon;
  }

  Printer print(out, inv.json);
  int rc = kExitOk;
  try {
    RootProxy root(*conn);
    root.on_mdev_created = [&](const std::string &uuid, const std::string &profile, const std::string &parent,
                               const sdbus::ObjectPath &instance) {
      print.emit("MdevCreated", names::kRootPath,
                 {{"uuid", uuid}, {"profile", profile}, {"parent", parent}, {"instance", std::string(instance)}});
    };
    root.on_mdev_destroyed = [&](const std::string &uuid, const sdbus::ObjectPath &instance) {
      print.emit("MdevDestroyed", names::kRootPath, {{"uuid", uuid}, {"instance", std::string(instance)}});
    };
    root.on_mdevs_reconciled = [&](const VariantMap &stats) {
      print.emit("MdevsReconciled", names::kRootPath, {{"stats", map_json(stats)}});
    };
    root.on_vf_quarantined = [&](const std::string &vf, const std::vector<std::string> &instance_ids) {
      print.emit("VfQuarantined", names::kRootPath, {{"vf", vf}, {"instance_ids", instance_ids}});
    };
    root.on_instance_state_changed = [&](const sdbus::ObjectPath &instance, const std::string &state,
                                         const std::string &reason) {
      print.emit("InstanceStateChanged", names::kRootPath,
                 {{"instance", std::string(instance)}, {"state", state}, {"reason", reason}});
    };
    root.on_interfaces_added = [&](const sdbus::ObjectPath &path, const std::map<std::string, VariantMap> &ifaces) {
      json j = json::object();
      for (const auto &[iface, props] : ifaces)
        if (iface.rfind("org.freedesktop.DBus.", 0) != 0)
          j[iface] = properties_json(props);
      print.emit("InterfacesAdded", path, {{"interfaces", j}});
    };
    root.on_interfaces_removed = [&](const sdbus::ObjectPath &path, const std::vector<std::string> &ifaces) {
      json j = json::array();
      for (const auto &iface : ifaces)
        if (iface.rfind("org.freedesktop.DBus.", 0) != 0)
          j.push_back(iface);
      print.emit("InterfacesRemoved", path, {{"interfaces", j}});
    };
    // PropertiesChanged of the root and of every device and instance object, present and future.
    auto props_slot = conn->addMatch(
        std::string("type='signal',sender='") + names::kBusName +
            "',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',path_namespace='" +
            names::kRootPath + "'",
        [&](sdbus::Message &msg) {
          std::string iface;
          VariantMap changed;
          std::vector<std::string> invalidated;
          msg >> iface >> changed >> invalidated;
          print.emit("PropertiesChanged", msg.getPath(),
                     {{"interface", iface}, {"changed", properties_json(changed)}, {"invalidated", invalidated}});
        });
    // hostdevd coming and going (bus activation, restarts).
    auto owner_slot =
        conn->addMatch(std::string("type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
                                   "member='NameOwnerChanged',arg0='") +
                           names::kBusName + "'",
                       [&](sdbus::Message &msg) {
                         std::string name, old_owner, new_owner;
                         msg >> name >> old_owner >> new_owner;
                         print.emit("NameOwnerChanged", "/org/freedesktop/DBus",
                                    {{"name", name}, {"owner", new_owner.empty() ? json() : json(new_owner)}});
                       });
    err << "Monitoring " << names::kBusName << " on "
        << (inv.bus == "system" || inv.bus == "session" ? "the " + inv.bus + " bus" : "bus " + inv.bus)
        << "; Ctrl-C stops." << std::endl;

    for (;;) {
      while (conn->processPendingRequest()) {
      }
      const auto pd = conn->getEventLoopPollData();
      int timeout = -1;
      if (const auto rel = pd.getRelativeTimeout(); rel)
        timeout = static_cast<int>(std::min<long long>((rel->count() + 999) / 1000, 60000));
      pollfd fds[2] = {{pd.fd, pd.events, 0}, {sfd, POLLIN, 0}};
      const int r = poll(fds, 2, timeout);
      if (r < 0 && errno != EINTR)
        throw std::runtime_error("poll failed");
      if (fds[1].revents & POLLIN)
        break;
      if (fds[0].revents & (POLLHUP | POLLERR))
        throw sdbus::Error("org.freedesktop.DBus.Error.Disconnected", "the bus connection was closed");
    }
  } catch (const sdbus::Error &e) {
    rc = report_error(err, "monitor", e.getName(), e.getMessage());
  } catch (const std::exception &e) {
    rc = report_error(err, "monitor", "", e.what());
  }
  close(sfd);
  return rc;
}

} // namespace hostdev::cli
