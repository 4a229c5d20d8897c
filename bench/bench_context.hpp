#pragma once
// Build context written into every benchmark's output (compiler, flags, vectorization).

#include <Eigen/Core>
#include <benchmark/benchmark.h>
#include <lmshrink/version.hpp>
#include <string>

namespace bench {

inline void add_build_context() {
#if defined(__clang__)
  benchmark::AddCustomContext("compiler", "clang " __clang_version__);
#elif defined(__GNUC__)
  benchmark::AddCustomContext("compiler", "gcc " __VERSION__);
#endif
  benchmark::AddCustomContext("build_type", LMSHRINK_BUILD_TYPE);
  benchmark::AddCustomContext("flags", LMSHRINK_BUILD_FLAGS);
  benchmark::AddCustomContext("eigen", std::to_string(EIGEN_WORLD_VERSION) + "." +
                                           std::to_string(EIGEN_MAJOR_VERSION) + "." +
                                           std::to_string(EIGEN_MINOR_VERSION));
  benchmark::AddCustomContext("eigen_simd", Eigen::SimdInstructionSetsInUse());
  benchmark::AddCustomContext("eigen_threads", std::to_string(Eigen::nbThreads()));
  benchmark::AddCustomContext("lmshrink", LMSHRINK_VERSION_STRING);
}

/// Removes `--report=DIR` from the arguments (Google Benchmark would refuse it); returns DIR, or
/// an empty string.
inline std::string take_report_dir(int& argc, char** argv) {
  std::string dir;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]).rfind("--report=", 0) == 0) dir = argv[i] + 9;
    else argv[kept++] = argv[i];
  }
  argc = kept;
  return dir;
}

}  // namespace bench

#define LMSHRINK_BENCHMARK_MAIN()                         \
  int main(int argc, char** argv) {                       \
    benchmark::Initialize(&argc, argv);                   \
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1; \
    bench::add_build_context();                           \
    benchmark::RunSpecifiedBenchmarks();                  \
    benchmark::Shutdown();                                \
    return 0;                                             \
  }
