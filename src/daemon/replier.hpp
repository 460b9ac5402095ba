// The replier thread (see worker.hpp): builds and sends the replies too big to build on the bus thread, so that
// one client's 3 MB ListAvailable does not hold up every other client's calls.
//
// A job gets everything it needs by value: the method call (sdbus-c++ guards the connection's sd-bus calls,
// creating and sending a reply included, with its own lock) and the kept reply (immutable Wire data, see
// wire.hpp). It never touches the bus objects or sdbus::Variant. After each job the replier wakes the bus loop:
// a reply larger than the socket's buffer is only partly written by the send and the rest is written by the bus
// loop as the socket drains, which it only knows to watch for after a wake-up.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace hostdev::daemon {

class Replier {
public:
  using Job = std::function<void()>;

  // Throws std::runtime_error when no eventfd can be had.
  Replier();
  ~Replier(); // stop()
  Replier(const Replier &) = delete;
  Replier &operator=(const Replier &) = delete;

  void start();
  // Queues `job`; jobs run in the order they were posted. A job that throws is logged.
  void post(Job job);
  // Bus thread: poll it for POLLIN, then call drain() and let the connection write what is queued.
  int wake_fd() const noexcept { return wake_fd_; }
  void drain() noexcept;
  // Drops the jobs not started (their callers get no reply: they see the daemon go), waits for the running one.
  void stop();

private:
  void loop();

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  int wake_fd_ = -1;
  std::thread thread_;
};

} // namespace hostdev::daemon
