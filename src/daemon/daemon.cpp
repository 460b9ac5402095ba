// The daemon: start-up, the bus thread's loop, and the path of a mutation from the call to the worker and back
// (the threading model is written down in worker.hpp).
#include "daemon/daemon.hpp"

#include "common/bus.hpp"
#include "core/error.hpp"
#include "core/pci.hpp"
#include "core/process.hpp"
#include "core/service.hpp"
#include "core/store.hpp"
#include "daemon/bouncer.hpp"
#include "daemon/errors.hpp"
#include "daemon/log.hpp"
#include "daemon/monitor.hpp"
#include "daemon/objects.hpp"
#include "daemon/snapshot.hpp"
#include "daemon/units.hpp"
#include "daemon/worker.hpp"
#include "names.hpp"

#include <sdbus-c++/sdbus-c++.h>

#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <mutex>
#include <utility>
#include <map>
#include <memory>
#include <vector>
#include <optional>
#include <set>
#include <unordered_map>

namespace hostdev::daemon {
namespace {

void give_back_freed_memory() noexcept {
  // A new model, snapshot and set of replies replaced the old ones: what they held is free but stays in the heap
  // below live blocks, and glibc returns the top of the heap only. malloc_trim also hands back the free pages in
  // the middle (MADV_DONTNEED): 0.6 MB of the vGPU fixture's 5.3 MB heap after start. ~0.1 ms for a heap of a
  // few MB, and each page handed back is faulted in and zeroed again by the next snapshot: so it is done once the
  // changes stop (kTrimAfter), never per read.
  malloc_trim(0);
}

// How long after the last new snapshot the freed heap is given back: a burst of mutations reuses it instead
// (on the 4096-function host, trimming after each one was a third of a Register's CPU, zeroing fresh pages).
constexpr auto kTrimAfter = std::chrono::milliseconds(200);

constexpr auto kRescanPeriod = std::chrono::seconds(30); // only when uevents cannot be had
// Authorization checks of one uid that may each wait for a person (interactive=true) at the same time.
constexpr unsigned kMaxInteractivePerUid = 4;
// Worker threads: mutations of unrelated devices go on while one waits for the kernel (see worker.hpp).
constexpr unsigned kWorkers = 4;
// How long a lease's end waits for a dead VMM's devices to be closed before it gives up (and logs the holders).
constexpr auto kLeaseHolderWait = std::chrono::seconds(10);
// A mutation that waited this long for a worker asks the bus driver whether its caller is still there (see queue).
constexpr auto kQueueWaitRechecked = std::chrono::milliseconds(20);

class Daemon final : public Backend {
public:
  Daemon(const DaemonOptions &options, core::Sysfs::WriteHook hook)
      : started_(std::chrono::steady_clock::now()), options_(options), sysfs_(options.sysfs_root),
        store_(options.state_dir.empty() ? std::string(names::kDefaultStateDir) : options.state_dir) {
    if (hook)
      sysfs_.set_write_hook(std::move(hook));
  }

  int run() {
    mark_bus_thread();
    for (const auto &w : store_.load())
      log(Level::Warning, "store: " + w, {{"HOSTDEV_STATE_DIR", store_.dir()}});
    names_ = core::make_hwdb_names();

    bus_ = common::connect_bus(options_.bus);
    worker_bus_ = common::connect_bus(options_.bus);
    bus_driver_ = sdbus::createProxy(*bus_, "org.freedesktop.DBus", "/org/freedesktop/DBus");
    worker_bus_driver_ = sdbus::createProxy(*worker_bus_, "org.freedesktop.DBus", "/org/freedesktop/DBus");
    units_ = std::make_unique<SystemdUnits>(*worker_bus_);
    authority_ = std::make_unique<PolkitAuthority>(*bus_);
    bouncer_ = std::make_unique<Bouncer>(authority_.get());
    // Callers who leave: NameOwnerChanged with an empty new owner.
    name_lost_ = bus_->addMatch(
        "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',interface='org.freedesktop.DBus',"
        "member='NameOwnerChanged',arg2=''",
        [this](sdbus::Message &msg) {
          std::string name, old_owner, new_owner;
          msg >> name >> old_owner >> new_owner;
          if (!name.empty() && name[0] == ':' && new_owner.empty())
            caller_left(name);
        });
    core::ServiceOptions service_options;
    service_options.deadline = options_.write_timeout;
    service_options.restore_wait = options_.restore_wait;
    service_options.memlock_max_per_user = options_.memlock_max != 0 ? options_.memlock_max : core::memory_total() / 2;
    service_ = std::make_unique<core::Service>(sysfs_, store_, *names_, units_.get(), &events_, service_options);

    // The uevents first, then the reading: a change between the two is seen twice rather than never.
    // Kernel uevents describe the real /sys only; over another root a test may play the kernel on a socket.
    try {
      if (sysfs_.root() == "/") {
        monitor_ = std::make_unique<UeventMonitor>();
        log(Level::Info, "watching kernel uevents for PCI and mdev changes");
      } else if (!options_.uevent_socket.empty()) {
        monitor_ = std::make_unique<UeventMonitor>(options_.uevent_socket);
        log(Level::Info, "taking uevents for the fixture tree from " + options_.uevent_socket);
      } else {
        log(Level::Notice, "no uevents for sysfs root " + sysfs_.root() +
                               ": changes made outside hostdev are not seen until a rescan");
      }
    } catch (const std::exception &e) {
      rescan_period_ = true;
      log(Level::Warning, std::string("cannot watch uevents (") + e.what() + "): the whole host is read again every " +
                              std::to_string(kRescanPeriod.count()) + " s instead");
    }
    // The host, read once: start-up's restore and reconcile work from it; afterwards only what they wrote, and what
    // uevents name, is read again.
    const auto reading = std::chrono::steady_clock::now();
    service_->update_model(core::ModelChange::all());
    const auto read = std::chrono::steady_clock::now();

    // Restore after a reboot (or finish a restore cut short), then reconcile, before anyone can call: a unit
    // ordered after hostdevd.service (Type=dbus) starts only once this is done.
    const auto startup = service_->start_up();
    for (const auto &note : startup.notes)
      log(Level::Notice, "start-up: " + note);
    if (startup.new_boot)
      log(startup.degraded ? Level::Warning : Level::Info,
          "restored after a reboot: " + std::to_string(startup.active) + " instances active, " +
              std::to_string(startup.degraded) + " degraded, " + std::to_string(startup.dropped) +
              " non-persistent dropped",
          {{"HOSTDEV_RESTORE_ACTIVE", std::to_string(startup.active)},
           {"HOSTDEV_RESTORE_DEGRADED", std::to_string(startup.degraded)}});
    const auto &stats = startup.reconcile;
    log(stats.errors.empty() ? Level::Info : Level::Warning,
        "reconciled: " + std::to_string(stats.destroyed) + " mdevs destroyed, " +
            std::to_string(stats.skipped_not_ours) + " not ours, " + std::to_string(stats.skipped_in_use) +
            " in use, " + std::to_string(stats.cleared_attachments) + " attachments cleared, " +
            std::to_string(stats.errors.size()) + " errors",
        {{"HOSTDEV_RECONCILE_DESTROYED", std::to_string(stats.destroyed)},
         {"HOSTDEV_RECONCILE_ERRORS", std::to_string(stats.errors.size())}});
    for (const auto &e : stats.errors)
      log(Level::Warning, "reconcile: " + e);

    objects_ = std::make_unique<Objects>(*bus_, *this, replier_);
    replier_.start();
    objects_->export_root();
    // MdevDestroyed for what reconcile removed, then MdevsReconciled: sent once the name is ours, since
    // clients match signals on the well-known name and would never see them from a nameless connection.
    auto startup_signals = events_.take();
    service_->update_model(written_change()); // what start-up's restore and reconcile wrote
    objects_->apply(take_snapshot(*service_, sysfs_));
    snapshot_revisions_ = revisions();
    objects_->bury();
    trim_at_ = std::chrono::steady_clock::now() + kTrimAfter;
    const auto exported = std::chrono::steady_clock::now();
    // Leases from before this start: their owner must still be on the bus, as the same process. (Unique names are
    // never reused while a bus runs; after a bus restart one may be, so the pid and its start time are compared.)
    std::vector<std::string> gone;
    for (const auto &[id, view] : objects_->current().instances) {
      const auto &rec = view.record;
      if (rec.lease_owner.empty())
        continue;
      std::uint32_t pid = 0;
      try {
        bus_driver_->callMethod("GetConnectionUnixProcessID")
            .onInterface("org.freedesktop.DBus")
            .withArguments(rec.lease_owner)
            .storeResultsTo(pid);
      } catch (const sdbus::Error &) {
        pid = 0; // no such name: the owner is gone
      }
      if (pid == 0 || pid != rec.lease_pid || core::process_start_time(pid) != rec.lease_start)
        gone.push_back(rec.lease_owner);
    }
    worker_.start(); // from here on the core belongs to the worker
    for (const auto &owner : gone)
      end_leases_of(owner);

    try {
      bus_->requestName(names::kBusName);
    } catch (const sdbus::Error &e) {
      log(Level::Error, "cannot own " + std::string(names::kBusName) + ": " + e.getMessage());
      return 1;
    }
    objects_->emit(startup_signals);
    const auto ms = [](auto d) {
      return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
    };
    log(Level::Info,
        std::string("serving ") + names::kBusName + " (sysfs root " + sysfs_.root() + ", state " + store_.dir() +
            ", write timeout " + seconds_text(options_.write_timeout) + " s); ready in " +
            ms(std::chrono::steady_clock::now() - started_) + " ms: reading the host " + ms(read - reading) + " ms (" +
            std::to_string(service_->model().functions().size()) + " PCI functions), the bus objects " +
            ms(exported - read) + " ms",
        {{"HOSTDEV_SYSFS_ROOT", sysfs_.root()}, {"HOSTDEV_STATE_DIR", store_.dir()}});
    const int rc = loop();
    try {
      bus_->releaseName(names::kBusName);
    } catch (const sdbus::Error &) {
    }
    worker_.stop();  // the running job finishes; its reply is sent
    replier_.stop(); // the reply being sent is sent; the rest of the callers see the name go
    while (bus_->processPendingRequest()) {
    }
    objects_.reset();
    return rc;
  }

  // Backend (bus thread)
  // Reads never touch sysfs and never wait: the model is kept true by uevents and by the mutations' own writes.
  const Snapshot &snapshot() override {
    HOSTDEV_ASSERT_BUS_THREAD();
    return objects_->current();
  }

  // Who is calling (the bus driver knows the uid), may they (polkit), then the worker: each step asynchronous,
  // so the bus thread serves everyone else meanwhile.
  void submit(const std::string &sender, Mutation mutation) override {
    HOSTDEV_ASSERT_BUS_THREAD();
    auto m = std::make_shared<Mutation>(std::move(mutation));
    auto settled = [this, m](std::exception_ptr refused) {
      --authorizing_;
      if (refused)
        m->fail(to_dbus_error(refused));
    };
    if (auto known = callers_.find(sender); known != callers_.end()) {
      ++authorizing_;
      authorize(known->second, m, settled);
      return;
    }
    bus_driver_->callMethodAsync("GetConnectionCredentials")
        .onInterface("org.freedesktop.DBus")
        .withArguments(sender)
        .uponReplyInvoke([this, m, sender, settled](const sdbus::Error *error,
                                                    std::map<std::string, sdbus::Variant> credentials) {
          auto uid = credentials.find("UnixUserID");
          if (error != nullptr || uid == credentials.end() || uid->second.peekValueType() != "u") {
            settled(std::make_exception_ptr(core::Error(
                core::Errc::NotAuthorized,
                "cannot tell who " + sender + " is: " + (error ? error->getMessage() : "the bus gave no uid"))));
            return;
          }
          Caller caller{sender, uid->second.get<std::uint32_t>(), 0};
          if (auto pid = credentials.find("ProcessID"); pid != credentials.end() && pid->second.peekValueType() == "u")
            caller.pid = pid->second.get<std::uint32_t>();
          remember_caller(caller);
          authorize(caller, m, settled);
        });
    ++authorizing_; // after the call went out: its answer always comes through the loop, later
  }

private:
  // Bus thread: what the bus driver said of a caller, kept until its name leaves the bus, so that a client making
  // one mutation after another asks the bus driver once. Sound because a connection's uid and pid are fixed when
  // it connects and a unique name is never reused while the bus runs (a new bus means a new connection, and a
  // new daemon). The answer to GetConnectionCredentials comes before the NameOwnerChanged of a name that leaves
  // after it (the bus driver sends both, in order), so caller_left always forgets what was remembered.
  void remember_caller(const Caller &caller) {
    if (departed_set_.count(caller.sender))
      return;
    if (callers_.size() >= kCallersKept)
      callers_.clear(); // a burst of distinct callers: start again rather than grow
    callers_.emplace(caller.sender, caller);
  }

  // Bus thread: asks polkit for `caller`. Checks that may wait for a person are bounded per uid (an agent that
  // never answers must not let one user pile up work for polkitd and hostdevd), and every pending check is
  // cancelled when its caller leaves the bus.
  void authorize(const Caller &caller, const std::shared_ptr<Mutation> &m,
                 const std::function<void(std::exception_ptr)> &settled) {
    const bool counted = m->interactive && caller.uid != 0;
    if (counted && waiting_for_person_[caller.uid] >= kMaxInteractivePerUid) {
      settled(std::make_exception_ptr(
          core::Error(core::Errc::NotAuthorized,
                      "uid " + std::to_string(caller.uid) + " has " + std::to_string(kMaxInteractivePerUid) +
                          " authorizations waiting for authentication already; finish or cancel "
                          "those first")));
      return;
    }
    if (counted)
      ++waiting_for_person_[caller.uid];
    const std::string check_id = "hostdev-" + std::to_string(++checks_started_);
    pending_checks_.emplace(caller.sender, check_id);
    bouncer_->authorize(
        caller, m->method, m->details, m->interactive, m->instance_owner,
        [this, m, caller, settled, counted, check_id](std::exception_ptr refused) {
          if (counted && --waiting_for_person_[caller.uid] == 0)
            waiting_for_person_.erase(caller.uid);
          for (auto [it, end] = pending_checks_.equal_range(caller.sender); it != end; ++it)
            if (it->second == check_id) {
              pending_checks_.erase(it);
              break;
            }
          settled(refused);
          if (!refused)
            queue(caller, m);
        },
        check_id);
  }

  // Bus thread: the lease of every instance `owner` held ends (the VMM or its launcher is gone).
  void end_leases_of(const std::string &owner) {
    for (const auto &[id, view] : objects_->current().instances) {
      if (view.record.lease_owner != owner || !leases_ending_.insert(id).second)
        continue;
      log(Level::Info, "the owner " + owner + " of leased instance " + view.record.name + " left the bus: ending it",
          {{"HOSTDEV_INSTANCE", view.record.name}, {"HOSTDEV_CALLER", owner}});
      const auto keys = instance_keys(objects_->current(), view.record);
      worker_.submit(
          [this, id = id, name = view.record.name]() -> Worker::Completion {
            try {
              service_->end_lease(id, kLeaseHolderWait);
            } catch (const std::exception &e) {
              log(Level::Warning,
                  "ending the lease of " + name + ": " + e.what() + " (the next start of hostdevd retries)");
            }
            return finish([this, id] { leases_ending_.erase(id); }, true);
          },
          keys);
    }
  }

  // Bus thread: a unique name left the bus; its polkit checks are given up, its leases end. The name is kept for a
  // while: a leased Create of its that is still running appears in the model after this (see end_departed_leases).
  void caller_left(const std::string &name) {
    callers_.erase(name);
    departed_.push_back(name);
    departed_set_.insert(name);
    if (departed_.size() > kDepartedKept) {
      departed_set_.erase(departed_.front());
      departed_.pop_front();
    }
    if (objects_)
      end_leases_of(name);
    std::vector<std::string> ids;
    for (auto [it, end] = pending_checks_.equal_range(name); it != end; ++it)
      ids.push_back(it->second);
    for (const auto &id : ids) {
      log(Level::Info, "cancelling the authorization check of " + name + ": it left the bus",
          {{"HOSTDEV_CALLER", name}});
      bouncer_->cancel(id);
    }
  }

  // Bus thread: what the uevents say must be read again, for the worker. One refresh at a time is queued; events
  // that come while it runs are merged into the next. A mutation's completion takes them too.
  void request_refresh(const core::ModelChange &change) {
    {
      std::lock_guard lock(pending_mutex_);
      pending_change_.merge(change);
    }
    if (refresh_requested_.exchange(true))
      return;
    worker_.submit(
        [this]() -> Worker::Completion {
          refresh_requested_ = false; // what comes from now on asks for another
          return finish({}, true);
        },
        {"refresh"});
  }

  // Bus thread: the uevent socket is readable.
  void on_uevents() {
    const auto batch = monitor_->drain(); // a lost batch asks for everything
    if (batch.overrun)
      log(Level::Warning, "uevents were lost (the receive buffer overran): reading the whole host again");
    if (!batch.change.empty())
      request_refresh(batch.change);
  }

  // Bus thread: hands an authorized mutation to the worker.
  // A caller that left before its call was queued is known here already; one whose job starts at once is asked
  // nothing more (it was on the bus a moment ago); one whose job waited behind others is asked about again.
  void queue(const Caller &caller, std::shared_ptr<Mutation> m) {
    const bool gone = departed_set_.count(caller.sender) != 0;
    const auto queued = std::chrono::steady_clock::now();
    worker_.submit(
        [this, caller, m, gone, queued]() -> Worker::Completion {
          // Worker thread.
          Reply reply;
          bool ran = false;
          const bool waited = std::chrono::steady_clock::now() - queued >= kQueueWaitRechecked;
          if (gone || (waited && !caller_present(caller.sender))) {
            log(Level::Notice, "dropping a queued call of " + caller.sender + ": the caller has left the bus",
                {{"HOSTDEV_CALLER", caller.sender}});
          } else {
            ran = true;
            try {
              reply = m->work(*service_, caller);
            } catch (...) {
              auto error = to_dbus_error(std::current_exception());
              log(Level::Notice,
                  "uid " + std::to_string(caller.uid) + ": " + error.getName() + ": " + error.getMessage(),
                  {{"HOSTDEV_ERROR", error.getName()}, {"HOSTDEV_CALLER_UID", std::to_string(caller.uid)}});
              reply = [fail = m->fail, error] { fail(error); };
            }
          }
          // The mutation (and the call it answers) is released on the bus thread, with the completion.
          return [m, done = finish(std::move(reply), ran)] { done(); };
        },
        m->keys);
  }

  // Worker thread: what the bus thread does after a job: the new model (when the job may have changed the host),
  // the signals the core reported, then the reply.
  // The model re-reads only what the uevents named and what the job wrote (core::change_of_write).
  Worker::Completion finish(Reply reply, bool changed) {
    std::optional<Snapshot> snap;
    if (changed) {
      core::ModelChange change;
      {
        std::lock_guard lock(pending_mutex_);
        change = std::exchange(pending_change_, {});
      }
      change.merge(written_change());
      try {
        const bool everything = change.everything;
        service_->update_model(change);
        if (everything)
          log(Level::Info,
              "read the whole host again (" + std::to_string(service_->model().functions().size()) + " PCI functions)");
        // A job that changed nothing (a Reconcile of a clean host, a refused change) costs no new model: the same
        // revisions of the host model and of the store are the same snapshot.
        if (revisions() != snapshot_revisions_) {
          snap = take_snapshot(*service_, sysfs_);
          snapshot_revisions_ = revisions();
        }
      } catch (const std::exception &e) {
        log(Level::Warning, std::string("refreshing the model failed: ") + e.what());
      }
    }
    auto signals = events_.take();
    const bool busy = service_->has_busy();
    return [this, snap = std::move(snap), signals = std::move(signals), reply = std::move(reply), busy]() mutable {
      busy_ = busy;
      try {
        if (snap) {
          std::set<std::string> known; // the instances of the model before: only new ones can be unseen leases
          for (const auto &[id, view] : objects_->current().instances)
            known.insert(id);
          objects_->apply(std::move(*snap));
          end_departed_leases(known);
          trim_at_ = std::chrono::steady_clock::now() + kTrimAfter;
        }
        objects_->emit(signals);
      } catch (...) {
        log(Level::Warning, "updating the bus objects failed: " + describe_exception(std::current_exception()));
      }
      // The caller gets its reply even when the objects could not be updated.
      try {
        if (reply)
          reply();
      } catch (...) {
        log(Level::Warning, "sending a reply failed: " + describe_exception(std::current_exception()));
      }
      // After the reply: a reply to a call on an object must be sent while the object is still registered.
      try {
        objects_->bury();
      } catch (...) {
        log(Level::Warning, "removing bus objects failed: " + describe_exception(std::current_exception()));
      }
    };
  }

  // Worker thread (and start-up): what hostdev's own sysfs writes since the last call changed (core::change_of_write).
  core::ModelChange written_change() {
    core::ModelChange change;
    auto written = sysfs_.take_written();
    change.everything = written.overflowed;
    for (const auto &[path, value] : written.writes)
      change.merge(core::change_of_write(path, value));
    return change;
  }

  // Worker thread (and start-up): what the snapshot is a function of.
  std::pair<std::uint64_t, std::uint64_t> revisions() const {
    return {service_->model().revision(), store_.revision()};
  }

  // Bus thread, after a new model: leases whose owner left the bus before the model had them (it died while its
  // Create ran). Unique names are never reused while the bus runs, so a remembered departure is final.
  // Only instances new in this model: an older one whose lease end failed (its devices still held) is retried at
  // the next start, not after every model.
  void end_departed_leases(const std::set<std::string> &known) {
    std::set<std::string> owners;
    for (const auto &[id, view] : objects_->current().instances)
      if (!known.count(id) && !view.record.lease_owner.empty() && departed_set_.count(view.record.lease_owner) &&
          !leases_ending_.count(id))
        owners.insert(view.record.lease_owner);
    for (const auto &owner : owners) {
      log(Level::Info, "the owner " + owner + " of a leased instance left while it was being created",
          {{"HOSTDEV_CALLER", owner}});
      end_leases_of(owner);
    }
  }

  // Worker thread: whether the caller `sender` (a unique name) is still on the bus. A call may wait long in the
  // queue; when its caller has gone (its call timed out and it quit), nobody waits for the result and the change
  // must not happen behind its back. Unique names are never reused. When the bus cannot tell: present.
  bool caller_present(const std::string &sender) {
    bool present = true;
    try {
      worker_bus_driver_->callMethod("NameHasOwner")
          .onInterface("org.freedesktop.DBus")
          .withArguments(sender)
          .storeResultsTo(present);
    } catch (const sdbus::Error &e) {
      log(Level::Warning, "cannot tell whether " + sender + " is still on the bus: " + e.getMessage());
      return true;
    }
    return present;
  }

  int loop() {
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    const int sig_fd = ::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    auto last_activity = std::chrono::steady_clock::now();
    auto last_rescan = last_activity;
    int rc = 0;
    for (;;) {
      while (bus_->processPendingRequest())
        last_activity = std::chrono::steady_clock::now();
      auto pd = bus_->getEventLoopPollData();
      int timeout = pd.getPollTimeout();
      if (rescan_period_) {
        const auto now = std::chrono::steady_clock::now();
        if (now - last_rescan >= kRescanPeriod) {
          last_rescan = now;
          request_refresh(core::ModelChange::all());
        }
        const int left = static_cast<int>(
            std::chrono::duration_cast<std::chrono::milliseconds>(last_rescan + kRescanPeriod - now).count());
        timeout = timeout < 0 ? left : std::min(timeout, std::max(left, 0));
      }
      if (trim_at_) {
        const auto now = std::chrono::steady_clock::now();
        if (now >= *trim_at_) {
          trim_at_.reset();
          give_back_freed_memory();
        } else {
          const int left = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(*trim_at_ - now).count());
          timeout = timeout < 0 ? left : std::min(timeout, left);
        }
      }
      if (options_.idle_exit.count() > 0) {
        const auto idle_left = std::chrono::duration_cast<std::chrono::milliseconds>(
            last_activity + options_.idle_exit - std::chrono::steady_clock::now());
        const int left = static_cast<int>(std::max<long long>(0, idle_left.count()));
        timeout = timeout < 0 ? left : std::min(timeout, left);
      }
      struct pollfd fds[5] = {{pd.fd, pd.events, 0},
                              {worker_.wake_fd(), POLLIN, 0},
                              {sig_fd, POLLIN, 0},
                              {monitor_ ? monitor_->fd() : -1, POLLIN, 0},
                              {replier_.wake_fd(), POLLIN, 0}};
      const int n = ::poll(fds, 5, timeout);
      if (n < 0 && errno != EINTR) {
        log(Level::Error, std::string("poll: ") + std::strerror(errno));
        rc = 1;
        break;
      }
      if (fds[2].revents & POLLIN) {
        signalfd_siginfo info{};
        [[maybe_unused]] auto r = ::read(sig_fd, &info, sizeof info);
        log(Level::Info, "stopping on signal " + std::to_string(info.ssi_signo));
        break;
      }
      if (fds[1].revents & POLLIN) {
        worker_.run_completions();
        last_activity = std::chrono::steady_clock::now();
      }
      if (fds[3].revents & POLLIN)
        on_uevents();
      if (fds[4].revents & POLLIN) { // a reply was queued by the replier: the loop writes the rest of it
        replier_.drain();
        last_activity = std::chrono::steady_clock::now();
      }
      // Not while a device is busy: a kernel write that timed out may still be running, and a new daemon would
      // not know the device is busy.
      if (options_.idle_exit.count() > 0 && worker_.in_flight() == 0 && authorizing_ == 0 && !busy_ &&
          std::chrono::steady_clock::now() - last_activity >= options_.idle_exit) {
        log(Level::Info, "idle for " + std::to_string(options_.idle_exit.count()) + " s: exiting");
        break;
      }
    }
    if (sig_fd >= 0)
      ::close(sig_fd);
    return rc;
  }

  std::chrono::steady_clock::time_point started_;
  std::optional<std::chrono::steady_clock::time_point> trim_at_; // bus thread: see kTrimAfter
  DaemonOptions options_;
  core::Sysfs sysfs_;
  core::Store store_;
  std::unique_ptr<core::PciNames> names_;
  std::unique_ptr<sdbus::IConnection> bus_;          // bus thread
  std::unique_ptr<sdbus::IConnection> worker_bus_;   // worker thread (systemd, NameHasOwner)
  std::unique_ptr<sdbus::IProxy> bus_driver_;        // bus thread: GetConnectionUnixUser
  std::unique_ptr<sdbus::IProxy> worker_bus_driver_; // worker thread: NameHasOwner
  std::unique_ptr<SystemdUnits> units_;              // worker thread
  std::unique_ptr<PolkitAuthority> authority_;       // bus thread
  std::unique_ptr<Bouncer> bouncer_;                 // bus thread
  sdbus::Slot name_lost_;                            // bus thread: the NameOwnerChanged match
  // Bus thread: the unique names that left the bus lately (the last kDepartedKept), and the instances whose lease
  // is being ended.
  static constexpr std::size_t kDepartedKept = 4096;
  std::deque<std::string> departed_;
  std::set<std::string> departed_set_;
  std::set<std::string> leases_ending_;
  static constexpr std::size_t kCallersKept = 1024;
  std::unordered_map<std::string, Caller> callers_;        // bus thread: see remember_caller
  std::map<std::uint32_t, unsigned> waiting_for_person_;   // bus thread: interactive checks pending, per uid
  std::multimap<std::string, std::string> pending_checks_; // bus thread: caller unique name -> check id
  std::uint64_t checks_started_ = 0;                       // bus thread
  EventQueue events_;                                      // worker thread (and start-up, before the worker exists)
  std::unique_ptr<core::Service> service_;                 // worker thread (and start-up)
  Replier replier_;                                        // its thread: the big replies (replier.hpp)
  std::unique_ptr<Objects> objects_;                       // bus thread
  Worker worker_{kWorkers};  // declared last of the parts it uses: its thread is joined before they go
  unsigned authorizing_ = 0; // bus thread: mutations between their call and the end of their authorization
  std::unique_ptr<UeventMonitor> monitor_;     // bus thread; null: no uevents (a fixture root, no netlink)
  bool rescan_period_ = false;                 // bus thread: no monitor could be opened; rescan by the clock
  std::atomic<bool> refresh_requested_{false}; // a refresh is queued and has not started
  std::mutex pending_mutex_;                   // pending_change_
  core::ModelChange pending_change_;           // what uevents said since the last model update
  std::pair<std::uint64_t, std::uint64_t> snapshot_revisions_; // worker thread: revisions() of the last snapshot
  bool busy_ = false; // bus thread: the core had a busy device after the last job (no idle exit)
};

} // namespace

int run_daemon(const DaemonOptions &options, core::Sysfs::WriteHook hook) {
  // Memory: replies of a few MB are built and freed again for every big read. With a fixed mmap threshold such
  // buffers are mmapped and go back to the kernel when freed; glibc's default threshold moves up after the first
  // one is freed, and from then on every such buffer stays in the heap (the 4096 host grew from 23 to 59 MB
  // over 20 000 reads). Two arenas: the threads other than the bus thread mostly wait.
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
  mallopt(M_ARENA_MAX, 2);
  // Block the stop signals in every thread: the bus loop reads them from a signalfd.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  try {
    Daemon daemon(options, std::move(hook));
    return daemon.run();
  } catch (const core::Error &e) {
    log(Level::Error, std::string(core::errc_name(e.code())) + ": " + e.what());
  } catch (const sdbus::Error &e) {
    log(Level::Error, "bus: " + e.getName() + ": " + e.getMessage());
  } catch (const std::exception &e) {
    log(Level::Error, e.what());
  }
  return 1;
}

} // namespace hostdev::daemon
