// The compact inference form against dense, in one run.
//
// For every W (out, in) of GPT-2 small and stories260K, batch 1, 8, 64 and 512, and remaining-
// weight ratios q = 0.1 .. 0.7, it times:
//   dense_eigen   y = x·Wᵀ with Eigen
//   dense_onednn  the same with oneDNN's sgemm (when built with it; PyTorch's CPU Linear)
//   fused         CompactLinear::forward (kept rows of S)
//   unfused       the LoSparse reference's compact path: x·Vᵀ, ·Uᵀ, x·S_keptᵀ into a buffer,
//                 a zeroed (N, out) buffer, a scatter and an add; products on the fastest GEMM
//   csr           CompactLinear with the same U, V and the same number of sparse values placed
//                 at random (unstructured), stored as CSR
// A layer at ratio q has half its budget in U·V and half in S:
//   r = floor(q/2 · out·in/(out+in)),  kept rows = round((q·out·in − r·(out+in)) / in).
//
// Counters: FLOP/s (the method's own FLOPs), weight B/s (bytes of the weights it reads: U, V,
// kept S and indices for the compact forms, W for dense) and the layer's FLOP and byte ratios.
//
// `--report=DIR` also writes DIR/bench_compact.csv (medians), DIR/performance_tables.md and the
// plots DIR/speedup_batch1.svg and DIR/speedup_batch512.svg (docs/performance.md shows them).

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <lmshrink/compact.hpp>
#include <lmshrink/random.hpp>

#ifdef LMSHRINK_HAVE_ONEDNN
#include <lmshrink/onednn.hpp>
#include <oneapi/dnnl/dnnl.h>
#endif
#ifdef _OPENMP
#include <lmshrink/openmp.hpp>
#include <omp.h>
#endif

#include "../examples/cli/svg_plot.hpp"
#include "bench_context.hpp"
#include "bench_random.hpp"

using lmshrink::Index;
using Matrix = lmshrink::RowMatrix<float>;

namespace {

struct Shape {
  Index out, in;
  const char* model;
};
const Shape kShapes[] = {{768, 768, "gpt2"},   {2304, 768, "gpt2"}, {3072, 768, "gpt2"},
                         {768, 3072, "gpt2"},  {64, 64, "stories260K"},
                         {32, 64, "stories260K"}, {172, 64, "stories260K"},
                         {64, 172, "stories260K"}};
const Index kBatches[] = {1, 8, 64, 512};
const int kRatios[] = {10, 20, 30, 50, 70};  // percent of weights remaining

Matrix random(Index r, Index c, std::uint64_t seed) { return bench::random_normal(r, c, seed); }
using bench::pick;

struct Budget {
  Index rank, kept;
};
Budget budget(Index out, Index in, int pct) {
  const double q = pct / 100.0, total = q * double(out) * double(in);
  const Index rank = Index(std::floor(0.5 * total / double(out + in)));
  Index kept = Index(std::llround((total - double(rank * (out + in))) / double(in)));
  return {rank, std::clamp<Index>(kept, 0, out)};
}

lmshrink::LowRankSparseLinear<float> make_layer(Index out, Index in, int pct, bool unstructured) {
  const Budget b = budget(out, in, pct);
  lmshrink::LowRankSparseLinear<float> layer(out, in, b.rank, true);
  layer.U() = random(out, b.rank, 1);
  layer.V() = random(b.rank, in, 2);
  layer.S() = random(out, in, 3);
  layer.bias() = random(out, 1, 4);
  if (!unstructured) {
    lmshrink::RowMask rows = lmshrink::RowMask::Zero(out);
    for (Index i : pick(out, b.kept, 5)) rows[i] = 1;
    layer.set_row_mask(rows);
  } else {
    lmshrink::ElementMask m = lmshrink::ElementMask::Zero(out, in);
    for (Index e : pick(out * in, b.kept * in, 6)) m.data()[e] = 1;
    layer.set_element_mask(m);
  }
  return layer;
}

// Repetitions of one benchmark reuse its layer: building a 3072x768 layer (random S, a shuffled
// element mask) costs more than timing it.
const lmshrink::LowRankSparseLinear<float>& cached_layer(Index out, Index in, int pct,
                                                         bool unstructured) {
  static std::tuple<Index, Index, int> key[2] = {{-1, -1, -1}, {-1, -1, -1}};
  static lmshrink::LowRankSparseLinear<float> layer[2];
  const auto wanted = std::make_tuple(out, in, pct);
  if (key[unstructured] != wanted) {
    layer[unstructured] = make_layer(out, in, pct, unstructured);
    key[unstructured] = wanted;
  }
  return layer[unstructured];
}

// C (m, n) = A (m, k) · B (n, k)ᵀ on the fastest GEMM this build has.
void gemm_nt(Index m, Index n, Index k, const float* a, Index lda, const float* b, Index ldb,
             float* c, Index ldc) {
#ifdef LMSHRINK_HAVE_ONEDNN
  dnnl_sgemm('N', 'T', m, n, k, 1.f, a, lda, b, ldb, 0.f, c, ldc);
#else
  Eigen::Map<const Matrix, 0, Eigen::OuterStride<>> A(a, m, k, Eigen::OuterStride<>(lda));
  Eigen::Map<const Matrix, 0, Eigen::OuterStride<>> B(b, n, k, Eigen::OuterStride<>(ldb));
  Eigen::Map<Matrix, 0, Eigen::OuterStride<>> C(c, m, n, Eigen::OuterStride<>(ldc));
  C.noalias() = A * B.transpose();
#endif
}

void set_counters(benchmark::State& state, double flops, double bytes, double flop_ratio,
                  double byte_ratio) {
  using benchmark::Counter;
  state.counters["FLOP/s"] = Counter(flops, Counter::kIsIterationInvariantRate);
  state.counters["weight_B/s"] = Counter(bytes, Counter::kIsIterationInvariantRate);
  state.counters["flop_ratio"] = flop_ratio;
  state.counters["byte_ratio"] = byte_ratio;
}

double dense_flops(const Shape& s, Index n) { return 2.0 * double(n * s.out * s.in); }
double dense_bytes(const Shape& s) { return 4.0 * double(s.out * s.in + s.out); }

void bench_dense_eigen(benchmark::State& state, Shape s, Index n) {
  const Matrix w = random(s.out, s.in, 1), x = random(n, s.in, 7);
  const lmshrink::Vector<float> bias = random(s.out, 1, 4);
  Matrix y(n, s.out);
  for (auto _ : state) {
    y.noalias() = x * w.transpose();
    y.rowwise() += bias.transpose();
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, dense_flops(s, n), dense_bytes(s), 1, 1);
}

#ifdef LMSHRINK_HAVE_ONEDNN
void set_threads(int threads) {
#ifdef _OPENMP
  omp_set_num_threads(threads);
#else
  (void)threads;
#endif
}

void bench_dense_onednn(benchmark::State& state, Shape s, Index n, int threads) {
  set_threads(threads);
  const Matrix w = random(s.out, s.in, 1), x = random(n, s.in, 7);
  const lmshrink::Vector<float> bias = random(s.out, 1, 4);
  Matrix y(n, s.out);
  for (auto _ : state) {
    // The bias is the initial C (beta = 1), as a fused Linear does.
    for (Index i = 0; i < n; ++i) std::memcpy(y.row(i).data(), bias.data(), sizeof(float) * s.out);
    dnnl_sgemm('N', 'T', n, s.out, s.in, 1.f, x.data(), s.in, w.data(), s.in, 1.f, y.data(),
               s.out);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_threads(1);
  set_counters(state, dense_flops(s, n), dense_bytes(s), 1, 1);
}
#endif

void compact_counters(benchmark::State& state, const lmshrink::CompactLinear<float>& c, Shape s,
                      Index n) {
  const double flops = 2.0 * double(n) * double(c.rank() * (s.out + s.in) + c.sparse_values());
  set_counters(state, flops, double(c.weight_bytes()), flops / dense_flops(s, n),
               double(c.weight_bytes()) / dense_bytes(s));
}

// The compact kernel every packed layer runs (--kernel=portable|avx2|avx512; default: the best
// this CPU has), so that one machine can time the AVX2 kernel beside the AVX-512 one.
lmshrink::CompactKernel g_kernel = lmshrink::CompactKernel::automatic;

lmshrink::PackOptions pack_options() {
  lmshrink::PackOptions options;
  options.kernel = g_kernel;
  return options;
}

void bench_fused(benchmark::State& state, Shape s, Index n, int pct, bool unstructured,
                 int threads, lmshrink::LowRankSgemm sgemm) {
  const auto& layer = cached_layer(s.out, s.in, pct, unstructured);
  lmshrink::PackOptions options = pack_options();
  options.low_rank_sgemm = sgemm;
  const auto c = lmshrink::CompactLinear<float>::pack(layer, options);
  auto ws = c.make_workspace(n);
  const Matrix x = random(n, s.in, 7);
  Matrix y(n, s.out);
  lmshrink::CompactForwardOptions forward;
  forward.threads = threads;
#ifdef _OPENMP
  forward.team = lmshrink::openmp_team();
#endif
  for (auto _ : state) {
    c.forward(x, y, ws, forward);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  compact_counters(state, c, s, n);
}

void bench_unfused(benchmark::State& state, Shape s, Index n, int pct) {
  const auto& layer = cached_layer(s.out, s.in, pct, false);
  const auto c = lmshrink::CompactLinear<float>::pack(layer, pack_options());
  const auto& kept = c.kept_row_indices();
  const Index k = Index(kept.size()), r = layer.rank();
  Matrix s_kept(k, s.in);
  for (Index j = 0; j < k; ++j) s_kept.row(j) = layer.S().row(kept[std::size_t(j)]);
  const Matrix x = random(n, s.in, 7);
  Matrix t(n, std::max<Index>(r, 1)), z(n, std::max<Index>(k, 1)), buffer(n, s.out), y(n, s.out);
  for (auto _ : state) {
    gemm_nt(n, r, s.in, x.data(), s.in, layer.V().data(), s.in, t.data(), t.cols());
    gemm_nt(n, s.out, r, t.data(), t.cols(), layer.U().data(), r, y.data(), s.out);
    gemm_nt(n, k, s.in, x.data(), s.in, s_kept.data(), s.in, z.data(), z.cols());
    buffer.setZero();
    for (Index i = 0; i < n; ++i)
      for (Index j = 0; j < k; ++j) buffer(i, kept[std::size_t(j)]) = z(i, j);
    y += buffer;
    y.rowwise() += layer.bias().transpose();
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  compact_counters(state, c, s, n);
}

// Batch 1 with a working set far beyond the last-level cache: the forward cycles through copies
// of the layer totalling 256 MB of dense weights (and the same number of compact copies), as a
// model whose layers stream from DRAM. The hot benchmarks above reuse one layer from cache.
constexpr double kColdBytes = 256.0 * (1 << 20);

void bench_dense_cold(benchmark::State& state, Shape s) {
  const Matrix w0 = random(s.out, s.in, 1);
  const std::size_t copies = std::size_t(std::ceil(kColdBytes / dense_bytes(s)));
  std::vector<Matrix> w(copies, w0);
  const lmshrink::Vector<float> bias = random(s.out, 1, 4);
  const Matrix x = random(1, s.in, 7);
  Matrix y(1, s.out);
  std::size_t i = 0;
  for (auto _ : state) {
    y.noalias() = x * w[i].transpose();
    y.rowwise() += bias.transpose();
    i = i + 1 == copies ? 0 : i + 1;
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, dense_flops(s, 1), dense_bytes(s), 1, 1);
}

void bench_fused_cold(benchmark::State& state, Shape s, int pct) {
  const auto c0 = lmshrink::CompactLinear<float>::pack(cached_layer(s.out, s.in, pct, false), pack_options());
  const std::size_t copies = std::size_t(std::ceil(kColdBytes / dense_bytes(s)));
  std::vector<lmshrink::CompactLinear<float>> c(copies, c0);
  auto ws = c0.make_workspace(1);
  const Matrix x = random(1, s.in, 7);
  Matrix y(1, s.out);
  std::size_t i = 0;
  for (auto _ : state) {
    c[i].forward(x, y, ws);
    i = i + 1 == copies ? 0 : i + 1;
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  compact_counters(state, c0, s, 1);
}

std::string shape_name(const Shape& s) { return std::to_string(s.out) + "x" + std::to_string(s.in); }

void register_all() {
  for (const Shape& s : kShapes)
    for (Index n : kBatches) {
      const std::string base = shape_name(s) + "/batch:" + std::to_string(n);
      benchmark::RegisterBenchmark(("dense_eigen/" + base).c_str(), bench_dense_eigen, s, n);
#ifdef LMSHRINK_HAVE_ONEDNN
      benchmark::RegisterBenchmark(("dense_onednn/" + base).c_str(), bench_dense_onednn, s, n, 1);
#endif
      for (int pct : kRatios) {
        const std::string tail = base + "/q:" + std::to_string(pct);
        benchmark::RegisterBenchmark(("fused/" + tail).c_str(), bench_fused, s, n, pct, false, 1,
                                     nullptr);
#ifdef LMSHRINK_HAVE_ONEDNN
        benchmark::RegisterBenchmark(("fused_onednn/" + tail).c_str(), bench_fused, s, n, pct,
                                     false, 1, &lmshrink::onednn_sgemm);
#endif
        benchmark::RegisterBenchmark(("unfused/" + tail).c_str(), bench_unfused, s, n, pct);
        benchmark::RegisterBenchmark(("csr/" + tail).c_str(), bench_fused, s, n, pct, true, 1,
                                     nullptr);
      }
    }
#if defined(LMSHRINK_HAVE_ONEDNN) && defined(_OPENMP)
  // Two threads, both sides: GPT-2 shapes at q = 0.5.
  for (const Shape& s : kShapes) {
    if (s.model != std::string("gpt2")) continue;
    for (Index n : {Index(1), Index(512)}) {
      const std::string base = shape_name(s) + "/batch:" + std::to_string(n);
      benchmark::RegisterBenchmark(("dense_onednn_2threads/" + base).c_str(), bench_dense_onednn,
                                   s, n, 2);
      benchmark::RegisterBenchmark(("fused_2threads/" + base + "/q:50").c_str(), bench_fused, s,
                                   n, 50, false, 2, nullptr);
    }
  }
#endif
  for (const Shape& s : kShapes) {
    if (s.model != std::string("gpt2")) continue;
    const std::string base = shape_name(s) + "/batch:1";
    benchmark::RegisterBenchmark(("dense_eigen_cold/" + base).c_str(), bench_dense_cold, s);
    for (int pct : kRatios)
      benchmark::RegisterBenchmark(("fused_cold/" + base + "/q:" + std::to_string(pct)).c_str(),
                                   bench_fused_cold, s, pct);
  }
}

// ---- report ----------------------------------------------------------------------------------

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}
std::string time_str(double s) {
  if (s < 1e-3) return fmt("%.2f µs", s * 1e6);
  return fmt("%.3f ms", s * 1e3);
}

struct Row {
  Shape s;
  Index n;
  int pct;
  double dense_eigen, dense_onednn, fused, unfused, csr, fused_onednn;  // seconds, 0 = not run
  Index rank, kept, compact_bytes, csr_bytes;
  double flops_compact;
  double fastest_dense() const { return dense_onednn > 0 ? std::min(dense_eigen, dense_onednn) : dense_eigen; }
};

void write_report(const std::string& dir, const std::map<std::string, double>& t) {
  std::vector<Row> rows;
  const auto get = [&](const std::string& k) {
    auto it = t.find(k);
    return it == t.end() ? 0.0 : it->second;
  };
  for (const Shape& s : kShapes)
    for (Index n : kBatches)
      for (int pct : kRatios) {
        const std::string base = shape_name(s) + "/batch:" + std::to_string(n);
        const std::string tail = base + "/q:" + std::to_string(pct);
        Row r{s, n, pct, get("dense_eigen/" + base), get("dense_onednn/" + base),
              get("fused/" + tail), get("unfused/" + tail), get("csr/" + tail),
              get("fused_onednn/" + tail), 0, 0, 0, 0, 0};
        if (r.fused == 0 || r.dense_eigen == 0) continue;
        const auto c = lmshrink::CompactLinear<float>::pack(make_layer(s.out, s.in, pct, false), pack_options());
        const auto u = lmshrink::CompactLinear<float>::pack(make_layer(s.out, s.in, pct, true), pack_options());
        r.rank = c.rank();
        r.kept = c.kept_rows();
        r.compact_bytes = c.weight_bytes();
        r.csr_bytes = u.weight_bytes();
        r.flops_compact = 2.0 * double(n) * double(c.rank() * (s.out + s.in) + c.sparse_values());
        rows.push_back(r);
      }
  if (rows.empty()) {
    std::printf("no complete rows to report (every row needs dense_eigen and fused)\n");
    return;
  }

  std::ofstream csv(dir + "/bench_compact.csv");
  csv << "out,in,batch,remaining_pct,rank,kept_rows,compact_weight_bytes,csr_weight_bytes,"
         "dense_eigen_s,dense_onednn_s,fused_s,unfused_s,csr_s,fused_onednn_s\n";
  for (const Row& r : rows)
    csv << r.s.out << ',' << r.s.in << ',' << r.n << ',' << r.pct << ',' << r.rank << ','
        << r.kept << ',' << r.compact_bytes << ',' << r.csr_bytes << ',' << r.dense_eigen << ','
        << r.dense_onednn << ',' << r.fused << ',' << r.unfused << ',' << r.csr << ','
        << r.fused_onednn << '\n';

  std::ofstream md(dir + "/performance_tables.md");
  const bool have_onednn = rows.front().dense_onednn > 0;
  md << "Times are medians. *fastest dense* is the faster of Eigen"
     << (have_onednn ? " and oneDNN" : "") << " in this run; speedups are its time over the "
     << "method's time.\n\n";
  // Batch 1: the bandwidth target.
  md << "### Batch 1 (matrix-vector): time against the weight-bytes bound\n\n"
        "bound = 1.1 × compact weight bytes / bandwidth of the fastest dense matrix-vector "
        "product; ≤ 1 meets the target.\n\n"
        "| W (out, in) | q | r | kept rows | dense | fused | speedup | fused / bound | unfused | "
        "csr | fused vs unfused | fused vs csr |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const Row& r : rows) {
    if (r.n != 1) continue;
    const double bw = dense_bytes(r.s) / r.fastest_dense();
    const double bound = 1.1 * double(r.compact_bytes) / bw;
    md << "| " << shape_name(r.s) << " | " << fmt("%.1f", r.pct / 100.0) << " | " << r.rank
       << " | " << r.kept << " | " << time_str(r.fastest_dense()) << " | " << time_str(r.fused)
       << " | " << fmt("%.2fx", r.fastest_dense() / r.fused) << " | " << fmt("%.2f", r.fused / bound)
       << " | " << time_str(r.unfused) << " | " << time_str(r.csr) << " | "
       << fmt("%.2fx", r.unfused / r.fused) << " | " << fmt("%.2fx", r.csr / r.fused) << " |\n";
  }
  for (Index n : {Index(8), Index(64), Index(512)}) {
    md << "\n### Batch " << n << "\n\n"
       << "GFLOP/s ratio = fused GFLOP/s / fastest dense GFLOP/s (target at batch 512: ≥ 0.9).\n\n"
          "| W (out, in) | q | FLOP ratio | dense Eigen | dense oneDNN | fused | speedup | "
          "GFLOP/s ratio | fused GFLOP/s | unfused | csr | fused vs unfused | fused vs csr | "
          "fused, oneDNN low rank |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for (const Row& r : rows) {
      if (r.n != n) continue;
      const double fr = r.flops_compact / dense_flops(r.s, n);
      const double dense_gf = dense_flops(r.s, n) / r.fastest_dense() * 1e-9;
      const double fused_gf = r.flops_compact / r.fused * 1e-9;
      md << "| " << shape_name(r.s) << " | " << fmt("%.1f", r.pct / 100.0) << " | "
         << fmt("%.3f", fr) << " | " << time_str(r.dense_eigen) << " | "
         << (r.dense_onednn > 0 ? time_str(r.dense_onednn) : "–") << " | " << time_str(r.fused)
         << " | " << fmt("%.2fx", r.fastest_dense() / r.fused) << " | "
         << fmt("%.2f", fused_gf / dense_gf) << " | " << fmt("%.0f", fused_gf) << " | "
         << time_str(r.unfused) << " | " << time_str(r.csr) << " | "
         << fmt("%.2fx", r.unfused / r.fused) << " | " << fmt("%.2fx", r.csr / r.fused) << " | "
         << (r.fused_onednn > 0 ? time_str(r.fused_onednn) : "–") << " |\n";
    }
  }
  md << "\n### Batch 1 from DRAM (cold)\n\n"
        "The layer's copies total 256 MB, so every forward streams its weights from memory.\n\n"
        "| W (out, in) | q | dense Eigen | fused | speedup | byte ratio | fused / bound |\n"
        "|---|---|---|---|---|---|---|\n";
  for (const Row& r : rows) {
    if (r.n != 1) continue;
    const std::string base = shape_name(r.s) + "/batch:1";
    const double dense = get("dense_eigen_cold/" + base);
    const double fused = get("fused_cold/" + base + "/q:" + std::to_string(r.pct));
    if (dense == 0 || fused == 0) continue;
    const double bound = 1.1 * double(r.compact_bytes) / (dense_bytes(r.s) / dense);
    md << "| " << shape_name(r.s) << " | " << fmt("%.1f", r.pct / 100.0) << " | "
       << time_str(dense) << " | " << time_str(fused) << " | " << fmt("%.2fx", dense / fused)
       << " | " << fmt("%.3f", double(r.compact_bytes) / dense_bytes(r.s)) << " | "
       << fmt("%.2f", fused / bound) << " |\n";
  }
  bool header = false;
  for (const Shape& s : kShapes)
    for (Index n : {Index(1), Index(512)}) {
      const std::string base = shape_name(s) + "/batch:" + std::to_string(n);
      const double dense = get("dense_onednn_2threads/" + base);
      const double fused = get("fused_2threads/" + base + "/q:50");
      if (dense == 0 || fused == 0) continue;
      if (!header) {
        md << "\n### Two threads, q = 0.5\n\n"
              "| W (out, in) | batch | dense oneDNN, 2 threads | fused, 2 threads | speedup | "
              "fused 2 threads vs 1 |\n|---|---|---|---|---|---|\n";
        header = true;
      }
      md << "| " << shape_name(s) << " | " << n << " | " << time_str(dense) << " | "
         << time_str(fused) << " | " << fmt("%.2fx", dense / fused) << " | "
         << fmt("%.2fx", get("fused/" + base + "/q:50") / fused) << " |\n";
    }

  const char* colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                          "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};
  for (Index n : {Index(1), Index(512)}) {
    examples::Plot p;
    p.title = "Compact fused forward vs fastest dense, batch " + std::to_string(n);
    p.x_label = "remaining weight ratio q";
    p.y_label = "speedup over fastest dense (x)";
    p.log_y = true;
    int ci = 0;
    for (const Shape& s : kShapes) {
      examples::Series fused{shape_name(s) + " fused", colors[ci % 8], {}, {}};
      examples::Series csr{shape_name(s) + " csr", colors[ci % 8], {}, {}};
      fused.markers = true;
      csr.dashed = true;
      csr.in_legend = s.model == std::string("gpt2");
      ++ci;
      for (const Row& r : rows)
        if (r.n == n && r.s.out == s.out && r.s.in == s.in) {
          fused.x.push_back(r.pct / 100.0);
          fused.y.push_back(r.fastest_dense() / r.fused);
          csr.x.push_back(r.pct / 100.0);
          csr.y.push_back(r.fastest_dense() / r.csr);
        }
      if (s.model != std::string("gpt2")) continue;  // tiny shapes: overhead, see the tables
      p.series.push_back(fused);
      p.series.push_back(csr);
    }
    examples::Series ideal{n == 1 ? "1/byte ratio (768x768)" : "1/FLOP ratio", "black", {}, {}};
    ideal.dashed = true;
    ideal.width = 1;
    for (const Row& r : rows)
      if (r.n == n && r.s.out == 768 && r.s.in == 768) {
        ideal.x.push_back(r.pct / 100.0);
        ideal.y.push_back(n == 1 ? dense_bytes(r.s) / double(r.compact_bytes)
                                 : dense_flops(r.s, n) / r.flops_compact);
      }
    p.series.push_back(ideal);
    const std::string svg = dir + "/speedup_batch" + std::to_string(n) + ".svg";
    std::ofstream(svg) << p.svg();
    std::printf("wrote %s\n", svg.c_str());
  }
  std::printf("report: %zu rows; wrote %s/bench_compact.csv and %s/performance_tables.md\n",
              rows.size(), dir.c_str(), dir.c_str());
}

/// Takes --kernel=NAME out of argv into g_kernel; false (with a message) for an unknown name or
/// a kernel this CPU lacks.
bool take_kernel(int& argc, char** argv) {
  int kept = 1;
  bool ok = true;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--kernel=", 0) != 0) {
      argv[kept++] = argv[i];
      continue;
    }
    const std::string name = arg.substr(9);
    bool known = false;
    for (auto k : {lmshrink::CompactKernel::portable, lmshrink::CompactKernel::avx2, lmshrink::CompactKernel::avx512})
      if (name == lmshrink::compact_kernel_name(k)) {
        known = true;
        g_kernel = k;
      }
    if (!known || !lmshrink::compact_kernel_supported(g_kernel)) {
      std::fprintf(stderr, "bench_compact: --kernel=%s: expected portable, avx2 or avx512, one this CPU supports\n",
                   name.c_str());
      ok = false;
    }
  }
  argc = kept;
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string report_dir = bench::take_report_dir(argc, argv);
  if (!take_kernel(argc, argv)) return 2;
#ifdef _OPENMP
  omp_set_num_threads(1);  // oneDNN and the compact kernels on one core unless a benchmark asks
#endif
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  bench::add_build_context();
  benchmark::AddCustomContext("compact_kernel",
                              lmshrink::compact_kernel_name(g_kernel == lmshrink::CompactKernel::automatic
                                                                ? lmshrink::best_compact_kernel()
                                                                : g_kernel));
#ifdef LMSHRINK_HAVE_ONEDNN
  benchmark::AddCustomContext("onednn", "sgemm, one thread");
#else
  benchmark::AddCustomContext("onednn", "not built (Debian libdnnl-dev)");
#endif
  register_all();
  // The median (or the only) real time per iteration, in seconds, of every benchmark.
  bench::MedianCollector reporter([](const benchmark::BenchmarkReporter::Run& run, double& t) {
    t = run.GetAdjustedRealTime() / benchmark::GetTimeUnitMultiplier(run.time_unit);
    return true;
  });
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  if (!report_dir.empty()) write_report(report_dir, reporter.values);
  return 0;
}
