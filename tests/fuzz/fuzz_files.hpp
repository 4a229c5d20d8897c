#pragma once
// Helpers for fuzz targets that read files: a private scratch directory per process, and inputs
// split into length-prefixed parts.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

namespace fuzz {

/// A directory of this process's own under TMPDIR (or /tmp), made once.
inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp ? tmp : "/tmp") + "/lmshrink_fuzz_XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();
    return pattern;
  }();
  return dir;
}

inline void write_file(const std::string& path, std::string_view bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) std::abort();
  std::fclose(f);
}

/// Reads parts "[u32 little-endian length][bytes]" from the input, at most `max_parts`; a length
/// past the end takes what is left.
inline std::vector<std::string_view> split_parts(const std::uint8_t* data, std::size_t size, int max_parts) {
  std::vector<std::string_view> parts;
  std::size_t at = 0;
  while (at < size && int(parts.size()) < max_parts) {
    std::uint32_t n = 0;
    for (int i = 0; i < 4 && at < size; ++i, ++at) n |= std::uint32_t(data[at]) << (8 * i);
    const std::size_t take = std::min<std::size_t>(n, size - at);
    parts.emplace_back(reinterpret_cast<const char*>(data) + at, take);
    at += take;
  }
  return parts;
}

}  // namespace fuzz
