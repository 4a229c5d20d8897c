#pragma once
// Atomic file replacement: write a temporary file beside the target, flush it to disk, then
// rename it over the target. An interrupted or failed write never destroys the previous file.

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "../config.hpp"
#include "../errors.hpp"

#if defined(_WIN32)
#include <io.h>
#else
#include <fcntl.h>
#include <unistd.h>
#endif

LMSHRINK_NAMESPACE_BEGIN
namespace detail {

/// Writes through `write(FILE*)` into `path` atomically. `write` returns false (or throws) on
/// failure; either way the temporary file is removed and `path` is left as it was.
template <class WriteFn>
void write_file_atomically(const char* where, const std::string& path, WriteFn&& write) {
  if (path.empty()) fail<io_error>(where, "the output path is empty");
#if defined(_WIN32)
  const std::string tmp = path + ".tmp";
#else
  const std::string tmp = path + ".tmp." + std::to_string(static_cast<long>(::getpid()));
#endif
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
#if !defined(_WIN32)
  ok = ok && ::fsync(::fileno(f)) == 0;
#endif
  const int saved_errno = errno;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    fail<io_error>(where, "writing '", tmp, "' failed (", std::strerror(saved_errno),
                   "); '", path, "' was left unchanged");
  }
#if defined(_WIN32)
  std::remove(path.c_str());
#endif
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    fail<io_error>(where, "cannot rename '", tmp, "' to '", path, "' (", std::strerror(e), ")");
  }
}

}  // namespace detail
LMSHRINK_NAMESPACE_END
