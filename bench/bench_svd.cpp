// Exact vs randomized truncated SVD of a 768x3072 matrix to rank 256 (the GPT-2 MLP shape):
// time, and the relative error ‖W − U·V‖/‖W‖ each reaches. The matrix has singular values
// 0.995^k (a flat spectrum, as real LM weights have), so the randomized path has to work for it.
// Then the whitened path (svd_init with calibration statistics) at GPT-2 small's and TinyLlama's
// shapes, at the main job's low-rank 0.5 ranks: time and the output error against exact's.
// Last, sparse_plus_low_rank_init with S alone at density 0.5 (the main job's oats-sparse) at
// GPT-2 small's MLP shapes: the refit's per-row solves dominate.

#include <benchmark/benchmark.h>
#include <cmath>
#include <lmshrink/sparse_plus_low_rank.hpp>
#include <lmshrink/svd_init.hpp>
#include <map>
#include <utility>

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

// A (out, in) weight with σ_k = 0.999^k and the statistics of in + 64 tokens whose feature
// scales span 10x: built once per shape.
struct WhitenedCase {
  lmshrink::RowMatrix<float> w;
  lmshrink::GramAccumulator stats;
  double exact_output_error = -1;
};

WhitenedCase& whitened_case(Index out, Index in) {
  static std::map<std::pair<Index, Index>, WhitenedCase> cases;
  auto& c = cases[{out, in}];
  if (c.w.size() == 0) {
    c.w = test::decaying_spectrum(out, in, 0.999, 19).cast<float>();
    Eigen::VectorXf scale(in);
    for (Index j = 0; j < in; ++j) scale[j] = std::pow(10.0f, -float(j % 97) / 96.0f);
    const lmshrink::RowMatrix<float> x =
        test::random_matrix<float>(in + 64, in, 23) * scale.asDiagonal();
    c.stats.reset(in);
    c.stats.add<float>(x);
  }
  return c;
}

// Args: {out, in, method (0 exact, 1 randomized)}; rank by the ratio 0.5 (rank_from_ratio).
void BM_whitened_svd_init(benchmark::State& state) {
  const Index out = state.range(0), in = state.range(1);
  WhitenedCase& c = whitened_case(out, in);
  lmshrink::SvdInitOptions opt;
  opt.ratio = 0.5;
  opt.method = state.range(2) ? lmshrink::SvdMethod::randomized : lmshrink::SvdMethod::exact;
  lmshrink::LowRankSparseLinear<float> layer;
  lmshrink::SvdInitResult r;
  for (auto _ : state) {
    r = lmshrink::svd_init<float>(c.w, layer, opt, c.stats);
    benchmark::DoNotOptimize(layer.S().data());
  }
  if (opt.method == lmshrink::SvdMethod::exact) c.exact_output_error = r.relative_output_error;
  state.counters["rank"] = double(r.rank);
  state.counters["output_error"] = r.relative_output_error;
  if (c.exact_output_error > 0) state.counters["vs_exact"] = r.relative_output_error / c.exact_output_error;
}

// Args: {out, in, iterations}: S alone (rank 0) holding half the entries, values refitted.
void BM_sparse_only_init(benchmark::State& state) {
  const Index out = state.range(0), in = state.range(1);
  WhitenedCase& c = whitened_case(out, in);
  lmshrink::SparsePlusLowRankOptions opt;
  opt.sparse_entries = out * in / 2;
  opt.iterations = int(state.range(2));
  lmshrink::LowRankSparseLinear<float> layer;
  lmshrink::SparsePlusLowRankResult r;
  for (auto _ : state) {
    r = lmshrink::sparse_plus_low_rank_init<float>(c.w, layer, opt, c.stats);
    benchmark::DoNotOptimize(layer.S().data());
  }
  state.counters["fitted_iterations"] = double(r.relative_output_error.size());
  state.counters["output_error"] = r.relative_output_error[std::size_t(r.best_iteration)];
}

// Runs of seconds: one iteration each, three repetitions, CPU and wall time.
void seconds_long_runs(benchmark::internal::Benchmark* b) {
  b->Unit(benchmark::kMillisecond)
      ->Iterations(1)
      ->Repetitions(3)
      ->ReportAggregatesOnly(false)
      ->MeasureProcessCPUTime()
      ->UseRealTime();
}

}  // namespace

// Exact first at each shape, so that the randomized row can report its ratio.
BENCHMARK(BM_whitened_svd_init)
    ->ArgNames({"out", "in", "randomized"})
    ->Args({3072, 768, 0})
    ->Args({3072, 768, 1})
    ->Args({2048, 2048, 0})
    ->Args({2048, 2048, 1})
    ->Args({2048, 5632, 0})
    ->Args({2048, 5632, 1})
    ->Apply(seconds_long_runs);

BENCHMARK(BM_sparse_only_init)
    ->ArgNames({"out", "in", "iterations"})
    ->Args({3072, 768, 5})
    ->Args({768, 3072, 1})
    ->Args({768, 3072, 5})
    ->Apply(seconds_long_runs);

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
