#include "core/files.hpp"

#include "core/error.hpp"
#include "core/fd.hpp"

#include <cerrno>
#include <system_error>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace hostdev::core {
namespace {

std::string parent_of(const std::string &path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos)
    return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

} // namespace

void file_fail(const std::string &what, const std::string &path, int e) {
  fail(Errc::KernelError, what + " " + path + ": " + std::system_category().message(e));
}

void ensure_dir(const std::string &path, bool follow) {
  if (::mkdir(path.c_str(), 0700) == 0)
    return;
  int e = errno;
  struct stat st {};
  if (e == EEXIST && (follow ? ::stat(path.c_str(), &st) : ::lstat(path.c_str(), &st)) == 0) {
    if (S_ISDIR(st.st_mode))
      return;
    if (S_ISLNK(st.st_mode))
      fail(Errc::KernelError, "refusing " + path + ": a symbolic link where the store keeps a folder of its own");
  }
  file_fail("cannot create directory", path, e == EEXIST ? ENOTDIR : e);
}

void fsync_dir(const std::string &dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0)
    file_fail("cannot open directory", dir, errno);
  if (::fsync(fd.get()) != 0)
    file_fail("cannot fsync directory", dir, errno);
}

bool read_whole_file(const std::string &path, std::string &out) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (fd.get() < 0)
    return false;
  out.clear();
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return false;
    if (n == 0)
      return true;
    out.append(buf, static_cast<std::size_t>(n));
  }
}

void atomic_write_file(const std::string &path, const std::string &content, unsigned mode) {
  std::string tmp = path + ".tmp.XXXXXX";
  Fd fd(::mkostemp(tmp.data(), O_CLOEXEC));
  if (fd.get() < 0)
    file_fail("cannot create a temporary file for", path, errno);

  auto give_up = [&](const char *what, int e) {
    fd.close();
    ::unlink(tmp.c_str());
    file_fail(what, path, e);
  };

  if (::fchmod(fd.get(), static_cast<mode_t>(mode)) != 0)
    give_up("cannot set the mode of the temporary file for", errno);
  std::size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      give_up("cannot write", errno);
    if (n == 0)
      give_up("cannot write", EIO);
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd.get()) != 0)
    give_up("cannot fsync", errno);
  if (fd.close() != 0)
    give_up("cannot close", errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    give_up("cannot rename the temporary file onto", errno);
  fsync_dir(parent_of(path));
}

void remove_file(const std::string &path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    file_fail("cannot remove", path, errno);
  fsync_dir(parent_of(path));
}

} // namespace hostdev::core
