#include "daemon/replier.hpp"

#include "daemon/errors.hpp"
#include "daemon/log.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

namespace hostdev::daemon {

Replier::Replier() {
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0)
    throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
}

Replier::~Replier() {
  stop();
  ::close(wake_fd_);
}

void Replier::start() {
  if (!thread_.joinable())
    thread_ = std::thread([this] { loop(); });
}

void Replier::post(Job job) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_)
      return;
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
}

void Replier::drain() noexcept {
  std::uint64_t count = 0;
  [[maybe_unused]] auto r = ::read(wake_fd_, &count, sizeof count);
}

void Replier::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    jobs_.clear();
  }
  cv_.notify_all();
  if (thread_.joinable())
    thread_.join();
}

void Replier::loop() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (stopping_)
        return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    try {
      job();
    } catch (...) {
      log(Level::Warning, "sending a reply failed: " + describe_exception(std::current_exception()));
    }
    job = nullptr; // its call and reply go before the bus loop looks again
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
  }
}

} // namespace hostdev::daemon
