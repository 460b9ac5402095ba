#include "daemon/worker.hpp"

#include "daemon/errors.hpp"
#include "core/sysfs.hpp"
#include "daemon/log.hpp"

#include <sdbus-c++/Error.h>

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace hostdev::daemon {
namespace {

std::atomic<std::thread::id> bus_thread_id{};

} // namespace

void mark_bus_thread() noexcept { bus_thread_id = std::this_thread::get_id(); }

bool on_bus_thread() noexcept { return bus_thread_id.load() == std::this_thread::get_id(); }

void assert_bus_thread(const char *function) noexcept {
  if (on_bus_thread())
    return;
  std::fprintf(stderr, "hostdevd: %s must run on the bus thread\n", function);
  std::abort();
}

Worker::Worker(unsigned threads) : threads_(threads == 0 ? 1 : threads) {
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0)
    throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
}

Worker::~Worker() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    std::erase_if(tasks_, [](const Queued &q) { return !q.running; });
  }
  cv_.notify_all();
  for (auto &t : pool_)
    if (t.joinable())
      t.join();
  ::close(wake_fd_);
}

void Worker::start() {
  for (unsigned i = 0; i < threads_; ++i)
    pool_.emplace_back([this] { loop(); });
}

void Worker::submit(Task task, std::vector<std::string> keys) {
  HOSTDEV_ASSERT_BUS_THREAD();
  ++in_flight_;
  {
    std::lock_guard lock(mutex_);
    tasks_.push_back({std::move(task), std::move(keys), false});
  }
  cv_.notify_all();
}

bool Worker::conflict(const Queued &a, const Queued &b) {
  if (a.keys.empty() || b.keys.empty())
    return true;
  for (const auto &k : a.keys)
    if (std::find(b.keys.begin(), b.keys.end(), k) != b.keys.end())
      return true;
  return false;
}

void Worker::loop() {
  // While this thread's task waits for a kernel write, others may take the core.
  std::unique_lock core(core_, std::defer_lock);
  const core::Sysfs::WaitHooks hooks{[&core] { core.unlock(); }, [&core] { core.lock(); }};
  core::Sysfs::set_thread_wait_hooks(&hooks);
  for (;;) {
    std::list<Queued>::iterator mine;
    {
      std::unique_lock lock(mutex_);
      // The first queued task that shares no key with a task before it (running or queued): per key, tasks run
      // in the order they came.
      auto runnable = [this] {
        for (auto it = tasks_.begin(); it != tasks_.end(); ++it) {
          if (it->running)
            continue;
          if (std::none_of(tasks_.begin(), it, [&](const Queued &before) { return conflict(before, *it); }))
            return it;
        }
        return tasks_.end();
      };
      cv_.wait(lock, [&] { return stopping_ || runnable() != tasks_.end(); });
      if (stopping_)
        break;
      mine = runnable();
      mine->running = true;
    }
    core.lock();
    Completion completion;
    try {
      completion = mine->task();
    } catch (...) {
      log(Level::Warning, "a task of the worker failed: " + describe_exception(std::current_exception()));
    }
    // What the task holds (a method call's reply handle, say) is bus-thread data: it must not be released here
    // after the completion has already run there.
    mine->task = nullptr;
    {
      std::lock_guard lock(mutex_);
      // Posted under the core lock: completions arrive in the order their snapshots were taken.
      completions_.push_back([this, completion = std::move(completion)] {
        --in_flight_; // first: the bookkeeping happens whatever the completion does
        if (completion)
          completion();
      });
      tasks_.erase(mine);
    }
    core.unlock();
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
    cv_.notify_all();
  }
  core::Sysfs::set_thread_wait_hooks(nullptr);
}

void Worker::run_completions() {
  HOSTDEV_ASSERT_BUS_THREAD();
  std::uint64_t count = 0;
  [[maybe_unused]] auto r = ::read(wake_fd_, &count, sizeof count);
  std::deque<Completion> todo;
  {
    std::lock_guard lock(mutex_);
    todo.swap(completions_);
  }
  for (auto &fn : todo) {
    try {
      fn();
    } catch (...) {
      log(Level::Warning, "completing a task failed: " + describe_exception(std::current_exception()));
    }
  }
}

void Worker::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    const auto dropped = std::erase_if(tasks_, [](const Queued &q) { return !q.running; });
    in_flight_ -= static_cast<unsigned>(dropped); // queued, never started: their callers see the name vanish
  }
  cv_.notify_all();
  for (auto &t : pool_)
    if (t.joinable())
      t.join();
  run_completions();
}

} // namespace hostdev::daemon
