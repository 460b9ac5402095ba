// Every read, readlink, listing and write of hostdev goes through one Sysfs object, relative to one root
// directory file descriptor ("/" on a real host; a captured tree in tests and diagnosis). Paths are resolved
// with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) — or, where openat2 is unusable (old kernels, seccomp
// filters that refuse it), by an equivalent walk in user space: nothing can escape the root, whatever the path says.
#pragma once

#include "core/fd.hpp"

#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hostdev::core {

class Sysfs {
public:
  static constexpr std::chrono::milliseconds kDefaultDeadline{10000};

  // How paths are resolved beneath the root: Auto probes openat2 once and falls back to Userspace.
  enum class Resolver { Auto, Kernel, Userspace };

  // Opens `root` as the root directory. Throws Error(InvalidArgument) when it is not a directory.
  explicit Sysfs(const std::string &root = "/", Resolver resolver = Resolver::Auto);
  ~Sysfs();
  Sysfs(const Sysfs &) = delete;
  Sysfs &operator=(const Sysfs &) = delete;

  const std::string &root() const noexcept { return root_; }
  // The absolute path a hypervisor or a person would use: "/sys/bus/..." on a real host, root + "/sys/..." otherwise.
  std::string display_path(std::string_view path) const;

  // `path` is relative to the root ("sys/bus/pci/devices/0000:00:02.0/vendor"); a leading '/' is ignored.
  // Reads return nullopt when the file is absent or cannot be read.
  std::optional<std::string> read(std::string_view path) const;
  // As read(), with trailing white space (the newline sysfs adds) removed, as valid UTF-8 (to_valid_utf8).
  std::optional<std::string> read_trimmed(std::string_view path) const;
  std::optional<std::string> readlink(std::string_view path) const;
  // The last component of the link target ("e1000e" for driver -> ../../bus/pci/drivers/e1000e), as valid UTF-8.
  std::optional<std::string> link_name(std::string_view path) const;
  // Entry names of a directory, sorted, without "." and ".."; empty when absent.
  std::vector<std::string> list(std::string_view path) const;
  // As list(), but nullopt (errno set) when the directory exists and cannot be read (EACCES, EPERM ...): for
  // callers that must not mistake "cannot tell" for "empty".
  std::optional<std::vector<std::string>> list_checked(std::string_view path) const;
  bool exists(std::string_view path) const;

  // A directory beneath the root, opened once, whose entries are then read with one openat (or readlinkat)
  // each: for the many attributes of one device. Names are single entries ("vendor", "driver"); a name with
  // a '/' or ".." answers nullopt, and a link is never followed.
  class Dir {
  public:
    std::optional<std::string> read_trimmed(std::string_view name) const; // as Sysfs::read_trimmed
    std::optional<std::string> link_name(std::string_view name) const;    // as Sysfs::link_name
    std::vector<std::string> list() const;                                // sorted, without . and ..

  private:
    friend class Sysfs;
    explicit Dir(Fd fd) : fd_(std::move(fd)) {}
    Fd fd_;
  };
  // nullopt when `path` is not a directory beneath the root (or cannot be opened).
  std::optional<Dir> open_dir(std::string_view path) const;
  bool is_dir(std::string_view path) const;

  // Writes `value` to an existing attribute. A write that fails throws Error(KernelError) with the kernel's
  // reason; one that does not return within `deadline` throws Error(Timeout) and is left to finish (or hang)
  // on its own thread — the kernel may still be working.
  void write(std::string_view path, std::string_view value,
             std::chrono::milliseconds deadline = kDefaultDeadline) const;

  // Every write since the last call that returned or passed its deadline, in order (what a model of the host
  // must read again). At most kWrittenKept are kept; past that `overflowed` says some were dropped.
  struct Written {
    std::vector<std::pair<std::string, std::string>> writes; // path (relative), value
    bool overflowed = false;
  };
  static constexpr std::size_t kWrittenKept = 4096;
  Written take_written() const;

  // Around the wait for a kernel write on the calling thread: `before` runs when the write has been handed to its
  // thread, `after` when it returned or its deadline passed. A caller that holds a lock others need while the
  // kernel works (the daemon's core lock) releases it in `before` and takes it back in `after`. Per thread;
  // nullptr clears.
  struct WaitHooks {
    std::function<void()> before, after;
  };
  static void set_thread_wait_hooks(const WaitHooks *hooks) noexcept;
  // Sleeps with the calling thread's wait hooks around the sleep (a retry waiting for the kernel).
  static void pause(std::chrono::milliseconds duration);

  // Tests only: called on the writing thread after a write reached a file of the fixture tree, to play the
  // kernel's side (create a driver link, an mdev directory ...). Returns 0 or an errno the write then fails with.
  using WriteHook = std::function<int(const std::string &path, std::string_view value)>;
  void set_write_hook(WriteHook hook) { hook_ = std::move(hook); }

  // An O_CLOEXEC file descriptor beneath the root, or -1 with errno set.
  int open_beneath(std::string_view path, int flags) const;

  Resolver resolver() const noexcept { return resolver_; }

private:
  int resolve(const std::string &rel, int flags) const;
  std::string root_;
  int root_fd_ = -1;
  Resolver resolver_ = Resolver::Kernel;
  WriteHook hook_;
  void note_written(const std::string &path, std::string_view value) const;
  mutable std::mutex written_mutex_;
  mutable Written written_;
};

} // namespace hostdev::core
