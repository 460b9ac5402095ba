#include "daemon/daemon.hpp"

#include "config.h"
#include "core/error.hpp"
#include "core/pci.hpp"
#include "core/service.hpp"
#include "core/store.hpp"
#include "daemon/bouncer.hpp"
#include "daemon/errors.hpp"
#include "daemon/log.hpp"
#include "daemon/objects.hpp"
#include "daemon/snapshot.hpp"
#include "daemon/units.hpp"
#include "names.hpp"

#include <sdbus-c++/sdbus-c++.h>

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <iostream>
#include <mutex>
#include <optional>
#include <thread>

namespace hostdev::daemon {
namespace {

constexpr auto kSnapshotMaxAge = std::chrono::seconds(2);
constexpr int kMaxWriteTimeoutSeconds = 600;

std::string seconds_text(std::chrono::milliseconds ms) {
  std::string text = std::to_string(ms.count() / 1000);
  if (const auto frac = ms.count() % 1000; frac != 0) {
    std::string digits = std::to_string(frac);
    digits.insert(0, 3 - digits.size(), '0');
    while (digits.back() == '0')
      digits.pop_back();
    text += "." + digits;
  }
  return text;
}

// "10", "0.2", "1.5": seconds, positive, at most kMaxWriteTimeoutSeconds, to the millisecond.
std::optional<std::chrono::milliseconds> parse_write_timeout(const std::string &text) {
  if (text.find_first_of("0123456789") == std::string::npos ||
      text.find_first_not_of("0123456789.") != std::string::npos || text.find('.') != text.rfind('.'))
    return std::nullopt;
  char *end = nullptr;
  errno = 0;
  const double secs = std::strtod(text.c_str(), &end);
  if (errno != 0 || end == nullptr || *end != '\0' || !(secs > 0) || secs > kMaxWriteTimeoutSeconds)
    return std::nullopt;
  const auto ms = static_cast<long long>(secs * 1000.0 + 0.5);
  if (ms < 1)
    return std::nullopt;
  return std::chrono::milliseconds(ms);
}

std::string what(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const sdbus::Error &err) {
    return err.getName() + ": " + err.getMessage();
  } catch (const std::exception &err) {
    return err.what();
  } catch (...) {
    return "unknown exception";
  }
}

std::unique_ptr<sdbus::IConnection> connect(const std::string &bus) {
  if (bus == "system")
    return sdbus::createSystemBusConnection();
  if (bus == "session")
    return sdbus::createSessionBusConnection();
  return sdbus::createSessionBusConnectionWithAddress(bus);
}

class Daemon final : public Backend {
public:
  Daemon(const DaemonOptions &options, core::Sysfs::WriteHook hook)
      : options_(options), sysfs_(options.sysfs_root),
        store_(options.state_dir.empty() ? std::string(names::kDefaultStateDir) : options.state_dir) {
    if (hook)
      sysfs_.set_write_hook(std::move(hook));
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0)
      throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
  }

  ~Daemon() override {
    stop_worker();
    if (wake_fd_ >= 0)
      ::close(wake_fd_);
  }

  int run() {
    for (const auto &w : store_.load())
      log(Level::Warning, "store: " + w, {{"HOSTDEV_STATE_DIR", store_.dir()}});
    names_ = core::make_hwdb_names();

    bus_ = connect(options_.bus);
    worker_bus_ = connect(options_.bus);
    units_ = std::make_unique<SystemdUnits>(*worker_bus_);
    authority_ = std::make_unique<PolkitAuthority>(*worker_bus_);
    bouncer_ = std::make_unique<Bouncer>(authority_.get());
    core::ServiceOptions service_options;
    service_options.deadline = options_.write_timeout;
    service_ = std::make_unique<core::Service>(sysfs_, store_, *names_, units_.get(), &events_, service_options);

    // Discover and reconcile before anyone can call.
    const auto stats = service_->reconcile();
    log(stats.errors.empty() ? Level::Info : Level::Warning,
        "reconciled: " + std::to_string(stats.destroyed) + " mdevs destroyed, " +
            std::to_string(stats.skipped_not_ours) + " not ours, " + std::to_string(stats.skipped_in_use) +
            " in use, " + std::to_string(stats.cleared_attachments) + " attachments cleared, " +
            std::to_string(stats.errors.size()) + " errors",
        {{"HOSTDEV_RECONCILE_DESTROYED", std::to_string(stats.destroyed)},
         {"HOSTDEV_RECONCILE_ERRORS", std::to_string(stats.errors.size())}});
    for (const auto &e : stats.errors)
      log(Level::Warning, "reconcile: " + e);

    objects_ = std::make_unique<Objects>(*bus_, *this);
    objects_->export_root();
    // MdevDestroyed for what reconcile removed, then MdevsReconciled: sent once the name is ours, since
    // clients match signals on the well-known name and would never see them from a nameless connection.
    auto startup_signals = events_.take();
    objects_->apply(take_snapshot(*service_, sysfs_));
    objects_->bury();
    worker_ = std::thread([this] { worker_loop(); });

    try {
      bus_->requestName(names::kBusName);
    } catch (const sdbus::Error &e) {
      log(Level::Error, "cannot own " + std::string(names::kBusName) + ": " + e.getMessage());
      return 1;
    }
    objects_->emit(std::move(startup_signals));
    log(Level::Info, std::string("serving ") + names::kBusName + " (sysfs root " + sysfs_.root() + ", state " +
                         store_.dir() + ", write timeout " + seconds_text(options_.write_timeout) + " s)",
        {{"HOSTDEV_SYSFS_ROOT", sysfs_.root()}, {"HOSTDEV_STATE_DIR", store_.dir()}});
    const int rc = loop();
    try {
      bus_->releaseName(names::kBusName);
    } catch (const sdbus::Error &) {
    }
    stop_worker();
    drain_completions(); // replies of jobs that finished meanwhile
    while (bus_->processPendingRequest()) {
    }
    objects_.reset();
    return rc;
  }

  // Backend
  const Snapshot &snapshot() override {
    const auto &snap = objects_->current();
    if (!refresh_queued_ && std::chrono::steady_clock::now() - snap.taken > kSnapshotMaxAge) {
      refresh_queued_ = true;
      Job job;
      job.work = [](WorkContext &ctx) -> Reply {
        ctx.touched = true;
        return {};
      };
      enqueue(std::move(job), true);
    }
    return snap;
  }

  void submit(Job job) override { enqueue(std::move(job), false); }

private:
  struct Queued {
    Job job;
    bool refresh = false;
  };

  void enqueue(Job job, bool refresh) {
    ++in_flight_;
    {
      std::lock_guard lock(mutex_);
      jobs_.push_back({std::move(job), refresh});
    }
    cv_.notify_one();
  }

  // Bus thread: run `fn` on the bus thread soon.
  void post(std::function<void()> fn) {
    {
      std::lock_guard lock(mutex_);
      completions_.push_back(std::move(fn));
    }
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
  }

  std::uint32_t uid_of(const std::string &sender) {
    if (!dbus_proxy_)
      dbus_proxy_ = sdbus::createProxy(*worker_bus_, "org.freedesktop.DBus", "/org/freedesktop/DBus");
    std::uint32_t uid = 0;
    try {
      dbus_proxy_->callMethod("GetConnectionUnixUser").onInterface("org.freedesktop.DBus").withArguments(sender)
          .storeResultsTo(uid);
    } catch (const sdbus::Error &e) {
      core::fail(core::Errc::NotAuthorized, "cannot tell who " + sender + " is: " + e.getMessage());
    }
    return uid;
  }

  // Whether the caller `sender` (a unique name) is still on the bus. A call may wait long in the queue (behind
  // another caller's interactive polkit prompt, say); when its caller has gone (its call timed out and it quit),
  // nobody waits for the result and the change must not happen behind its back. Unique names are never reused.
  // When the bus cannot tell, the caller is assumed present.
  bool caller_present(const std::string &sender) {
    if (!dbus_proxy_)
      dbus_proxy_ = sdbus::createProxy(*worker_bus_, "org.freedesktop.DBus", "/org/freedesktop/DBus");
    bool present = true;
    try {
      dbus_proxy_->callMethod("NameHasOwner").onInterface("org.freedesktop.DBus").withArguments(sender)
          .storeResultsTo(present);
    } catch (const sdbus::Error &e) {
      log(Level::Warning, "cannot tell whether " + sender + " is still on the bus: " + e.getMessage());
      return true;
    }
    return present;
  }

  void worker_loop() {
    for (;;) {
      Queued item;
      {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
        if (jobs_.empty())
          return;
        item = std::move(jobs_.front());
        jobs_.pop_front();
      }
      WorkContext ctx{*service_, *bouncer_, Caller{item.job.sender, 0}, item.job.interactive};
      Reply reply;
      try {
        if (!item.job.sender.empty() && !caller_present(item.job.sender)) {
          log(Level::Notice, "dropping a queued call of " + item.job.sender + ": the caller has left the bus",
              {{"HOSTDEV_CALLER", item.job.sender}});
        } else {
          if (!item.job.sender.empty())
            ctx.caller.uid = uid_of(item.job.sender);
          reply = item.job.work(ctx);
        }
      } catch (...) {
        auto error = to_dbus_error(std::current_exception());
        if (error.getName() != error_name(core::Errc::NotAuthorized) && ctx.touched)
          log(Level::Notice, "uid " + std::to_string(ctx.caller.uid) + ": " + error.getName() + ": " +
                                 error.getMessage(),
              {{"HOSTDEV_ERROR", error.getName()}, {"HOSTDEV_CALLER_UID", std::to_string(ctx.caller.uid)}});
        reply = [fail = item.job.fail, error] {
          if (fail)
            fail(error);
        };
      }
      std::optional<Snapshot> snap;
      if (ctx.touched) {
        try {
          snap = take_snapshot(*service_, sysfs_);
        } catch (const std::exception &e) {
          log(Level::Warning, std::string("refreshing the model failed: ") + e.what());
        }
      }
      auto signals = events_.take();
      const bool busy = service_->has_busy();
      post([this, snap = std::move(snap), signals = std::move(signals), reply = std::move(reply),
            refresh = item.refresh, busy]() mutable {
        // Whatever throws below, the job is done: the bookkeeping always happens.
        struct Done {
          Daemon &d;
          bool refresh, busy;
          ~Done() {
            if (refresh)
              d.refresh_queued_ = false;
            d.busy_ = busy;
            --d.in_flight_;
          }
        } done{*this, refresh, busy};
        try {
          if (snap)
            objects_->apply(std::move(*snap));
          objects_->emit(signals);
        } catch (...) {
          log(Level::Warning, "updating the bus objects failed: " + what(std::current_exception()));
        }
        // The caller gets its reply even when the objects could not be updated.
        try {
          if (reply)
            reply();
        } catch (...) {
          log(Level::Warning, "sending a reply failed: " + what(std::current_exception()));
        }
        try {
          objects_->bury();
        } catch (...) {
          log(Level::Warning, "removing bus objects failed: " + what(std::current_exception()));
        }
      });
    }
  }

  void stop_worker() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      jobs_.clear(); // queued, never started: their callers get no reply and see the name vanish
    }
    cv_.notify_all();
    if (worker_.joinable())
      worker_.join();
  }

  void drain_completions() {
    std::deque<std::function<void()>> todo;
    {
      std::lock_guard lock(mutex_);
      todo.swap(completions_);
    }
    for (auto &fn : todo) {
      try {
        fn();
      } catch (const std::exception &e) {
        log(Level::Warning, std::string("sending a reply failed: ") + e.what());
      }
    }
  }

  int loop() {
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    const int sig_fd = ::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    auto last_activity = std::chrono::steady_clock::now();
    int rc = 0;
    for (;;) {
      while (bus_->processPendingRequest())
        last_activity = std::chrono::steady_clock::now();
      auto pd = bus_->getEventLoopPollData();
      int timeout = pd.getPollTimeout();
      if (options_.idle_exit.count() > 0) {
        const auto idle_left = std::chrono::duration_cast<std::chrono::milliseconds>(
            last_activity + options_.idle_exit - std::chrono::steady_clock::now());
        const int left = static_cast<int>(std::max<long long>(0, idle_left.count()));
        timeout = timeout < 0 ? left : std::min(timeout, left);
      }
      struct pollfd fds[3] = {{pd.fd, pd.events, 0}, {wake_fd_, POLLIN, 0}, {sig_fd, POLLIN, 0}};
      const int n = ::poll(fds, 3, timeout);
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
        std::uint64_t count = 0;
        [[maybe_unused]] auto r = ::read(wake_fd_, &count, sizeof count);
        drain_completions();
        last_activity = std::chrono::steady_clock::now();
      }
      // Not while a device is busy: a kernel write that timed out may still be running, and a new daemon would
      // not know the device is busy.
      if (options_.idle_exit.count() > 0 && in_flight_ == 0 && !busy_ &&
          std::chrono::steady_clock::now() - last_activity >= options_.idle_exit) {
        log(Level::Info, "idle for " + std::to_string(options_.idle_exit.count()) + " s: exiting");
        break;
      }
    }
    if (sig_fd >= 0)
      ::close(sig_fd);
    return rc;
  }

  DaemonOptions options_;
  core::Sysfs sysfs_;
  core::Store store_;
  std::unique_ptr<core::PciNames> names_;
  std::unique_ptr<sdbus::IConnection> bus_;        // bus thread
  std::unique_ptr<sdbus::IConnection> worker_bus_; // worker thread (polkit, systemd, caller uid)
  std::unique_ptr<sdbus::IProxy> dbus_proxy_;      // worker thread
  std::unique_ptr<SystemdUnits> units_;
  std::unique_ptr<PolkitAuthority> authority_;
  std::unique_ptr<Bouncer> bouncer_;
  EventQueue events_; // worker thread (and start-up, before the worker exists)
  std::unique_ptr<core::Service> service_;
  std::unique_ptr<Objects> objects_; // bus thread

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Queued> jobs_;
  std::deque<std::function<void()>> completions_;
  bool stopping_ = false;
  int wake_fd_ = -1;
  std::thread worker_;
  unsigned in_flight_ = 0;     // bus thread
  bool refresh_queued_ = false; // bus thread
  bool busy_ = false;           // bus thread: the core had a busy device after the last job (no idle exit)
};

void usage(std::ostream &out, const std::string &extra) {
  out << "usage: hostdevd [OPTIONS]\n"
         "The hostdev D-Bus system service " << names::kBusName << ".\n\n"
         "  --sysfs-root DIR      read and write DIR/sys instead of /sys (default /)\n"
         "  --state-dir DIR       the store (default " << names::kDefaultStateDir << ")\n"
         "  --bus system|session|ADDRESS\n"
         "                        the bus to serve on (default system)\n"
         "  --idle-exit SECONDS   exit after this long without calls or work (default 0 = never)\n"
         "  --write-timeout SECONDS\n"
         "                        how long one kernel write may take before the call fails with\n"
         "                        Error.Timeout and the device is marked busy until Restore\n"
         "                        (default "
      << seconds_text(core::Sysfs::kDefaultDeadline) << ", fractions allowed: 0.001 to " << kMaxWriteTimeoutSeconds
      << ")\n"
         "  --help                this text\n"
         "  --version             the version\n"
      << extra;
}

} // namespace

int parse_command_line(int argc, char **argv, DaemonOptions &options, std::vector<std::string> *unparsed,
                       const std::string &extra_usage) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char *name) -> std::optional<std::string> {
      if (i + 1 >= argc) {
        std::cerr << "hostdevd: " << name << " needs a value\n";
        return std::nullopt;
      }
      return std::string(argv[++i]);
    };
    if (arg == "--help" || arg == "-h") {
      usage(std::cout, extra_usage);
      return 0;
    }
    if (arg == "--version") {
      std::cout << "hostdevd " << HOSTDEV_VERSION << "\n";
      return 0;
    }
    if (arg == "--sysfs-root" || arg == "--state-dir" || arg == "--bus" || arg == "--idle-exit" ||
        arg == "--write-timeout") {
      auto v = value(arg.c_str());
      if (!v)
        return 2;
      if (arg == "--sysfs-root")
        options.sysfs_root = *v;
      else if (arg == "--state-dir")
        options.state_dir = *v;
      else if (arg == "--bus")
        options.bus = *v;
      else if (arg == "--write-timeout") {
        auto timeout = parse_write_timeout(*v);
        if (!timeout) {
          std::cerr << "hostdevd: --write-timeout wants seconds from 0.001 to " << kMaxWriteTimeoutSeconds
                    << " (fractions allowed, e.g. 0.5), not '" << *v << "'\n";
          return 2;
        }
        options.write_timeout = *timeout;
      } else {
        char *end = nullptr;
        errno = 0;
        const long secs = std::strtol(v->c_str(), &end, 10);
        if (v->empty() || *end != '\0' || errno != 0 || secs < 0) {
          std::cerr << "hostdevd: --idle-exit wants a number of seconds >= 0, not '" << *v << "'\n";
          return 2;
        }
        options.idle_exit = std::chrono::seconds(secs);
      }
      continue;
    }
    if (unparsed != nullptr) {
      unparsed->push_back(arg);
      continue;
    }
    std::cerr << "hostdevd: unknown argument '" << arg << "' (see --help)\n";
    return 2;
  }
  if (options.bus.empty()) {
    std::cerr << "hostdevd: --bus must not be empty\n";
    return 2;
  }
  return -1;
}

int run_daemon(const DaemonOptions &options, core::Sysfs::WriteHook hook) {
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
