#include "daemon/log.hpp"

#include <systemd/sd-journal.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <vector>

namespace hostdev::daemon {
namespace {

// JOURNAL_STREAM is "DEV:INODE" of the stream systemd connected stderr to; only trust it when stderr matches.
bool stderr_is_journal() {
  static const bool is = [] {
    const char *env = std::getenv("JOURNAL_STREAM");
    if (env == nullptr)
      return false;
    unsigned long long dev = 0, ino = 0;
    if (std::sscanf(env, "%llu:%llu", &dev, &ino) != 2)
      return false;
    struct stat st {};
    return ::fstat(2, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
  }();
  return is;
}

const char *level_name(Level level) {
  switch (level) {
  case Level::Error: return "error";
  case Level::Warning: return "warning";
  case Level::Notice: return "notice";
  case Level::Info: return "info";
  case Level::Debug: return "debug";
  }
  return "info";
}

} // namespace

void log(Level level, const std::string &message, const std::map<std::string, std::string> &fields) {
  if (stderr_is_journal()) {
    std::vector<std::string> items;
    items.push_back("MESSAGE=" + message);
    items.push_back("PRIORITY=" + std::to_string(static_cast<int>(level)));
    items.push_back("SYSLOG_IDENTIFIER=hostdevd");
    for (const auto &[key, value] : fields)
      items.push_back(key + "=" + value);
    std::vector<struct iovec> iov;
    for (auto &item : items)
      iov.push_back({item.data(), item.size()});
    if (sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) >= 0)
      return;
  }
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  std::string line = "hostdevd: " + std::string(level_name(level)) + ": " + message;
  for (const auto &[key, value] : fields)
    line += " " + key + "=" + value;
  line += "\n";
  std::fputs(line.c_str(), stderr);
}

} // namespace hostdev::daemon
