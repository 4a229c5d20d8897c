// The cost of one pruner update over the 48 linear weights of a GPT-2-small-shaped model
// (12 blocks × c_attn 2304x768, attn c_proj 768x768, c_fc 3072x768, mlp c_proj 768x3072), as a
// ratio to one forward + backward of those layers at 512 tokens, in the same run.
// Layers: ρ = 0.25, every row of S live (the pruner's worst case: nothing skipped yet).

#include <benchmark/benchmark.h>
#include <lmshrink/pruner.hpp>
#include <lmshrink/svd_init.hpp>
#include <memory>
#include <vector>

#include "bench_context.hpp"

using lmshrink::Index;
using Matrix = lmshrink::RowMatrix<float>;
using Layer = lmshrink::LowRankSparseLinear<float>;

namespace {

constexpr Index kTokens = 512;

struct Model {
  std::vector<Layer> layers;
  std::vector<Layer::Gradients> grads;
  std::vector<Layer::Cache> caches;
  std::vector<Matrix> x, y, dy, dx;
  Model() {
    const Index shapes[4][2] = {{2304, 768}, {768, 768}, {3072, 768}, {768, 3072}};
    std::srand(1);
    for (int block = 0; block < 12; ++block)
      for (const auto& s : shapes) {
        const Index r = lmshrink::rank_from_ratio(0.25, s[0], s[1]);
        Layer l(s[0], s[1], r);
        l.U().setRandom();
        l.V().setRandom();
        l.S().setRandom();
        layers.push_back(std::move(l));
      }
    for (auto& l : layers) {
      grads.push_back(l.make_gradients());
      grads.back().S.setRandom();  // a pruner update needs a real gradient
      caches.push_back(l.make_cache(kTokens));
    }
    // Activations: one input per distinct input width is enough for timing.
    for (auto& l : layers) {
      x.push_back(Matrix::Random(kTokens, l.in_features()));
      y.push_back(Matrix(kTokens, l.out_features()));
      dy.push_back(Matrix::Random(kTokens, l.out_features()));
      dx.push_back(Matrix::Zero(kTokens, l.in_features()));
    }
  }
};

Model& model() {
  static Model m;
  return m;
}

void BM_forward_backward_48(benchmark::State& state) {
  auto& m = model();
  for (auto _ : state) {
    for (std::size_t i = 0; i < m.layers.size(); ++i) {
      m.layers[i].forward(m.x[i], m.y[i], m.caches[i]);
      m.layers[i].backward(m.x[i], m.dy[i], m.caches[i], m.dx[i], m.grads[i]);
    }
    benchmark::ClobberMemory();
  }
}

// Arg: 1 = a mask step (score, pool, global threshold, mask), 0 = an importance-only step.
void BM_pruner_update_48(benchmark::State& state) {
  auto& m = model();
  lmshrink::PrunerOptions opt;
  if (state.range(0)) {
    opt.schedule = {2, 0, 1, 0.5, 10};  // every step from g = 2 on is a final-phase mask step
  } else {
    opt.schedule = {Index(1) << 40, Index(1) << 39, 1, 0.5, 10};  // never masks
  }
  lmshrink::Pruner<float> pruner(opt);
  std::vector<Layer> copies = m.layers;  // the reference mode zeroes rows of S
  for (std::size_t i = 0; i < copies.size(); ++i)
    pruner.add("w" + std::to_string(i), copies[i], m.grads[i]);
  Index g = 0;
  pruner.after_optimizer_step(g++);
  pruner.after_optimizer_step(g++);
  for (auto _ : state) {
    const auto report = pruner.after_optimizer_step(g++);
    benchmark::DoNotOptimize(report.live_entries);
  }
}

}  // namespace

BENCHMARK(BM_forward_backward_48)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_pruner_update_48)->Arg(0)->Arg(1)->ArgName("mask_step")
    ->Unit(benchmark::kMillisecond)->Iterations(3);

LMSHRINK_BENCHMARK_MAIN()
