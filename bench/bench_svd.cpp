// Exact vs randomized truncated SVD of a 768x3072 matrix to rank 256 (the GPT-2 MLP shape):
// time, and the relative error ‖W − U·V‖/‖W‖ each reaches. The matrix has singular values
// 0.995^k (a flat spectrum, as real LM weights have), so the randomized path has to work for it.

#include <benchmark/benchmark.h>
#include <lmshrink/svd_init.hpp>

#include "../tests/decaying_spectrum.hpp"  // the same seeded test matrix as the tests
#include "bench_context.hpp"

using lmshrink::Index;

namespace {

const lmshrink::RowMatrix<float>& matrix() {
  static const lmshrink::RowMatrix<float> w =
      test::decaying_spectrum(768, 3072, 0.995, 17).cast<float>();
  return w;
}

double exact_error() {
  static const double e = [] {
    lmshrink::LowRankSparseLinear<float> layer;
    lmshrink::SvdInitOptions opt;
    opt.rank = 256;
    return lmshrink::svd_init<float>(matrix(), layer, opt).relative_error;
  }();
  return e;
}

// Args: {method (0 exact, 1 randomized), in_double, power_iterations}.
void BM_svd_init(benchmark::State& state) {
  lmshrink::SvdInitOptions opt;
  opt.rank = 256;
  opt.method = state.range(0) ? lmshrink::SvdMethod::randomized : lmshrink::SvdMethod::exact;
  opt.exact_in_double = opt.randomized_in_double = state.range(1) != 0;
  opt.power_iterations = state.range(2);
  lmshrink::LowRankSparseLinear<float> layer;
  lmshrink::SvdInitResult r;
  for (auto _ : state) {
    r = lmshrink::svd_init<float>(matrix(), layer, opt);
    benchmark::DoNotOptimize(layer.S().data());
  }
  state.counters["rel_error"] = r.relative_error;
  state.counters["error_vs_exact"] = r.relative_error / exact_error();
}

}  // namespace

BENCHMARK(BM_svd_init)
    ->ArgNames({"randomized", "double", "power_it"})
    ->Args({0, 1, 0})
    ->Args({0, 0, 0})
    ->Args({1, 0, 4})
    ->Args({1, 1, 4})
    ->Args({1, 0, 2})
    ->Unit(benchmark::kMillisecond)
    ->MeasureProcessCPUTime()
    ->UseRealTime();

LMSHRINK_BENCHMARK_MAIN()
