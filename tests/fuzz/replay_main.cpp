// Runs a fuzz target over files without libFuzzer: every file named, and every file under every
// directory named. Used by ctest to replay the seed corpora and the regression inputs; a crash,
// sanitizer report or failed property fails the test. Fails when no file was found.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {
void run(const std::filesystem::path& file, long& count) {
  std::ifstream in(file, std::ios::binary);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
  // A copy of exactly the file's size, so a read past the end is caught by ASan.
  std::vector<std::uint8_t> exact(bytes.begin(), bytes.end());
  LLVMFuzzerTestOneInput(exact.empty() ? nullptr : exact.data(), exact.size());
  ++count;
}
}  // namespace

int main(int argc, char** argv) {
  long count = 0;
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path p = argv[i];
    if (std::filesystem::is_directory(p)) {
      std::vector<std::filesystem::path> files;
      for (const auto& e : std::filesystem::recursive_directory_iterator(p))
        if (e.is_regular_file()) files.push_back(e.path());
      std::sort(files.begin(), files.end());
      for (const auto& f : files) run(f, count);
    } else if (std::filesystem::is_regular_file(p)) {
      run(p, count);
    } else {
      std::fprintf(stderr, "replay: '%s' is neither a file nor a directory\n", argv[i]);
      return 1;
    }
  }
  std::printf("replayed %ld inputs without a failure\n", count);
  return count > 0 ? 0 : 1;
}
