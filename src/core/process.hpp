// Processes by pid and pidfd, read from /proc: for leases (a bus connection's process) and for raising a VMM's
// RLIMIT_MEMLOCK (Instance.RaiseMemlock). Everything read here is untrusted: a process can change its name to
// anything and end at any moment.
#pragma once

#include <cstdint>
#include <optional>

namespace hostdev::core {

struct ProcessInfo {
  std::uint32_t pid = 0;
  std::uint32_t ppid = 0;
  std::uint32_t uid = 0;        // real uid
  std::uint64_t start_time = 0; // field 22 of /proc/<pid>/stat: clock ticks since boot
};

// nullopt when the process is gone or its files cannot be read.
std::optional<ProcessInfo> read_process(std::uint32_t pid);

// The start time of a process: with the pid it names one process for good, where a pid alone may be reused.
// 0 when unreadable.
std::uint64_t process_start_time(std::uint32_t pid);

// Whether `pid` is the process (ancestor, ancestor_start) or one of its descendants, by its parent links (at most
// 64 steps up). A process whose parent died is re-parented and so no longer in the tree.
bool in_process_tree(std::uint32_t pid, std::uint32_t ancestor, std::uint64_t ancestor_start);

// The pid of the process a pidfd refers to (the "Pid:" of its fdinfo); nullopt when `fd` is not a pidfd or its
// process has ended.
std::optional<std::uint32_t> pid_of_pidfd(int fd);

// Whether the pidfd's process still runs (pidfd_send_signal with signal 0; a process that may not be signalled,
// EPERM, runs too).
bool pidfd_alive(int fd);

// RLIMIT_MEMLOCK of `pid` raised to `bytes`, soft and hard (neither is ever lowered). Returns the soft limit now.
// Throws Error(KernelError) with the errno when the kernel refuses (hostdevd needs CAP_SYS_RESOURCE).
std::uint64_t raise_memlock(std::uint32_t pid, std::uint64_t bytes);

// MemTotal of /proc/meminfo in bytes, 0 when unreadable.
std::uint64_t memory_total();

} // namespace hostdev::core
