#pragma once
// Build context written into every benchmark's output (compiler, flags, vectorization).

#include <Eigen/Core>
#include <benchmark/benchmark.h>
#include <functional>
#include <lmshrink/version.hpp>
#include <map>
#include <string>
#include <vector>

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

/// Prints like the console reporter and keeps, for every benchmark, the value `value_of` reads
/// from its median run (or from its only run without repetitions). Runs without a value (an
/// error, a missing counter) are skipped: `value_of` returns false for them.
class MedianCollector : public benchmark::ConsoleReporter {
 public:
  using ValueOf = std::function<bool(const Run&, double&)>;
  explicit MedianCollector(ValueOf value_of) : value_of_(std::move(value_of)) {}

  std::map<std::string, double> values;

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.run_type == Run::RT_Aggregate && run.aggregate_name != "median") continue;
      double v = 0;
      if (!value_of_(run, v)) continue;
      const std::string name = run.run_name.str();
      if (run.run_type == Run::RT_Aggregate || !values.count(name)) values[name] = v;
    }
    ConsoleReporter::ReportRuns(runs);
  }

 private:
  ValueOf value_of_;
};

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
