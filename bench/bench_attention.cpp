// Causal attention as the trainers run it, per shard: the kept-probability functions
// (causal_attention_forward / _backward, up to kKeptProbabilitiesUpTo positions) and
// BlockedAttention (longer sequences: probabilities recomputed from the log-sum-exp).
//
// Args: {batch, n, heads, kv_heads, head_size, kept}. kept 1: every (sequence, head) keeps its
// (n, n) probabilities, as in training (the forward writes batch·heads·n²/2 values the backward
// reads again); kept 0: one probability matrix reused, as in scoring, so the difference is the
// cost of writing them to memory. Shapes: one shard of the main job on stories260K (2 × 512
// tokens, 8 heads of 8, 4 key/value heads) and of GPT-2 small at 4 × 256 (2 × 256, 12 heads of
// 64). Counter GFLOP/s: the causal half's products (q·kᵀ and p·v forward, four backward).

#include <benchmark/benchmark.h>
#include <lmshrink/models/attention.hpp>

#include "bench_context.hpp"

namespace {

using Matrix = lmshrink::RowMatrix<float>;
namespace models = lmshrink::models;

struct Inputs {
  models::AttentionShape s;
  Matrix q, k, v, att, datt, dq, dk, dv, dp;
  explicit Inputs(const benchmark::State& state) {
    s = {int(state.range(0)), int(state.range(1)), int(state.range(2)), int(state.range(3)), int(state.range(4))};
    const lmshrink::Index rows = lmshrink::Index(s.batch) * s.n;
    std::srand(5);
    q = Matrix::Random(rows, s.heads * s.head_size);
    k = Matrix::Random(rows, s.kv_heads * s.head_size);
    v = Matrix::Random(rows, s.kv_heads * s.head_size);
    datt = Matrix::Random(rows, s.heads * s.head_size);
    att.resize(rows, s.heads * s.head_size);
    dq.resize(rows, s.heads * s.head_size);
    dk.resize(rows, s.kv_heads * s.head_size);
    dv.resize(rows, s.kv_heads * s.head_size);
  }
  // One pass of the products over the causal half (multiply-adds counted twice).
  double product_flops() const {
    return 2.0 * s.batch * s.heads * s.head_size * double(s.n) * double(s.n + 1) / 2;
  }
};

void BM_kept_forward(benchmark::State& state) {
  Inputs in(state);
  const bool kept = state.range(5) != 0;
  std::vector<Matrix> p(kept ? std::size_t(in.s.batch) * in.s.heads : 1);
  for (auto _ : state) {
    models::causal_attention_forward<float>(in.s, in.q, in.k, in.v, p, in.att);
    benchmark::DoNotOptimize(in.att.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2 * in.product_flops() / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_kept_backward(benchmark::State& state) {
  Inputs in(state);
  std::vector<Matrix> p(std::size_t(in.s.batch) * in.s.heads);
  models::causal_attention_forward<float>(in.s, in.q, in.k, in.v, p, in.att);
  for (auto _ : state) {
    models::causal_attention_backward<float>(in.s, in.q, in.k, in.v, p, in.datt, in.dp, in.dq, in.dk, in.dv);
    benchmark::DoNotOptimize(in.dq.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(4 * in.product_flops() / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_blocked_forward(benchmark::State& state) {
  Inputs in(state);
  models::BlockedAttention<float> blocked;
  Matrix lse;
  for (auto _ : state) {
    blocked.forward(in.s, in.q, in.k, in.v, lse, in.att);
    benchmark::DoNotOptimize(in.att.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2 * in.product_flops() / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_blocked_backward(benchmark::State& state) {
  Inputs in(state);
  models::BlockedAttention<float> blocked;
  Matrix lse;
  blocked.forward(in.s, in.q, in.k, in.v, lse, in.att);
  for (auto _ : state) {
    blocked.backward(in.s, in.q, in.k, in.v, in.att, lse, in.datt, in.dq, in.dk, in.dv);
    benchmark::DoNotOptimize(in.dq.data());
    benchmark::ClobberMemory();
  }
  // The backward computes q·kᵀ again: five passes.
  state.counters["GFLOP/s"] = benchmark::Counter(5 * in.product_flops() / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

void shapes(benchmark::internal::Benchmark* b, bool with_kept_flag) {
  for (int kept : with_kept_flag ? std::vector<int>{1, 0} : std::vector<int>{1}) {
    b->Args({2, 512, 8, 4, 8, kept});     // stories260K, one shard of the main job
    b->Args({2, 256, 12, 12, 64, kept});  // GPT-2 small, one shard of 4 × 256
  }
  b->ArgNames({"batch", "n", "heads", "kv_heads", "hs", "kept"});
  b->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_kept_forward)->Apply([](benchmark::internal::Benchmark* b) { shapes(b, true); });
BENCHMARK(BM_kept_backward)->Apply([](benchmark::internal::Benchmark* b) { shapes(b, false); });
BENCHMARK(BM_blocked_forward)->Apply([](benchmark::internal::Benchmark* b) { shapes(b, false); });
BENCHMARK(BM_blocked_backward)->Apply([](benchmark::internal::Benchmark* b) { shapes(b, false); });

}  // namespace

LMSHRINK_BENCHMARK_MAIN()
