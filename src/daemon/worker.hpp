// The threads of hostdevd and how work crosses between them: the one place that states the model.
//
// Four kinds of thread:
//
//  * The bus thread (the main thread) runs the event loop of the daemon's bus connection. Everything that
//    touches that connection or the bus objects happens here: incoming calls, replies, signals, the model the
//    reads are answered from (Objects and its Snapshot), and the calls hostdevd itself makes while deciding
//    whether to accept a mutation (the caller's uid from the bus driver, polkit's CheckAuthorization), which
//    are asynchronous: their replies arrive through the same loop. The bus thread never blocks on the kernel,
//    on systemd or on a person typing a password: a read is answered from the model, a mutation is validated,
//    authorized asynchronously and then queued for the worker.
//
//  * The workers (a few threads) run the queued mutations in the order they were authorized, each holding the
//    core lock: from the moment they start they own the core (core::Service, the store, sysfs writes) and a bus
//    connection of their own for the blocking calls a mutation needs (systemd's StartUnit/StopUnit around
//    NVIDIA binds, NameHasOwner for a caller who may have left). Every task names what it touches (keys: a PCI
//    address, an IOMMU group, "vgpu"; none = everything), and two tasks that share a key run one after the
//    other, in order. While a task waits for a kernel write it lets go of the core lock (Sysfs::WaitHooks), so
//    a mutation of another device is never held up by one device's stuck write. A worker may block: on a
//    kernel write up to its deadline, on systemd. It never touches the bus objects.
//
//  * The replier thread (replier.hpp) serializes and sends the replies too big to build on the bus thread (a
//    ListAvailable of many functions), from the immutable reply data the bus thread kept for the model at the
//    time of the call, and wakes the bus loop to write the rest. It touches nothing else.
//
//  * Kernel write threads: core::Sysfs::write runs each sysfs write on a thread of its own and waits for it
//    until the write deadline; a write that has not returned by then is left running, detached, and the device
//    is marked busy (Error.Timeout) until a Restore succeeds.
//
// Crossing: the bus thread hands a task to the workers with Worker::submit (a queue under a mutex). A task
// returns its completion, a function that the worker posts back (a second queue plus an eventfd that the bus
// loop polls) while it still holds the core lock, so completions arrive in the order their snapshots were
// taken; the bus thread runs them in order through run_completions(): it applies the new snapshot, emits the
// signals and sends the method reply. Exactly one completion per task, even when the task throws.
// HOSTDEV_ASSERT_BUS_THREAD() checks, in builds with assertions, that bus-only code runs on the bus thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace hostdev::daemon {

// Records the calling thread as the bus thread (once, at start).
void mark_bus_thread() noexcept;
bool on_bus_thread() noexcept;

#ifdef NDEBUG
#define HOSTDEV_ASSERT_BUS_THREAD() ((void)0)
#else
#define HOSTDEV_ASSERT_BUS_THREAD() ::hostdev::daemon::assert_bus_thread(__func__)
#endif
void assert_bus_thread(const char *function) noexcept; // aborts with a message when not on the bus thread

class Worker {
public:
  using Completion = std::function<void()>; // bus thread
  using Task = std::function<Completion()>; // a worker thread, with the core lock held

  // `threads` workers (1 serializes everything). Throws std::runtime_error when no eventfd can be had.
  explicit Worker(unsigned threads = 1);
  ~Worker();
  Worker(const Worker &) = delete;
  Worker &operator=(const Worker &) = delete;

  // Starts the worker threads. Tasks submitted before wait for them.
  void start();
  // Bus thread: queues `task`. Its completion (if it returns one) runs on the bus thread later. `keys`: what it
  // touches; a task waits for every earlier task that shares a key with it; no keys = every key.
  void submit(Task task, std::vector<std::string> keys = {});
  // Bus thread: the file descriptor to poll for POLLIN; then call run_completions().
  int wake_fd() const noexcept { return wake_fd_; }
  // Bus thread: runs every completion posted so far, in order. A completion that throws is logged.
  void run_completions();
  // Bus thread: tasks submitted whose completion has not run yet.
  unsigned in_flight() const noexcept { return in_flight_; }
  // Drops the tasks not started (their callers see the name vanish), waits for the running ones, then runs the
  // completions that are left.
  void stop();

private:
  struct Queued {
    Task task;
    std::vector<std::string> keys; // empty: every key
    bool running = false;
  };
  static bool conflict(const Queued &a, const Queued &b);
  void loop();

  unsigned threads_;
  std::mutex mutex_; // the queues
  std::mutex core_;  // the core lock: held by a running task except while it waits for the kernel
  std::condition_variable cv_;
  std::list<Queued> tasks_; // queued and running, in submission order
  std::deque<Completion> completions_;
  bool stopping_ = false;
  int wake_fd_ = -1;
  unsigned in_flight_ = 0; // bus thread
  std::vector<std::thread> pool_;
};

} // namespace hostdev::daemon
