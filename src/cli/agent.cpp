#include "cli/agent.hpp"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace hostdev::cli {

bool PolkitAgent::start(const std::string &system_bus_address) {
  if (pid_ > 0)
    return true;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0)
    return false;
  const std::string parent = std::to_string(getpid());
  const char *binary = "pkttyagent"; // from PATH (Debian 12: package polkitd)
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return false;
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    close(fds[0]);
    const int flags = fcntl(fds[1], F_GETFD);
    fcntl(fds[1], F_SETFD, flags & ~FD_CLOEXEC);
    if (!system_bus_address.empty())
      setenv("DBUS_SYSTEM_BUS_ADDRESS", system_bus_address.c_str(), 1);
    const std::string notify = std::to_string(fds[1]);
    // Registered for this process only, and not as a fallback: polkit uses a fallback agent only after finding
    // the subject's login session, so without one (ssh without logind, a container) it would never ask.
    std::vector<const char *> argv{binary, "--process", parent.c_str(), "--notify-fd", notify.c_str(), nullptr};
    execvp(binary, const_cast<char *const *>(argv.data()));
    const char failed = 'E';
    (void)!write(fds[1], &failed, 1);
    _exit(127);
  }
  close(fds[1]);
  pid_ = pid;
  // The agent closes the notify fd once it has registered with polkit; a failed exec writes 'E' first.
  pollfd p{fds[0], POLLIN, 0};
  int r;
  do
    r = poll(&p, 1, 10000);
  while (r < 0 && errno == EINTR);
  char byte = 0;
  const bool ready = r > 0 && read(fds[0], &byte, 1) == 0;
  close(fds[0]);
  if (!ready)
    stop(); // missing binary, failed registration, or no word in time: go ahead without an agent
  return ready;
}

void PolkitAgent::stop() {
  if (pid_ <= 0)
    return;
  kill(pid_, SIGTERM);
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

} // namespace hostdev::cli
