#pragma once
#if !defined(LMSHRINK_INSIDE_LIBRARY) && !defined(LMSHRINK_TESTING_INTERNALS)
#error "lmshrink/detail/ is internal: include the public header instead (lmshrink/files.hpp, lmshrink/random.hpp, ...; docs/design.md)"
#endif
// Atomic file replacement. The destination is always either its old complete content or its new
// complete content, whatever happens to the writing process, and a killed save leaves no debris:
//
// Linux: the data is written to an unnamed file in the destination's directory (O_TMPFILE),
// flushed to disk, given a temporary name (linkat) and renamed over the destination; then the
// directory is flushed so the rename survives a power loss. A kill while writing leaves nothing.
// A kill in the microseconds between linkat and rename leaves "<dest>.tmp.<pid>.<n>".
// Elsewhere (or when the file system refuses O_TMPFILE) the temporary file is named from the start.
// Either way the writer holds an exclusive lock (flock) on its temporary file until it is renamed,
// and every save removes the temporaries of the same destination whose lock it can take: their
// writer is gone. A writer still running holds its lock, so its file is never touched.

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "../config.hpp"
#include "../errors.hpp"

#if defined(_WIN32)
#include <io.h>
#else
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

LMSHRINK_NAMESPACE_BEGIN
namespace detail {

#if !defined(_WIN32)

struct PathParts {
  std::string dir;   // "." when the path has no slash
  std::string base;  // the file name
};

inline PathParts split_path(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return {".", path};
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

/// The prefix of every temporary file of `base`: "<base>.tmp.".
inline std::string temp_prefix(const std::string& base) { return base + ".tmp."; }

/// Removes temporaries "<base>.tmp.*" in `dir` whose writer is gone (their lock can be taken).
/// Returns how many were removed. Never throws: cleanup is best effort.
inline int remove_stale_temporaries(const std::string& dir, const std::string& base) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return 0;
  const std::string prefix = temp_prefix(base);
  int removed = 0;
  while (const dirent* entry = ::readdir(d)) {
    const std::string name = entry->d_name;
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string full = dir + "/" + name;
    const int fd = ::open(full.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) continue;
    struct stat by_fd {}, by_name {};
    if (::fstat(fd, &by_fd) == 0 && S_ISREG(by_fd.st_mode) && ::flock(fd, LOCK_EX | LOCK_NB) == 0 &&
        ::lstat(full.c_str(), &by_name) == 0 && by_fd.st_dev == by_name.st_dev &&
        by_fd.st_ino == by_name.st_ino && ::unlink(full.c_str()) == 0)
      ++removed;
    ::close(fd);
  }
  ::closedir(d);
  return removed;
}

inline void fsync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);  // best effort: some file systems refuse fsync on directories
  ::close(fd);
}

/// A unique temporary name beside `path`.
inline std::string temp_name(const PathParts& parts) {
  static std::atomic<unsigned long> counter{0};
  return parts.dir + "/" + temp_prefix(parts.base) + std::to_string(static_cast<long>(::getpid())) +
         "." + std::to_string(counter.fetch_add(1));
}

#endif

/// Writes through `write(FILE*)` into `path` atomically. `write` returns false (or throws) on
/// failure; either way no temporary file remains and `path` is left as it was.
template <class WriteFn>
void write_file_atomically(const char* where, const std::string& path, WriteFn&& write) {
  if (path.empty()) fail<io_error>(where, "the output path is empty");
#if defined(_WIN32)
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr)
    fail<io_error>(where, "cannot create '", tmp, "' (", std::strerror(errno), ")");
  bool ok = false;
  try {
    ok = write(f);
  } catch (...) {
    std::fclose(f);
    std::remove(tmp.c_str());
    throw;
  }
  ok = ok && std::fflush(f) == 0;
  const int saved_errno = errno;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    fail<io_error>(where, "writing '", tmp, "' failed (", std::strerror(saved_errno), "); '", path,
                   "' was left unchanged");
  }
  std::remove(path.c_str());
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    fail<io_error>(where, "cannot rename '", tmp, "' to '", path, "' (", std::strerror(errno), ")");
#else
  const PathParts parts = split_path(path);
  if (parts.base.empty()) fail<io_error>(where, "'", path, "' names a directory, not a file");
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    fail<io_error>(where, "'", path, "' is a directory; a file path was expected");
  if (::stat(parts.dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    fail<io_error>(where, "cannot write '", path, "': the directory '", parts.dir,
                   "' does not exist");
  remove_stale_temporaries(parts.dir, parts.base);

  const std::string tmp = temp_name(parts);
  bool named = false;  // whether `tmp` exists on disk
  int fd = -1;
#if defined(O_TMPFILE)
  if (::access("/proc/self/fd", X_OK) == 0)
    fd = ::open(parts.dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
#endif
  if (fd < 0) {
    fd = ::open(tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0666);
    if (fd < 0)
      fail<io_error>(where, "cannot create a file in '", parts.dir, "' to write '", path, "' (",
                     std::strerror(errno), ")");
    named = true;
  }
  ::flock(fd, LOCK_EX);  // held until close: tells other savers this writer is alive
  const auto give_up = [&](const std::string& why) {
    if (named) ::unlink(tmp.c_str());
    ::close(fd);
    fail<io_error>(where, why, "; '", path, "' was left unchanged");
  };
  std::FILE* f = ::fdopen(fd, "wb");
  if (f == nullptr) give_up(std::string("cannot open a stream (") + std::strerror(errno) + ")");
  const auto close_stream = [&] {
    const int lock_fd = ::dup(fd);  // keeps the lock past fclose until the file is renamed
    const bool closed = std::fclose(f) == 0;
    fd = lock_fd;
    return closed;
  };
  bool ok = false;
  try {
    ok = write(f);
  } catch (...) {
    if (named) ::unlink(tmp.c_str());
    std::fclose(f);
    throw;
  }
  ok = ok && std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0;
  const int saved_errno = errno;
  ok = close_stream() && ok;
  if (!ok || fd < 0)
    give_up(std::string("writing failed (") + std::strerror(saved_errno ? saved_errno : EIO) + ")");
  if (!named) {
    const std::string proc = "/proc/self/fd/" + std::to_string(fd);
    if (::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, tmp.c_str(), AT_SYMLINK_FOLLOW) != 0)
      give_up(std::string("cannot name the new file '") + tmp + "' (" + std::strerror(errno) + ")");
    named = true;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    give_up(std::string("cannot rename '") + tmp + "' to '" + path + "' (" + std::strerror(errno) + ")");
  ::close(fd);
  fsync_directory(parts.dir);
#endif
}

}  // namespace detail
LMSHRINK_NAMESPACE_END
