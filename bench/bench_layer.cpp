// Training-path forward and backward of LowRankSparseLinear against a dense nn.Linear-style
// Eigen product, in one binary so the ratios come from one run.
//
// Args: {out, in, tokens, live_rows_percent, form}. The low-rank part has ρ = 0.25
// (r = ceil(0.25·out·in/(out+in))); live_rows_percent of S's rows are live (100 = the start of
// training, 10 = the end of a run to ρ + p = 0.35 with persistent masks); form 0 is the layer's
// automatic product form, 1 the factored one (lmshrink::ProductForm; counter "merged" says which
// ran). The backward is timed alone, so a merged layer forms W again in each iteration (the
// forward's W has been overwritten by dyᵀ·x): out·in·r more than in a training step.
// Shapes: GPT-2 small (768→768, 768→2304, 768→3072, 3072→768, written here as W (out, in)) and
// stories260K (64x64, 32x64, 172x64, 64x172).

#include <benchmark/benchmark.h>
#include <lmshrink/low_rank_sparse_linear.hpp>
#include <lmshrink/svd_init.hpp>

#include "bench_context.hpp"

using lmshrink::Index;
using Matrix = lmshrink::RowMatrix<float>;

namespace {

Matrix random(Index r, Index c, unsigned seed) {
  std::srand(seed);
  return Matrix::Random(r, c);
}

lmshrink::LowRankSparseLinear<float> make_layer(Index out, Index in, int live_pct, int form) {
  const Index rank = lmshrink::rank_from_ratio(0.25, out, in);
  lmshrink::LowRankSparseLinear<float> layer(out, in, rank, false);
  layer.U() = random(out, rank, 1);
  layer.V() = random(rank, in, 2);
  layer.S() = random(out, in, 3);
  lmshrink::RowMask mask(out);
  // Spread live rows evenly: runs are short, as after importance pruning.
  for (Index i = 0; i < out; ++i) mask[i] = (i * live_pct) / 100 != ((i + 1) * live_pct) / 100;
  layer.set_row_mask(mask);
  layer.set_product_form(form == 1 ? lmshrink::ProductForm::factored : lmshrink::ProductForm::automatic);
  return layer;
}

void set_counters(benchmark::State& state, double flops, Index tokens) {
  state.counters["FLOP/s"] =
      benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(tokens),
                                                  benchmark::Counter::kIsIterationInvariantRate);
}

void BM_dense_forward(benchmark::State& state) {
  const Index out = state.range(0), in = state.range(1), n = state.range(2);
  const Matrix w = random(out, in, 3), x = random(n, in, 4);
  Matrix y(n, out);
  for (auto _ : state) {
    y.noalias() = x * w.transpose();
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, 2.0 * n * out * in, n);
}

void BM_dense_backward(benchmark::State& state) {
  const Index out = state.range(0), in = state.range(1), n = state.range(2);
  const Matrix w = random(out, in, 3), x = random(n, in, 4), dy = random(n, out, 5);
  Matrix dw = Matrix::Zero(out, in), dx = Matrix::Zero(n, in);
  for (auto _ : state) {
    dw.noalias() += dy.transpose() * x;
    dx.noalias() += dy * w;
    benchmark::DoNotOptimize(dw.data());
    benchmark::DoNotOptimize(dx.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, 4.0 * n * out * in, n);
}

// The factored form's FLOPs (the work a layer must do, whichever form runs it).
double lrs_flops(const lmshrink::LowRankSparseLinear<float>& layer, Index n) {
  return 2.0 * n * layer.rank() * (layer.out_features() + layer.in_features()) +
         2.0 * n * layer.live_rows() * layer.in_features();
}

void BM_lrs_forward(benchmark::State& state) {
  const Index out = state.range(0), in = state.range(1), n = state.range(2);
  const auto layer = make_layer(out, in, static_cast<int>(state.range(3)), static_cast<int>(state.range(4)));
  const Matrix x = random(n, in, 4);
  Matrix y(n, out);
  auto cache = layer.make_cache(n);
  for (auto _ : state) {
    layer.forward(x, y, cache);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, lrs_flops(layer, n), n);
  state.counters["merged"] = cache.merged() ? 1 : 0;
  state.counters["rank"] = static_cast<double>(layer.rank());
  state.counters["live_params_pct"] =
      100.0 * static_cast<double>(layer.live_parameters()) / static_cast<double>(layer.dense_parameters());
}

void BM_lrs_backward(benchmark::State& state) {
  const Index out = state.range(0), in = state.range(1), n = state.range(2);
  const auto layer = make_layer(out, in, static_cast<int>(state.range(3)), static_cast<int>(state.range(4)));
  const Matrix x = random(n, in, 4), dy = random(n, out, 5);
  Matrix y(n, out), dx = Matrix::Zero(n, in);
  auto cache = layer.make_cache(n);
  auto grads = layer.make_gradients();
  layer.forward(x, y, cache);
  for (auto _ : state) {
    layer.backward(x, dy, cache, dx, grads);
    benchmark::DoNotOptimize(grads.S.data());
    benchmark::DoNotOptimize(dx.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, 2.0 * lrs_flops(layer, n), n);
  state.counters["rank"] = static_cast<double>(layer.rank());
  state.counters["merged"] = cache.merged() ? 1 : 0;
}

const std::vector<std::pair<Index, Index>> kShapes = {
    {768, 768}, {2304, 768}, {3072, 768}, {768, 3072},  // GPT-2 small
    {64, 64},   {32, 64},    {172, 64},   {64, 172}};   // stories260K

void dense_args(benchmark::internal::Benchmark* b) {
  for (const auto& s : kShapes)
    for (Index n : {1, 512}) b->Args({s.first, s.second, n});
  b->ArgNames({"out", "in", "tokens"});
}

void lrs_args(benchmark::internal::Benchmark* b) {
  for (const auto& s : kShapes)
    for (Index n : {1, 512})
      for (Index live : {100, 10}) {
        b->Args({s.first, s.second, n, live, 0});
        if (live == 100 && n > 1) b->Args({s.first, s.second, n, live, 1});  // where a layer may merge
      }
  b->ArgNames({"out", "in", "tokens", "live_rows_pct", "form"});
}

}  // namespace

BENCHMARK(BM_dense_forward)->Apply(dense_args);
BENCHMARK(BM_lrs_forward)->Apply(lrs_args);
BENCHMARK(BM_dense_backward)->Apply(dense_args);
BENCHMARK(BM_lrs_backward)->Apply(lrs_args);

LMSHRINK_BENCHMARK_MAIN()
