#include "core/sysfs.hpp"

#include "core/error.hpp"
#include "core/fd.hpp"
#include "core/validate.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace hostdev::core {
namespace {

thread_local const Sysfs::WaitHooks *thread_wait_hooks = nullptr;

// Strips leading slashes; refuses "..", empty components and NUL bytes so that a bad path fails early and
// visibly (openat2 would refuse an escape anyway).
std::optional<std::string> clean_relative(std::string_view path) {
  while (!path.empty() && path.front() == '/')
    path.remove_prefix(1);
  if (path.empty())
    return std::string(".");
  if (path.find('\0') != std::string_view::npos)
    return std::nullopt;
  std::size_t start = 0;
  while (start <= path.size()) {
    auto end = path.find('/', start);
    if (end == std::string_view::npos)
      end = path.size();
    auto comp = path.substr(start, end - start);
    if (comp.empty() || comp == "..")
      return std::nullopt;
    start = end + 1;
  }
  return std::string(path);
}

int openat2_beneath(int dirfd, const std::string &path, int flags) {
  struct open_how how {};
  how.flags = static_cast<unsigned long long>(flags | O_CLOEXEC);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(::syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof how));
}

std::deque<std::string> components(std::string_view path) {
  std::deque<std::string> out;
  std::size_t start = 0;
  while (start <= path.size()) {
    auto end = path.find('/', start);
    if (end == std::string_view::npos)
      end = path.size();
    if (end > start)
      out.emplace_back(path.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// What openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) does, done by hand for when openat2 is unusable (a
// kernel before 5.6, or a seccomp filter such as systemd's RestrictSUIDSGID=, which cannot look into openat2's
// flags and so refuses the call): one component at a time, relative symlinks expanded here, absolute ones
// refused, ".." never above the root, every step O_NOFOLLOW so a component swapped for a link mid-walk fails.
int userspace_beneath(int root_fd, const std::string &path, int flags) {
  std::deque<std::string> todo = components(path);
  std::vector<Fd> dirs; // below the root; the root itself is not ours to close
  auto top = [&] { return dirs.empty() ? root_fd : dirs.back().get(); };
  int links = 0;
  while (!todo.empty()) {
    const std::string comp = std::move(todo.front());
    todo.pop_front();
    if (comp == ".")
      continue;
    if (comp == "..") {
      if (dirs.empty()) {
        errno = EXDEV;
        return -1;
      }
      dirs.pop_back();
      continue;
    }
    const bool last = todo.empty();
    struct stat st {};
    if (::fstatat(top(), comp.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0)
      return -1;
    if (S_ISLNK(st.st_mode)) {
      if ((last && (flags & O_NOFOLLOW)) || ++links > 40) {
        errno = ELOOP;
        return -1;
      }
      char buf[4096];
      ssize_t n = ::readlinkat(top(), comp.c_str(), buf, sizeof buf);
      if (n < 0 || static_cast<std::size_t>(n) >= sizeof buf)
        return -1;
      if (n == 0 || buf[0] == '/') {
        errno = EXDEV;
        return -1;
      }
      auto target = components(std::string_view(buf, static_cast<std::size_t>(n)));
      todo.insert(todo.begin(), target.begin(), target.end());
      continue;
    }
    if (last)
      return ::openat(top(), comp.c_str(), flags | O_NOFOLLOW | O_CLOEXEC);
    if (!S_ISDIR(st.st_mode)) {
      errno = ENOTDIR;
      return -1;
    }
    Fd dir(::openat(top(), comp.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (dir.get() < 0)
      return -1;
    dirs.push_back(std::move(dir));
  }
  return ::openat(top(), ".", flags | O_CLOEXEC);
}

std::string errno_text(int err) { return std::strerror(err); }

} // namespace

Sysfs::Sysfs(const std::string &root, Resolver resolver) : root_(root.empty() ? "/" : root) {
  while (root_.size() > 1 && root_.back() == '/')
    root_.pop_back();
  root_fd_ = ::open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_fd_ < 0)
    fail(Errc::InvalidArgument, "cannot open root directory '" + root_ + "': " + errno_text(errno));
  if (resolver == Resolver::Auto) {
    Fd probe(openat2_beneath(root_fd_, ".", O_PATH));
    resolver = probe.get() >= 0 ? Resolver::Kernel : Resolver::Userspace;
  }
  resolver_ = resolver;
}

int Sysfs::resolve(const std::string &rel, int flags) const {
  if (resolver_ == Resolver::Userspace)
    return userspace_beneath(root_fd_, rel, flags);
  // openat2 answers EAGAIN when a rename or mount anywhere on the system raced a ".." step of the lookup (sysfs
  // links are full of them, and every store write renames a file): try again, and after a few tries resolve
  // this one path in user space, which gives the same answer without the race check.
  for (int attempt = 0; attempt < 8; ++attempt) {
    const int fd = openat2_beneath(root_fd_, rel, flags);
    if (fd >= 0 || errno != EAGAIN)
      return fd;
  }
  return userspace_beneath(root_fd_, rel, flags);
}

Sysfs::~Sysfs() {
  if (root_fd_ >= 0)
    ::close(root_fd_);
}

std::string Sysfs::display_path(std::string_view path) const {
  while (!path.empty() && path.front() == '/')
    path.remove_prefix(1);
  return (root_ == "/" ? std::string() : root_) + "/" + std::string(path);
}

int Sysfs::open_beneath(std::string_view path, int flags) const {
  auto rel = clean_relative(path);
  if (!rel) {
    errno = EINVAL;
    return -1;
  }
  return resolve(*rel, flags);
}

namespace {

// The whole content of an open attribute. A sysfs attribute comes whole in one read (a page at most), so a
// short read ends it without the second read that would return 0.
std::optional<std::string> read_fd(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return std::nullopt;
    }
    out.append(buf, static_cast<std::size_t>(n));
    if (static_cast<std::size_t>(n) < sizeof buf)
      break;
    if (out.size() > (1u << 20)) // no attribute is this large: refuse to slurp a huge file
      return std::nullopt;
  }
  return out;
}

std::string trimmed(std::string text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
    text.pop_back();
  return to_valid_utf8(text);
}

std::string last_component(std::string target) {
  while (!target.empty() && target.back() == '/')
    target.pop_back();
  auto slash = target.rfind('/');
  return to_valid_utf8(slash == std::string::npos ? target : target.substr(slash + 1));
}

// Entry names of an open directory, sorted, without "." and ".."; getdents64 straight, no DIR stream.
std::optional<std::vector<std::string>> list_fd(int fd) {
  std::vector<std::string> names;
  alignas(8) char buf[16384];
  for (;;) {
    const long n = ::syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == ENOENT || errno == ESRCH) // the directory went away meanwhile
        break;
      return std::nullopt;
    }
    if (n == 0)
      break;
    for (long pos = 0; pos < n;) {
      struct Entry {
        std::uint64_t ino;
        std::int64_t off;
        unsigned short reclen;
        unsigned char type;
        char name[1];
      };
      const auto *e = reinterpret_cast<const Entry *>(buf + pos);
      std::string_view name(e->name);
      if (name != "." && name != "..")
        names.emplace_back(name);
      pos += e->reclen;
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

// One plain name within a directory: no '/', not "." or "..", not empty.
bool is_entry_name(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos &&
         name.find('\0') == std::string_view::npos;
}

} // namespace

std::optional<std::string> Sysfs::read(std::string_view path) const {
  Fd fd(open_beneath(path, O_RDONLY | O_NOCTTY));
  if (fd.get() < 0)
    return std::nullopt;
  return read_fd(fd.get());
}

std::optional<std::string> Sysfs::read_trimmed(std::string_view path) const {
  auto text = read(path);
  if (!text)
    return text;
  return trimmed(std::move(*text));
}

std::optional<std::string> Sysfs::readlink(std::string_view path) const {
  auto rel = clean_relative(path);
  if (!rel)
    return std::nullopt;
  auto slash = rel->rfind('/');
  std::string parent = slash == std::string::npos ? "." : rel->substr(0, slash);
  std::string name = slash == std::string::npos ? *rel : rel->substr(slash + 1);
  Fd dir(resolve(parent, O_PATH | O_DIRECTORY));
  if (dir.get() < 0)
    return std::nullopt;
  char buf[4096];
  ssize_t n = ::readlinkat(dir.get(), name.c_str(), buf, sizeof buf);
  if (n < 0 || static_cast<std::size_t>(n) >= sizeof buf)
    return std::nullopt;
  return std::string(buf, static_cast<std::size_t>(n));
}

std::optional<std::string> Sysfs::link_name(std::string_view path) const {
  auto target = readlink(path);
  if (!target)
    return target;
  return last_component(std::move(*target));
}

std::vector<std::string> Sysfs::list(std::string_view path) const {
  return list_checked(path).value_or(std::vector<std::string>{});
}

std::optional<std::vector<std::string>> Sysfs::list_checked(std::string_view path) const {
  Fd fd(open_beneath(path, O_RDONLY | O_DIRECTORY));
  if (fd.get() < 0) {
    if (errno == ENOENT || errno == ENOTDIR || errno == ESRCH)
      return std::vector<std::string>{};
    return std::nullopt;
  }
  return list_fd(fd.get());
}

std::optional<Sysfs::Dir> Sysfs::open_dir(std::string_view path) const {
  Fd fd(open_beneath(path, O_RDONLY | O_DIRECTORY));
  if (fd.get() < 0)
    return std::nullopt;
  return Dir(std::move(fd));
}

std::optional<std::string> Sysfs::Dir::read_trimmed(std::string_view name) const {
  if (!is_entry_name(name))
    return std::nullopt;
  // A plain name below a directory already beneath the root, never through a link: nothing to resolve.
  Fd fd(::openat(fd_.get(), std::string(name).c_str(), O_RDONLY | O_NOCTTY | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0)
    return std::nullopt;
  auto text = read_fd(fd.get());
  if (!text)
    return text;
  return trimmed(std::move(*text));
}

std::optional<std::string> Sysfs::Dir::link_name(std::string_view name) const {
  if (!is_entry_name(name))
    return std::nullopt;
  char buf[4096];
  const ssize_t n = ::readlinkat(fd_.get(), std::string(name).c_str(), buf, sizeof buf);
  if (n < 0 || static_cast<std::size_t>(n) >= sizeof buf)
    return std::nullopt;
  return last_component(std::string(buf, static_cast<std::size_t>(n)));
}

std::vector<std::string> Sysfs::Dir::list() const { return list_fd(fd_.get()).value_or(std::vector<std::string>{}); }

bool Sysfs::exists(std::string_view path) const {
  Fd fd(open_beneath(path, O_PATH));
  return fd.get() >= 0;
}

bool Sysfs::is_dir(std::string_view path) const {
  Fd fd(open_beneath(path, O_PATH | O_DIRECTORY));
  return fd.get() >= 0;
}

void Sysfs::set_thread_wait_hooks(const WaitHooks *hooks) noexcept { thread_wait_hooks = hooks; }

void Sysfs::pause(std::chrono::milliseconds duration) {
  const WaitHooks *hooks = thread_wait_hooks;
  if (hooks != nullptr && hooks->before)
    hooks->before();
  std::this_thread::sleep_for(duration);
  if (hooks != nullptr && hooks->after)
    hooks->after();
}

void Sysfs::write(std::string_view path, std::string_view value, std::chrono::milliseconds deadline) const {
  auto rel = clean_relative(path);
  if (!rel)
    fail(Errc::InvalidArgument, "refusing to write to '" + std::string(path) + "'");
  // O_TRUNC matters only for fixture trees (regular files); sysfs attributes ignore it.
  Fd fd(resolve(*rel, O_WRONLY | O_TRUNC | O_NOCTTY | O_NOFOLLOW));
  if (fd.get() < 0)
    fail(Errc::KernelError, "cannot open " + display_path(*rel) + " for writing: " + errno_text(errno));

  // The write itself may block in the kernel (an unbind waits for the device's users), so it runs on its own
  // thread and the caller waits at most `deadline`.
  struct Shared {
    std::mutex mutex;
    std::condition_variable cv;
    bool done = false;
    int err = 0;
  };
  auto shared = std::make_shared<Shared>();
  std::thread worker([shared, raw = fd.release(), data = std::string(value), p = *rel, hook = hook_]() {
    int err = 0;
    ssize_t n = ::write(raw, data.data(), data.size());
    if (n < 0)
      err = errno;
    else if (static_cast<std::size_t>(n) != data.size())
      err = EIO;
    ::close(raw);
    if (err == 0 && hook)
      err = hook(p, data);
    std::lock_guard lock(shared->mutex);
    shared->done = true;
    shared->err = err;
    shared->cv.notify_all();
  });
  // While it waits, the caller lets others go on (Sysfs::WaitHooks): the daemon releases its core lock here.
  const WaitHooks *hooks = thread_wait_hooks;
  if (hooks != nullptr && hooks->before)
    hooks->before();
  std::unique_lock lock(shared->mutex);
  const bool finished = shared->cv.wait_for(lock, deadline, [&] { return shared->done; });
  lock.unlock();
  if (hooks != nullptr && hooks->after)
    hooks->after();
  note_written(*rel, value); // done or not: what the model must look at again
  lock.lock();
  if (!finished) {
    lock.unlock();
    worker.detach();
    fail(Errc::Timeout, "writing '" + std::string(value.substr(0, 64)) + "' to " + display_path(*rel) +
                            " did not finish within " + std::to_string(deadline.count()) +
                            " ms; the kernel is still working on it");
  }
  int err = shared->err;
  lock.unlock();
  worker.join();
  if (err != 0)
    throw Error(Errc::KernelError,
                "writing '" + std::string(value.substr(0, 64)) + "' to " + display_path(*rel) +
                    " failed: " + errno_text(err),
                err);
}

void Sysfs::note_written(const std::string &path, std::string_view value) const {
  std::lock_guard lock(written_mutex_);
  if (written_.writes.size() >= kWrittenKept) {
    written_.writes.clear();
    written_.overflowed = true;
  }
  written_.writes.emplace_back(path, std::string(value.substr(0, 256)));
}

Sysfs::Written Sysfs::take_written() const {
  std::lock_guard lock(written_mutex_);
  return std::exchange(written_, {});
}

} // namespace hostdev::core
