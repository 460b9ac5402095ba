// The bus objects of hostdevd (bus thread only): the root object (ObjectManager, Devices, Instances) and one
// object per registered device and per instance, created and removed as the snapshot changes, with
// InterfacesAdded/InterfacesRemoved, PropertiesChanged on every change, and the Mdev* signals.
#pragma once

#include "daemon/bouncer.hpp"
#include "daemon/snapshot.hpp"

#include <sdbus-c++/IConnection.h>
#include <sdbus-c++/Error.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hostdev::daemon {

// What a job sees on the worker thread.
struct WorkContext {
  core::Service &service;
  const Bouncer &bouncer;
  Caller caller;
  bool interactive = false;
  bool touched = false; // the job got past authorization (or is internal): take a new snapshot afterwards

  void authorize(std::string_view method, const Details &details,
                 std::optional<std::uint32_t> instance_owner = std::nullopt) {
    bouncer.authorize(caller, method, details, interactive, instance_owner);
    touched = true;
  }
};

// Runs on the bus thread once the job is done (sends the method reply).
using Reply = std::function<void()>;

struct Job {
  std::string sender;       // the caller's unique name; "" for internal jobs (no uid lookup, no authorization)
  bool interactive = false;
  std::function<Reply(WorkContext &)> work;           // worker thread; throws to fail
  std::function<void(const sdbus::Error &)> fail;     // bus thread; sends the error reply
};

// The daemon as the objects see it.
class Backend {
public:
  virtual ~Backend() = default;
  virtual const Snapshot &snapshot() = 0; // the current model (may queue a refresh when it is old)
  virtual void submit(Job job) = 0;       // queue a mutation for the worker
};

class RootObject;
class DeviceObject;
class InstanceObject;

class Objects {
public:
  Objects(sdbus::IConnection &connection, Backend &backend);
  ~Objects();
  Objects(const Objects &) = delete;
  Objects &operator=(const Objects &) = delete;

  // The root object with its ObjectManager; child objects come with apply().
  void export_root();
  // Replaces the model: new objects first (InterfacesAdded), then PropertiesChanged, then removals
  // (InterfacesRemoved).
  void apply(Snapshot next);
  void emit(const std::vector<PendingSignal> &signals);
  // Destroys the objects apply() announced as removed. Called after the method reply: a reply to a call on an
  // object must be sent while the object is still registered (sd-bus refuses it otherwise).
  void bury();

  const Snapshot &current() const noexcept { return current_; }

private:
  sdbus::IConnection &connection_;
  Backend &backend_;
  Snapshot current_;
  std::unique_ptr<RootObject> root_;
  std::map<std::string, std::unique_ptr<DeviceObject>> devices_;
  std::map<std::string, std::unique_ptr<InstanceObject>> instances_;
  std::vector<std::unique_ptr<DeviceObject>> dead_devices_;
  std::vector<std::unique_ptr<InstanceObject>> dead_instances_;
};

} // namespace hostdev::daemon
