// A text polkit authentication agent (pkttyagent) for this process, started before a mutating call when the
// caller is on a terminal, so that polkit can ask for a password on that terminal.
#pragma once

#include <string>
#include <sys/types.h>

namespace hostdev::cli {

class PolkitAgent {
public:
  PolkitAgent() = default;
  ~PolkitAgent() { stop(); }
  PolkitAgent(const PolkitAgent &) = delete;
  PolkitAgent &operator=(const PolkitAgent &) = delete;

  // Spawns `pkttyagent --process <our pid> --notify-fd N` (for this process only) and waits (at most a few seconds)
  // until it has registered with polkit. `system_bus_address` (may be empty) becomes the agent's
  // DBUS_SYSTEM_BUS_ADDRESS. Returns false (and the call goes ahead without an agent) when pkttyagent is missing or
  // fails.
  bool start(const std::string &system_bus_address);
  void stop();

private:
  pid_t pid_ = -1;
};

} // namespace hostdev::cli
