#pragma once
// Files that survive a crash, for programs built on lmshrink: what the library's own writers
// use (checkpoints, safetensors, Hugging Face directories), with errors in its form.
//
//   lmshrink::write_file_atomically("my_job", "out/results.csv", [&](std::FILE* f) {
//     return std::fputs(csv.c_str(), f) >= 0;                 // false or a throw: nothing written
//   });
//   auto bytes = lmshrink::read_file_bytes("my_job", path, 8, "a header", 1 << 30, "too large");
//   lmshrink::StagedDirectory next("my_job", "out/run");      // a directory replaced as a whole
//   … write files under next.path() …
//   next.commit([](const std::string&) { return false; });   // keep nothing of the old version
//
// write_file_atomically: the destination holds its old complete content or its new one, never
// a mix, whatever happens to the process, and a killed save leaves no debris.
// StagedDirectory / replace_directory_atomically: the same for a directory (readers see the old
// set of files or the new one); read_directory_consistently reads one version of it.
// read_file_bytes: a whole file, its size checked against a bound before anything is allocated.
// docs/errors.md ("Writes", "Directory saves") has the guarantees and how each is tested.

#include "config.hpp"
#include "errors.hpp"

#pragma push_macro("LMSHRINK_INSIDE_LIBRARY")
#define LMSHRINK_INSIDE_LIBRARY
#include "detail/atomic_directory.hpp"
#include "detail/atomic_file.hpp"
#include "detail/read_file.hpp"
#pragma pop_macro("LMSHRINK_INSIDE_LIBRARY")

LMSHRINK_NAMESPACE_BEGIN

using detail::read_directory_consistently;
using detail::read_file_bytes;
using detail::replace_directory_atomically;
using detail::StagedDirectory;
using detail::write_file_atomically;

LMSHRINK_NAMESPACE_END
