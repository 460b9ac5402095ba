// Files of the store on an ordinary file system: folders, whole-file reads, atomic replacement. Failures are
// Error(KernelError) naming the path and the system's reason.
#pragma once

#include <string>

namespace hostdev::core {

// Creates `path` (mode 0700) unless it is a directory already. Unless `follow`, a symbolic link there is refused
// (Error(KernelError)): what the store writes or moves into its folders must stay in the state directory.
void ensure_dir(const std::string &path, bool follow = false);
// fsync() of a directory, so that a rename or unlink in it is on disk.
void fsync_dir(const std::string &dir);
// Reads a whole regular file (not through a symlink). Returns false (with errno set) on failure.
bool read_whole_file(const std::string &path, std::string &out);
// Writes `content` to `path` atomically: <path>.tmp.XXXXXX in the same directory, fsync, rename, fsync the dir.
// Throws Error(KernelError) and leaves `path` as it was on any failure.
void atomic_write_file(const std::string &path, const std::string &content, unsigned mode = 0600);
// Removes `path` (absent is fine) and syncs its directory.
void remove_file(const std::string &path);
// Error(KernelError): "<what> <path>: <strerror(e)>".
[[noreturn]] void file_fail(const std::string &what, const std::string &path, int e);

} // namespace hostdev::core
