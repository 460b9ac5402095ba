#include "core/error.hpp"
#include "core/process.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <string>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace hostdev::core;

namespace {

// A child that sleeps until killed; killed and reaped at the end of the scope.
struct Child {
  pid_t pid = ::fork();
  Child() {
    if (pid == 0) {
      ::pause();
      ::_exit(0);
    }
  }
  ~Child() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
  Child(const Child &) = delete;
  Child &operator=(const Child &) = delete;
};

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

} // namespace

TEST(Process, ReadsItsOwnParentUidAndStartTime) {
  const auto me = read_process(static_cast<std::uint32_t>(::getpid()));
  ASSERT_TRUE(me);
  EXPECT_EQ(me->ppid, static_cast<std::uint32_t>(::getppid()));
  EXPECT_EQ(me->uid, ::getuid());
  EXPECT_GT(me->start_time, 0U);
  EXPECT_EQ(process_start_time(me->pid), me->start_time);
  EXPECT_EQ(read_process(0), std::nullopt);
  EXPECT_EQ(process_start_time(0), 0U);
}

TEST(Process, TheTreeIsTheAncestorAndItsDescendantsWithTheRightStartTime) {
  const auto self = static_cast<std::uint32_t>(::getpid());
  const auto start = process_start_time(self);
  Child child;
  const auto pid = static_cast<std::uint32_t>(child.pid);
  EXPECT_TRUE(in_process_tree(pid, self, start));
  EXPECT_TRUE(in_process_tree(self, self, start));
  EXPECT_FALSE(in_process_tree(pid, self, start + 1)) << "another process that had the pid";
  EXPECT_FALSE(in_process_tree(self, pid, process_start_time(pid))) << "a parent is not in its child's tree";
  EXPECT_FALSE(in_process_tree(pid, 1, process_start_time(1))) << "init's tree would hold every orphan";
}

TEST(Process, APidfdNamesItsProcessUntilItEnds) {
  auto *child = new Child;
  const int fd = pidfd_open(child->pid);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(pid_of_pidfd(fd), std::optional<std::uint32_t>(static_cast<std::uint32_t>(child->pid)));
  EXPECT_TRUE(pidfd_alive(fd));
  delete child; // killed and reaped
  EXPECT_FALSE(pidfd_alive(fd));
  EXPECT_EQ(pid_of_pidfd(fd), std::nullopt);
  ::close(fd);
  const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  EXPECT_EQ(pid_of_pidfd(null), std::nullopt) << "not a pidfd";
  EXPECT_FALSE(pidfd_alive(null));
  ::close(null);
  EXPECT_EQ(pid_of_pidfd(-1), std::nullopt);
}

TEST(Process, AProcessThatMayNotBeSignalledStillCountsAsAlive) {
  // hostdevd's unit has no CAP_KILL: another user's VMM answers EPERM to signal 0, which is not "ended".
  if (::geteuid() != 0)
    GTEST_SKIP() << "needs root to run processes as two other uids";
  const pid_t other = ::fork();
  if (other == 0) {
    if (::setuid(65534) != 0)
      ::_exit(2);
    ::pause();
    ::_exit(0);
  }
  const int fd = pidfd_open(other);
  ASSERT_GE(fd, 0);
  const pid_t checker = ::fork();
  if (checker == 0) {
    if (::setuid(65533) != 0) // another uid, and no capability left
      ::_exit(2);
    ::_exit(pidfd_alive(fd) ? 0 : 1);
  }
  int status = 0;
  ::waitpid(checker, &status, 0);
  ::kill(other, SIGKILL);
  ::waitpid(other, nullptr, 0);
  ::close(fd);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "pidfd_alive said a running process had ended";
}

namespace {
bool has_cap_sys_resource() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("CapEff:", 0) == 0)
      return (std::stoull(line.substr(7), nullptr, 16) >> 24) & 1; // CAP_SYS_RESOURCE
  return false;
}
struct rlimit64 memlock_of(pid_t pid) {
  struct rlimit64 now {};
  EXPECT_EQ(::prlimit64(pid, RLIMIT_MEMLOCK, nullptr, &now), 0);
  return now;
}
} // namespace

TEST(Process, RaiseMemlockRaisesTheSoftLimitAndNeverLowers) {
  Child child;
  const auto hard = memlock_of(child.pid).rlim_max;
  struct rlimit64 low {
    1U << 20, hard
  };
  ASSERT_EQ(::prlimit64(child.pid, RLIMIT_MEMLOCK, &low, nullptr), 0);
  const std::uint64_t want = hard == RLIM64_INFINITY ? 4ULL << 20 : std::min<std::uint64_t>(4ULL << 20, hard);
  EXPECT_EQ(raise_memlock(static_cast<std::uint32_t>(child.pid), want), want);
  EXPECT_EQ(memlock_of(child.pid).rlim_cur, want);
  EXPECT_EQ(memlock_of(child.pid).rlim_max, hard);
  EXPECT_EQ(raise_memlock(static_cast<std::uint32_t>(child.pid), 1ULL << 20), want) << "never lowered";
  EXPECT_EQ(memlock_of(child.pid).rlim_cur, want);
}

TEST(Process, RaisingPastTheHardLimitTakesCapSysResource) {
  Child child;
  const auto hard = memlock_of(child.pid).rlim_max;
  if (hard == RLIM64_INFINITY)
    GTEST_SKIP() << "the hard limit is unlimited here";
  const std::uint64_t want = hard + (64ULL << 20);
  if (has_cap_sys_resource()) {
    EXPECT_EQ(raise_memlock(static_cast<std::uint32_t>(child.pid), want), want);
    EXPECT_EQ(memlock_of(child.pid).rlim_cur, want);
    EXPECT_EQ(memlock_of(child.pid).rlim_max, want) << "the hard limit follows";
    return;
  }
  try {
    raise_memlock(static_cast<std::uint32_t>(child.pid), want);
    ADD_FAILURE() << "raised past the hard limit without CAP_SYS_RESOURCE";
  } catch (const Error &e) {
    EXPECT_EQ(e.code(), Errc::KernelError);
    EXPECT_EQ(e.sys_errno(), EPERM);
    EXPECT_NE(std::string(e.what()).find("CAP_SYS_RESOURCE"), std::string::npos) << e.what();
  }
  EXPECT_EQ(memlock_of(child.pid).rlim_max, hard);
}

TEST(Process, RaiseMemlockOfAGoneProcessIsAKernelError) {
  pid_t pid = 0;
  {
    Child child;
    pid = child.pid;
  }
  try {
    raise_memlock(static_cast<std::uint32_t>(pid), 1ULL << 20);
    ADD_FAILURE() << "no error";
  } catch (const Error &e) {
    EXPECT_EQ(e.code(), Errc::KernelError);
    EXPECT_EQ(e.sys_errno(), ESRCH);
  }
}

TEST(Process, MemoryTotalIsTheHostsRam) { EXPECT_GT(memory_total(), 64ULL << 20); }
