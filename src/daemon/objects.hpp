// The bus objects of hostdevd (bus thread only, see worker.hpp): the root object (ObjectManager, Devices, Instances)
// and one object per registered device and per instance, created and removed as the snapshot changes, with
// InterfacesAdded/InterfacesRemoved, PropertiesChanged on every change, and the Mdev* signals.
#pragma once

#include "daemon/bouncer.hpp"
#include "daemon/convert.hpp"
#include "daemon/replier.hpp"
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

// Runs on the bus thread once the work is done (sends the method reply).
using Reply = std::function<void()>;

// Every mutating method takes this one shape: the bus thread resolves and validates the arguments against the
// model and fills in the method (for its polkit action) and the canonical details polkit rules see; the daemon
// then asks polkit (asynchronously) and queues `work` only once the caller is allowed.
struct Mutation {
  std::string method;                          // "Devices.Register": the bouncer's key
  Details details;                             // canonical: normalized address, names and ids, profile name and type id
  std::optional<std::uint32_t> instance_owner; // the Delete methods: the owner of the instance
  bool interactive = false;
  // What the work touches (see Worker::submit): work on other keys goes on while this one waits for the kernel.
  std::vector<std::string> keys;
  // Worker thread: the change itself, for a caller who has been allowed; throws to fail.
  std::function<Reply(core::Service &, const Caller &)> work;
  // Bus thread: sends the error reply.
  std::function<void(const sdbus::Error &)> fail;
};

// The daemon as the objects see it (bus thread only).
class Backend {
public:
  virtual ~Backend() = default;
  virtual const Snapshot &snapshot() = 0; // the current model (may queue a refresh when it is old)
  // Authorizes `mutation` for `sender` (a unique bus name) and then queues it for the worker; every failure
  // ends in mutation.fail.
  virtual void submit(const std::string &sender, Mutation mutation) = 0;
};

// The worker keys of work on a whole instance: the instance, its vGPU and its devices (Delete, Restore, a lease's
// end).
std::vector<std::string> instance_keys(const Snapshot &snap, const core::InstanceRecord &rec);

class RootObject;
class DeviceObject;
class InstanceObject;

class Objects {
public:
  // `replier` sends the big replies; it must outlive the objects.
  Objects(sdbus::IConnection &connection, Backend &backend, Replier &replier);
  ~Objects();
  Objects(const Objects &) = delete;
  Objects &operator=(const Objects &) = delete;

  // The root object with its ObjectManager; child objects come with apply().
  void export_root();
  // Replaces the model: new objects first (InterfacesAdded), then PropertiesChanged, then removals
  // (InterfacesRemoved).
  void apply(Snapshot next);
  void emit(const std::vector<PendingSignal> &signals);
  // Destroys the objects apply() announced as removed, and the snapshot it replaced. Called after the method
  // reply: a reply to a call on an object must be sent while the object is still registered (sd-bus refuses it
  // otherwise), and freeing a big host's snapshot need not delay it.
  void bury();

  const Snapshot &current() const noexcept { return current_; }

  // The replies of the big reads, built once per change (apply), so that a call only serializes them.
  // ListAvailable's is plain data (wire.hpp), shared with the replier thread (replier.hpp), which sends the big
  // ones; the small maps are Variants, serialized on the bus thread.
  struct Available {
    // Every function, in the model's order. Shared with the Available before when the function did not change:
    // a mutation or uevent converts only the functions it changed.
    std::vector<std::shared_ptr<const WireMap>> entries;
    std::vector<const WireMap *> all, gpus; // into entries: ListAvailable({all: true}) and ListAvailable({})
  };
  struct Replies {
    std::shared_ptr<const Available> available = std::make_shared<Available>();
    VariantMap resources, report;
  };
  const Replies &replies() const noexcept { return replies_; }

private:
  sdbus::IConnection &connection_;
  Backend &backend_;
  Replier &replier_;
  Snapshot current_;
  Replies replies_;
  std::unique_ptr<RootObject> root_;
  std::map<std::string, std::unique_ptr<DeviceObject>> devices_;
  std::map<std::string, std::unique_ptr<InstanceObject>> instances_;
  std::vector<std::unique_ptr<DeviceObject>> dead_devices_;
  std::vector<std::unique_ptr<InstanceObject>> dead_instances_;
  std::vector<Snapshot> retired_; // what apply replaced, until bury
};

} // namespace hostdev::daemon
