// What reads are answered from: taken on the worker from the live host model (core/model.hpp) after each mutation
// and after each batch of uevents, applied on the bus thread (see worker.hpp). Plain C++ data only: sdbus values are
// made on the bus thread (see convert.hpp).
#pragma once

#include "core/service.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace hostdev::daemon {

struct DeviceView {
  core::DeviceRecord record;
  std::string driver; // "" when none
  std::string vendor_name;
  std::string device_name;
  std::string sysfs_path;

  bool operator==(const DeviceView &) const = default;
};

struct InstanceView {
  core::InstanceRecord record;
  core::InstancePaths paths;

  bool operator==(const InstanceView &) const = default;
};

struct Snapshot {
  core::HostReport report;
  std::vector<core::AvailableDevice> available; // every function (ListAvailable all=true); GPUs filtered on read
  core::GpuResources resources;
  std::map<std::string, DeviceView> devices;     // by id
  std::map<std::string, InstanceView> instances; // by id
  std::chrono::steady_clock::time_point taken{};
  // Bumped by Objects::apply for every snapshot that differs from the one before (Devices.Generation).
  std::uint64_t generation = 0;
  // Whether the host or the records are the same, `available` (which Objects::apply compares entry by entry),
  // taken and generation aside.
  bool same_besides_available(const Snapshot &other) const {
    return report == other.report && resources == other.resources && devices == other.devices &&
           instances == other.instances;
  }
};

// One reading of the host (Service::host_view) plus the store's records.
Snapshot take_snapshot(const core::Service &service, const core::Sysfs &sysfs);

// By id, else by name: InvalidName, NotFound.
const DeviceView &find_device(const Snapshot &snap, const std::string &ref);
const InstanceView &find_instance(const Snapshot &snap, const std::string &ref);

// Object paths.
std::string device_path(const std::string &id);
std::string instance_path(const std::string &id);

// What core::Events reported during one job, replayed as bus signals by the bus thread.
struct PendingSignal {
  enum class Kind {
    MdevCreated,
    MdevDestroyed,
    Reconciled,
    VfQuarantined,
    InstanceStateChanged
  } kind = Kind::MdevCreated;
  std::string uuid, profile, parent, instance_id; // VfQuarantined: parent is the VF
  std::vector<std::string> instance_ids;          // VfQuarantined
  std::string state, reason;                      // InstanceStateChanged
  core::ReconcileStats stats;
};

// core::Events on the worker: collects signals for the bus thread (device/instance changes need no collecting:
// the snapshot diff announces them).
class EventQueue : public core::Events {
public:
  void mdev_created(const std::string &uuid, const std::string &profile, const std::string &parent,
                    const std::string &instance_id) override;
  void mdev_destroyed(const std::string &uuid, const std::string &instance_id) override;
  void reconciled(const core::ReconcileStats &stats) override;
  void vf_quarantined(const std::string &vf, const std::vector<std::string> &instances) override;
  void instance_state_changed(const std::string &instance_id, const std::string &state,
                              const std::string &reason) override;
  std::vector<PendingSignal> take();

private:
  std::vector<PendingSignal> pending_;
};

} // namespace hostdev::daemon
