#include "daemon/worker.hpp"

#include "daemon/errors.hpp"
#include "daemon/log.hpp"

#include <sdbus-c++/Error.h>

#include <sys/eventfd.h>
#include <unistd.h>

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

Worker::Worker() {
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0)
    throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
}

Worker::~Worker() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    tasks_.clear();
  }
  cv_.notify_all();
  if (thread_.joinable())
    thread_.join();
  ::close(wake_fd_);
}

void Worker::start() {
  thread_ = std::thread([this] { loop(); });
}

void Worker::submit(Task task) {
  HOSTDEV_ASSERT_BUS_THREAD();
  ++in_flight_;
  {
    std::lock_guard lock(mutex_);
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void Worker::post(Completion completion) {
  {
    std::lock_guard lock(mutex_);
    completions_.push_back(std::move(completion));
  }
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
}

void Worker::loop() {
  for (;;) {
    Task task;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty())
        return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    Completion completion;
    try {
      completion = task();
    } catch (...) {
      log(Level::Warning, "a task of the worker failed: " + describe_exception(std::current_exception()));
    }
    // What the task holds (a method call's reply handle, say) is bus-thread data: it must not be released here
    // after the completion has already run there.
    task = nullptr;
    post([this, completion = std::move(completion)] {
      --in_flight_; // first: the bookkeeping happens whatever the completion does
      if (completion)
        completion();
    });
  }
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
    in_flight_ -= static_cast<unsigned>(tasks_.size());
    tasks_.clear(); // queued, never started: their callers get no reply and see the name vanish
  }
  cv_.notify_all();
  if (thread_.joinable())
    thread_.join();
  run_completions();
}

} // namespace hostdev::daemon
