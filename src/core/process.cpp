#include "core/process.hpp"

#include "core/error.hpp"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace hostdev::core {

namespace {

std::string proc_file(std::uint32_t pid, const char *name) { return "/proc/" + std::to_string(pid) + "/" + name; }

std::optional<std::uint64_t> number(const std::string &text) {
  if (text.empty() || text.size() > 20 || text.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  errno = 0;
  const auto n = std::strtoull(text.c_str(), nullptr, 10);
  return errno == 0 ? std::optional<std::uint64_t>(n) : std::nullopt;
}

} // namespace

std::optional<ProcessInfo> read_process(std::uint32_t pid) {
  if (pid == 0)
    return std::nullopt;
  ProcessInfo info;
  info.pid = pid;
  {
    std::ifstream in(proc_file(pid, "stat"));
    std::string text;
    if (!in || !std::getline(in, text))
      return std::nullopt;
    const auto close = text.rfind(')'); // the command may hold spaces and parentheses
    if (close == std::string::npos)
      return std::nullopt;
    std::istringstream fields(text.substr(close + 1));
    std::string field;
    bool have_ppid = false, have_start = false;
    for (int i = 3; i <= 22 && fields >> field; ++i) {
      if (i == 4)
        if (auto n = number(field); n && *n <= UINT32_MAX)
          info.ppid = static_cast<std::uint32_t>(*n), have_ppid = true;
      if (i == 22)
        if (auto n = number(field))
          info.start_time = *n, have_start = true;
    }
    if (!have_ppid || !have_start)
      return std::nullopt;
  }
  std::ifstream in(proc_file(pid, "status"));
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("Uid:", 0) == 0) {
      std::istringstream fields(line.substr(4));
      std::string real;
      fields >> real;
      auto n = number(real);
      if (!n || *n > UINT32_MAX)
        return std::nullopt;
      info.uid = static_cast<std::uint32_t>(*n);
      return info;
    }
  return std::nullopt;
}

std::uint64_t process_start_time(std::uint32_t pid) {
  const auto info = read_process(pid);
  return info ? info->start_time : 0;
}

bool in_process_tree(std::uint32_t pid, std::uint32_t ancestor, std::uint64_t ancestor_start) {
  if (ancestor <= 1)
    return false; // init adopts orphans: everything would be "in" its tree
  for (int step = 0; step < 64 && pid > 1; ++step) {
    const auto info = read_process(pid);
    if (!info)
      return false;
    if (pid == ancestor)
      return info->start_time == ancestor_start;
    pid = info->ppid;
  }
  return false;
}

std::optional<std::uint32_t> pid_of_pidfd(int fd) {
  if (fd < 0)
    return std::nullopt;
  std::ifstream in("/proc/self/fdinfo/" + std::to_string(fd));
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("Pid:", 0) == 0) {
      const auto value = line.substr(
          line.find_first_not_of(" \t", 4) == std::string::npos ? line.size() : line.find_first_not_of(" \t", 4));
      auto n = number(value); // "-1" once the process has been reaped: not a number here
      if (!n || *n == 0 || *n > UINT32_MAX)
        return std::nullopt;
      return static_cast<std::uint32_t>(*n);
    }
  return std::nullopt; // not a pidfd
}

bool pidfd_alive(int fd) {
  // EPERM: the process is there but not ours to signal (hostdevd's unit has no CAP_KILL); ESRCH: it has ended.
  return ::syscall(SYS_pidfd_send_signal, fd, 0, nullptr, 0) == 0 || errno == EPERM;
}

std::uint64_t raise_memlock(std::uint32_t pid, std::uint64_t bytes) {
  const auto refused = [pid](const char *what) {
    const int err = errno;
    throw Error(Errc::KernelError,
                std::string("cannot ") + what + " the locked-memory limit of process " + std::to_string(pid) + ": " +
                    std::strerror(err) + (err == EPERM ? " (hostdevd needs CAP_SYS_RESOURCE)" : ""),
                err);
  };
  struct rlimit64 old {};
  if (::prlimit64(static_cast<pid_t>(pid), RLIMIT_MEMLOCK, nullptr, &old) != 0)
    refused("read");
  struct rlimit64 want = old;
  if (want.rlim_cur != RLIM64_INFINITY && want.rlim_cur < bytes)
    want.rlim_cur = bytes;
  if (want.rlim_max != RLIM64_INFINITY && want.rlim_max < want.rlim_cur)
    want.rlim_max = want.rlim_cur;
  if ((want.rlim_cur != old.rlim_cur || want.rlim_max != old.rlim_max) &&
      ::prlimit64(static_cast<pid_t>(pid), RLIMIT_MEMLOCK, &want, nullptr) != 0)
    refused("raise");
  return want.rlim_cur;
}

std::uint64_t memory_total() {
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  std::uint64_t kb = 0;
  while (in >> key >> kb) {
    std::getline(in, unit);
    if (key == "MemTotal:")
      return kb * 1024;
  }
  return 0;
}

} // namespace hostdev::core
