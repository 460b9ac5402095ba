#include "daemon/cmdline.hpp"

#include "core/validate.hpp"

#include "config.h"
#include "names.hpp"

#include <cerrno>
#include <cstdlib>
#include <iostream>
#include <optional>

namespace hostdev::daemon {
namespace {

constexpr int kMaxWriteTimeoutSeconds = 600;

// "10", "0.2", "1.5": seconds, positive, at most kMaxWriteTimeoutSeconds, to the millisecond.
std::optional<std::chrono::milliseconds> parse_write_timeout(const std::string &text) {
  if (text.find_first_of("0123456789") == std::string::npos ||
      text.find_first_not_of("0123456789.") != std::string::npos || text.find('.') != text.rfind('.'))
    return std::nullopt;
  char *end = nullptr;
  errno = 0;
  const double secs = std::strtod(text.c_str(), &end);
  if (errno != 0 || end == nullptr || *end != '\0' || !(secs > 0) || secs > kMaxWriteTimeoutSeconds)
    return std::nullopt;
  const auto ms = static_cast<long long>(secs * 1000.0 + 0.5);
  if (ms < 1)
    return std::nullopt;
  return std::chrono::milliseconds(ms);
}

void usage(std::ostream &out, const std::string &extra) {
  out << "usage: hostdevd [OPTIONS]\n"
         "The hostdev D-Bus system service "
      << names::kBusName
      << ".\n\n"
         "  --sysfs-root DIR      read and write DIR/sys instead of /sys (default /)\n"
         "  --state-dir DIR       the store (default "
      << names::kDefaultStateDir
      << ")\n"
         "  --bus system|session|ADDRESS\n"
         "                        the bus to serve on (default system)\n"
         "  --idle-exit SECONDS   exit after this long without calls or work (default 0 = never)\n"
         "  --write-timeout SECONDS\n"
         "                        how long one kernel write may take before the call fails with\n"
         "                        Error.Timeout and the device is marked busy until Restore\n"
         "                        (default "
      << seconds_text(core::Sysfs::kDefaultDeadline) << ", fractions allowed: 0.001 to " << kMaxWriteTimeoutSeconds
      << ")\n"
         "  --restore-wait SECONDS\n"
         "                        after a reboot: how long to wait for a missing mdev parent or vGPU VF\n"
         "                        (a driver still loading) before its instance is degraded (default 10)\n"
         "  --memlock-max SIZE    the most locked memory (RLIMIT_MEMLOCK) Instance.RaiseMemlock gives all of\n"
         "                        one user's leased VMMs together: 2048 (MiB), 16G ... (default: half the RAM)\n"
         "  --help                this text\n"
         "  --version             the version\n"
      << extra;
}

} // namespace

std::string seconds_text(std::chrono::milliseconds ms) {
  std::string text = std::to_string(ms.count() / 1000);
  if (const auto frac = ms.count() % 1000; frac != 0) {
    std::string digits = std::to_string(frac);
    digits.insert(0, 3 - digits.size(), '0');
    while (digits.back() == '0')
      digits.pop_back();
    text += "." + digits;
  }
  return text;
}

int parse_command_line(int argc, char **argv, DaemonOptions &options, std::vector<std::string> *unparsed,
                       const std::string &extra_usage) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char *name) -> std::optional<std::string> {
      if (i + 1 >= argc) {
        std::cerr << "hostdevd: " << name << " needs a value\n";
        return std::nullopt;
      }
      return std::string(argv[++i]);
    };
    if (arg == "--help" || arg == "-h") {
      usage(std::cout, extra_usage);
      return 0;
    }
    if (arg == "--version") {
      std::cout << "hostdevd " << HOSTDEV_VERSION << "\n";
      return 0;
    }
    if (arg == "--sysfs-root" || arg == "--state-dir" || arg == "--bus" || arg == "--idle-exit" ||
        arg == "--write-timeout" || arg == "--restore-wait" || arg == "--memlock-max") {
      auto v = value(arg.c_str());
      if (!v)
        return 2;
      if (arg == "--sysfs-root")
        options.sysfs_root = *v;
      else if (arg == "--state-dir")
        options.state_dir = *v;
      else if (arg == "--bus")
        options.bus = *v;
      else if (arg == "--memlock-max") {
        const auto bytes = core::parse_memory_size(*v);
        if (!bytes) {
          std::cerr << "hostdevd: --memlock-max wants a size such as 2048 (MiB), 16G or 1T, not '" << *v << "'\n";
          return 2;
        }
        options.memlock_max = *bytes;
      } else if (arg == "--restore-wait") {
        auto wait = *v == "0" ? std::optional<std::chrono::milliseconds>(0) : parse_write_timeout(*v);
        if (!wait) {
          std::cerr << "hostdevd: --restore-wait wants seconds from 0 to " << kMaxWriteTimeoutSeconds << ", not '" << *v
                    << "'\n";
          return 2;
        }
        options.restore_wait = *wait;
      } else if (arg == "--write-timeout") {
        auto timeout = parse_write_timeout(*v);
        if (!timeout) {
          std::cerr << "hostdevd: --write-timeout wants seconds from 0.001 to " << kMaxWriteTimeoutSeconds
                    << " (fractions allowed, e.g. 0.5), not '" << *v << "'\n";
          return 2;
        }
        options.write_timeout = *timeout;
      } else {
        char *end = nullptr;
        errno = 0;
        const long secs = std::strtol(v->c_str(), &end, 10);
        if (v->empty() || *end != '\0' || errno != 0 || secs < 0) {
          std::cerr << "hostdevd: --idle-exit wants a number of seconds >= 0, not '" << *v << "'\n";
          return 2;
        }
        options.idle_exit = std::chrono::seconds(secs);
      }
      continue;
    }
    if (unparsed != nullptr) {
      unparsed->push_back(arg);
      continue;
    }
    std::cerr << "hostdevd: unknown argument '" << arg << "' (see --help)\n";
    return 2;
  }
  if (options.bus.empty()) {
    std::cerr << "hostdevd: --bus must not be empty\n";
    return 2;
  }
  return -1;
}

} // namespace hostdev::daemon
