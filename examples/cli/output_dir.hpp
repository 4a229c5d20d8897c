#pragma once
// The examples' output directory: created (with its parents) and probed for writing before any
// work starts, with failures as lmshrink::io_error naming the directory and the reason.

#include <lmshrink/files.hpp>
#include <lmshrink/errors.hpp>

#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>

namespace examples {

inline void prepare_output_directory(const char* where, const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    lmshrink::fail<lmshrink::io_error>(where, "cannot create the output directory '", dir,
                                               "' (", ec.message(), ")");
  if (!std::filesystem::is_directory(dir, ec))
    lmshrink::fail<lmshrink::io_error>(where, "the output path '", dir,
                                               "' exists and is not a directory");
  const std::string probe = dir + "/.write_test";
  lmshrink::write_file_atomically(where, probe, [](std::FILE* f) {
    return std::fputs("ok\n", f) >= 0;
  });
  std::filesystem::remove(probe, ec);
}

}  // namespace examples
