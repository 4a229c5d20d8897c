// Exact vs randomized truncated SVD of a 768x3072 matrix to rank 256 (the GPT-2 MLP shape):
// time, and the relative error ‖W − U·V‖/‖W‖ each reaches. The matrix has singular values
// 0.995^k (a flat spectrum, as real LM weights have), so the randomized path has to work for it.

#include <Eigen/QR>
#include <benchmark/benchmark.h>
#include <lmshrink/detail/random.hpp>
#include <lmshrink/svd_init.hpp>

#include "bench_context.hpp"

using lmshrink::Index;

namespace {

lmshrink::RowMatrix<float> decaying(Index rows, Index cols, double decay) {
  lmshrink::detail::SplitMix64 rng(17);
  const Index k = std::min(rows, cols);
  Eigen::MatrixXd a(rows, k), b(cols, k);
  for (Index i = 0; i < a.size(); ++i) a.data()[i] = rng.normal();
  for (Index i = 0; i < b.size(); ++i) b.data()[i] = rng.normal();
  const Eigen::MatrixXd qa = Eigen::HouseholderQR<Eigen::MatrixXd>(a).householderQ() *
                             Eigen::MatrixXd::Identity(rows, k);
  const Eigen::MatrixXd qb = Eigen::HouseholderQR<Eigen::MatrixXd>(b).householderQ() *
                             Eigen::MatrixXd::Identity(cols, k);
  Eigen::VectorXd s(k);
  for (Index i = 0; i < k; ++i) s[i] = std::pow(decay, static_cast<double>(i));
  return (qa * s.asDiagonal() * qb.transpose()).cast<float>();
}

const lmshrink::RowMatrix<float>& matrix() {
  static const auto w = decaying(768, 3072, 0.995);
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
