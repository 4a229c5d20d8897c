// The tiled soft-target KL (value + gradient) against a straightforward softmax implementation
// that materializes both (tokens × vocab) probability matrices, at vocabularies of 512 and
// GPT-2's 50,257, for batch × sequence = 8 × 1024 tokens, T = 2.
//
// Counters: tokens/s, and peak_extra_MB: the growth of the process's peak resident set during
// the benchmark's first repetition (getrusage), i.e. the scratch memory the method needed beyond
// the inputs and the gradient, which are allocated and touched before it. The peak only ever
// grows, so the order is: tiled then matrices at 512, tiled then matrices at 50,257; later
// repetitions report the first one's figure.

#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <Eigen/Core>
#include <map>
#include <string>
#include <lmshrink/random.hpp>
#include <lmshrink/distillation.hpp>

#include "bench_context.hpp"

using lmshrink::Index;
using Matrix = lmshrink::RowMatrix<float>;

namespace {

constexpr Index kTokens = 8 * 1024;
constexpr double kT = 2.0;

// The first repetition's peak growth for each benchmark, reported by every repetition.
double first_peak_extra(const std::string& name, double measured) {
  static std::map<std::string, double> first;
  return first.emplace(name, measured).first->second;
}

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;  // kilobytes on Linux
}

struct Inputs {
  Matrix student, teacher, grad;
};

// One set of inputs per vocabulary, built once and touched, so that it is not scratch.
Inputs& inputs(Index vocab) {
  static Index built = -1;
  static Inputs in;
  if (built != vocab) {
    in = Inputs{};
    lmshrink::SplitMix64 rng(vocab);
    in.student.resize(kTokens, vocab);
    in.teacher.resize(kTokens, vocab);
    for (Index i = 0; i < in.student.size(); ++i) {
      in.student.data()[i] = float(3 * rng.normal());
      in.teacher.data()[i] = float(3 * rng.normal());
    }
    in.grad.setZero(kTokens, vocab);
    built = vocab;
  }
  return in;
}

void BM_kl_tiled(benchmark::State& state) {
  const Index vocab = state.range(0);
  Inputs& in = inputs(vocab);
  lmshrink::LossOptions o;
  o.temperature = kT;
  const double before = peak_rss_mb();
  double loss = 0;
  for (auto _ : state) {
    loss = lmshrink::kl_divergence<float>(in.student, in.teacher, in.grad, o);
    benchmark::DoNotOptimize(loss);
    benchmark::ClobberMemory();
  }
  state.counters["tokens/s"] = benchmark::Counter(double(kTokens), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["peak_extra_MB"] = first_peak_extra(std::string(__func__) + "/" + std::to_string(vocab), peak_rss_mb() - before);
  state.counters["loss"] = loss;
}

// The straightforward version: softmax matrices for student and teacher, then the formulas.
void BM_kl_softmax_matrices(benchmark::State& state) {
  const Index vocab = state.range(0);
  Inputs& in = inputs(vocab);
  const double before = peak_rss_mb();
  double loss = 0;
  for (auto _ : state) {
    Eigen::ArrayXXf ps = (in.student.array() / float(kT)).transpose();  // (vocab, tokens)
    Eigen::ArrayXXf pt = (in.teacher.array() / float(kT)).transpose();
    ps.rowwise() -= ps.colwise().maxCoeff();
    pt.rowwise() -= pt.colwise().maxCoeff();
    ps = ps.exp();
    pt = pt.exp();
    ps.rowwise() /= ps.colwise().sum();
    pt.rowwise() /= pt.colwise().sum();
    loss = double((pt * (pt.log() - ps.log())).sum()) * kT * kT / double(kTokens);
    in.grad = ((ps - pt) * float(kT / double(kTokens))).transpose().matrix();
    benchmark::DoNotOptimize(loss);
    benchmark::ClobberMemory();
  }
  state.counters["tokens/s"] = benchmark::Counter(double(kTokens), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["peak_extra_MB"] = first_peak_extra(std::string(__func__) + "/" + std::to_string(vocab), peak_rss_mb() - before);
  state.counters["loss"] = loss;
}

}  // namespace

// In this order (see the note on peak memory above).
BENCHMARK(BM_kl_tiled)->Arg(512)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_kl_softmax_matrices)->Arg(512)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_kl_tiled)->Arg(50257)->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK(BM_kl_softmax_matrices)->Arg(50257)->Unit(benchmark::kMillisecond)->Iterations(1);

LMSHRINK_BENCHMARK_MAIN();
