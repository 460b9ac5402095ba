#include "daemon/worker.hpp"

#include "core/sysfs.hpp"
#include "fixtures/test_util.hpp"

#include <gtest/gtest.h>

#include <poll.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <string>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

using hostdev::daemon::Worker;
using namespace std::chrono_literals;

namespace {

// Waits for the worker's wake fd, then runs the completions; until `done` or a deadline.
template <class Done> void pump(Worker &worker, Done done) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    struct pollfd fd = {worker.wake_fd(), POLLIN, 0};
    if (::poll(&fd, 1, 100) > 0)
      worker.run_completions();
  }
}

class WorkerTest : public ::testing::Test {
protected:
  void SetUp() override { hostdev::daemon::mark_bus_thread(); }
};

} // namespace

TEST_F(WorkerTest, TasksRunInOrderOnTheWorkerAndCompleteOnTheBusThread) {
  Worker worker;
  worker.start();
  const auto bus = std::this_thread::get_id();
  std::vector<int> ran, completed;
  std::mutex m;
  std::vector<std::thread::id> task_threads;
  for (int i = 0; i < 5; ++i)
    worker.submit([&, i]() -> Worker::Completion {
      {
        std::lock_guard lock(m);
        ran.push_back(i);
        task_threads.push_back(std::this_thread::get_id());
      }
      return [&, i] {
        EXPECT_EQ(std::this_thread::get_id(), bus);
        EXPECT_TRUE(hostdev::daemon::on_bus_thread());
        completed.push_back(i);
      };
    });
  EXPECT_EQ(worker.in_flight(), 5u);
  pump(worker, [&] { return completed.size() == 5; });
  EXPECT_EQ(ran, (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_EQ(completed, (std::vector<int>{0, 1, 2, 3, 4}));
  for (auto id : task_threads)
    EXPECT_NE(id, bus);
  EXPECT_EQ(worker.in_flight(), 0u);
}

TEST_F(WorkerTest, ATaskThatThrowsStillCompletes) {
  Worker worker;
  worker.start();
  worker.submit([]() -> Worker::Completion { throw std::runtime_error("boom"); });
  bool second = false;
  worker.submit([&]() -> Worker::Completion { return [&] { second = true; }; });
  pump(worker, [&] { return second; });
  EXPECT_TRUE(second);
  EXPECT_EQ(worker.in_flight(), 0u) << "the failed task was accounted for";
}

TEST_F(WorkerTest, StopDropsQueuedTasksAndFinishesTheRunningOne) {
  Worker worker;
  worker.start();
  std::atomic<bool> started{false}, release{false};
  bool first_done = false, second_ran = false;
  worker.submit([&]() -> Worker::Completion {
    started = true;
    while (!release)
      std::this_thread::sleep_for(1ms);
    return [&] { first_done = true; };
  });
  worker.submit([&]() -> Worker::Completion {
    second_ran = true;
    return {};
  });
  while (!started)
    std::this_thread::sleep_for(1ms);
  std::thread releaser([&] {
    std::this_thread::sleep_for(50ms);
    release = true;
  });
  worker.stop();
  releaser.join();
  EXPECT_TRUE(first_done) << "the running task's completion (its reply) still runs";
  EXPECT_FALSE(second_ran);
  EXPECT_EQ(worker.in_flight(), 0u);
}

TEST_F(WorkerTest, WhatATaskHoldsIsReleasedBeforeItsCompletionRuns) {
  // A task's captures (a method call's reply handle) must never be the last reference left on the worker.
  Worker worker;
  worker.start();
  auto held = std::make_shared<int>(1);
  std::weak_ptr<int> watch = held;
  long uses_in_completion = -1;
  bool done = false;
  worker.submit([&, held = std::move(held)]() -> Worker::Completion {
    return [&, held] {
      uses_in_completion = held.use_count();
      done = true;
    };
  });
  // Give the worker time to have destroyed the task before the completion runs.
  std::this_thread::sleep_for(50ms);
  pump(worker, [&] { return done; });
  EXPECT_EQ(uses_in_completion, 1) << "only the completion still holds it";
  EXPECT_TRUE(watch.expired());
}

TEST_F(WorkerTest, BusOnlyCodeOffTheBusThreadAborts) {
  EXPECT_DEATH(std::thread([] { hostdev::daemon::assert_bus_thread("test"); }).join(), "must run on the bus thread");
}

TEST_F(WorkerTest, TasksOnOtherKeysGoOnWhileOneWaitsForTheKernel) {
  // The core lock is let go only while a task waits for a kernel write (Sysfs::WaitHooks).
  hostdev::test::TempDir dir;
  std::ofstream(dir.path() / "slow") << "";
  hostdev::core::Sysfs sysfs(dir.str());
  sysfs.set_write_hook([](const std::string &path, std::string_view) {
    if (path == "slow")
      std::this_thread::sleep_for(600ms);
    return 0;
  });
  Worker worker(3);
  worker.start();
  std::vector<std::string> order;
  worker.submit(
      [&]() -> Worker::Completion {
        sysfs.write("slow", "1");
        return [&] { order.emplace_back("slow device"); };
      },
      {"pci:a"});
  std::this_thread::sleep_for(50ms); // the slow one is in the kernel
  worker.submit([&]() -> Worker::Completion { return [&] { order.emplace_back("same device"); }; }, {"pci:a"});
  worker.submit([&]() -> Worker::Completion { return [&] { order.emplace_back("other device"); }; }, {"pci:b"});
  pump(worker, [&] { return order.size() == 3; });
  EXPECT_EQ(order, (std::vector<std::string>{"other device", "slow device", "same device"}));
}

TEST_F(WorkerTest, ATaskWithoutKeysWaitsForEverythingBefore) {
  Worker worker(3);
  worker.start();
  std::atomic<int> running{0};
  std::atomic<bool> overlap{false};
  std::vector<std::string> order;
  auto task = [&](std::string name, std::chrono::milliseconds d) {
    return [&, name, d]() -> Worker::Completion {
      if (++running > 1 && name == "everything")
        overlap = true;
      std::this_thread::sleep_for(d);
      --running;
      return [&, name] { order.push_back(name); };
    };
  };
  worker.submit(task("a", 100ms), {"pci:a"});
  worker.submit(task("everything", 1ms), {});
  worker.submit(task("b", 1ms), {"pci:b"});
  pump(worker, [&] { return order.size() == 3; });
  EXPECT_EQ(order, (std::vector<std::string>{"a", "everything", "b"}));
  EXPECT_FALSE(overlap);
}
