#pragma once
#if !defined(LMSHRINK_INSIDE_LIBRARY) && !defined(LMSHRINK_TESTING_INTERNALS)
#error "lmshrink/detail/ is internal: include the public header instead (lmshrink/files.hpp, lmshrink/random.hpp, ...; docs/design.md)"
#endif
// Reads a whole binary file into memory, with errors that name the caller and the file.

#include <cstdint>
#include <filesystem>
#include <system_error>
#include <fstream>
#include <string>
#include <vector>

#include "../config.hpp"
#include "../errors.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace detail {

/// The bytes of `path`. io_error when it cannot be opened or read or is not a regular file (a
/// directory, a device); format_error when it is shorter than `min_size` (naming `header`) or
/// larger than `max_size`. The allocation is the file's own size, checked against `max_size` first.
inline std::vector<char> read_file_bytes(const char* where, const std::string& path,
                                         std::int64_t min_size, const char* header,
                                         std::int64_t max_size, const char* max_what) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status))  // the system's reason: missing, no permission, …
    fail<io_error>(where, "cannot open '", path, "' for reading (",
                   ec ? ec.message() : std::string("No such file or directory"), ")");
  if (std::filesystem::is_directory(status))
    fail<io_error>(where, "'", path, "' is a directory; a file was expected");
  if (!std::filesystem::is_regular_file(status))
    fail<io_error>(where, "'", path, "' is not a regular file (a device, pipe or socket); a file "
                   "was expected");
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) fail<io_error>(where, "cannot open '", path, "' for reading");
  const std::streamoff size = in.tellg();
  if (size < 0) fail<io_error>(where, "cannot determine the size of '", path, "'");
  if (size < min_size)
    fail<format_error>(where, "'", path, "' is truncated: ", header, " was expected, the file has ",
                       size, " bytes");
  if (size > max_size) fail<format_error>(where, "'", path, "' is ", size, " bytes, ", max_what);
  std::vector<char> bytes(static_cast<std::size_t>(size));
  in.seekg(0);
  if (size > 0 && !in.read(bytes.data(), size)) fail<io_error>(where, "reading '", path, "' failed");
  return bytes;
}

}  // namespace detail
LMSHRINK_NAMESPACE_END
