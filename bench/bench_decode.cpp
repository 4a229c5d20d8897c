// End-to-end generation speed of whole models: tokens per second of greedy decoding from
// position 0 (lmshrink::models::llama::KvDecoder), dense against compact at remaining ratios q = 0.5 and 0.3, on
// one thread and on two.
//
// Models:
//   stories260K   the bundled real model (teacher) with compact students of its exact shapes
//   stories15M    288 wide, 6 blocks, 768 hidden, vocab 32,000        } synthetic weights:
//   gpt2-small    768 wide, 12 blocks, 3072 hidden, vocab 50,257      } speed only
// Compact students have random low-rank factors and evenly spread kept rows at the budget of
// lmshrink::models::llama::split_budget (a fifth of each layer's budget in kept rows); their outputs mean
// nothing, only their speed does. "cls" variants compress the classifier too.
//
// Dense baselines: the model's matrices with Eigen (dense_eigen, one thread: Eigen does not
// thread matrix-vector products) and the same matrices packed as rank-0 compact layers
// (dense_packed: the teacher's path in lmshrink_compress, threads like the students).
//
//   bench_decode [--report=DIR] [benchmark options]
// `--report=DIR` writes DIR/decode_tables.md (medians and speedups over the faster dense
// baseline at the same thread count) and DIR/decode_speedup.svg (one thread's speedups against q).

#include <algorithm>
#include <benchmark/benchmark.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>
#ifdef _OPENMP
#include <lmshrink/openmp.hpp>
#endif

#include "bench_context.hpp"
#include <lmshrink/models/llama/compact.hpp>
#include <lmshrink/models/llama/decoder.hpp>
#include "cli/svg_plot.hpp"
#include <lmshrink/models/llama/synthetic.hpp>
#include <lmshrink/models/llama/llama2c.hpp>

#ifndef LMSHRINK_DATA_DIR
#define LMSHRINK_DATA_DIR "examples/data"
#endif

namespace {

struct ModelSet {
  std::string name;
  int tokens = 0;  // generated per iteration, from position 0
  lmshrink::models::llama::DenseModel dense;
  lmshrink::models::llama::Compact packed;
  std::map<std::string, lmshrink::models::llama::Compact> students;  // "q:50", "q:50/cls", ...
};

std::map<std::string, std::unique_ptr<ModelSet>>& models() {
  static std::map<std::string, std::unique_ptr<ModelSet>> m;
  return m;
}

// Built on first use, so that a --benchmark_filter run builds only what it times.
ModelSet& model_set(const std::string& name) {
  auto& all = models();
  auto it = all.find(name);
  if (it != all.end()) return *it->second;
  auto set = std::make_unique<ModelSet>();
  set->name = name;
  if (name == "stories260K") {
    set->dense = lmshrink::models::llama::read_llama2c(LMSHRINK_DATA_DIR "/stories260K.bin");
    set->tokens = 256;
  } else if (name == "stories15M") {
    set->dense = lmshrink::models::llama::synthetic_model(lmshrink::models::llama::stories15m_shape(), 1);
    set->tokens = 128;
  } else {
    set->dense = lmshrink::models::llama::synthetic_model(lmshrink::models::llama::gpt2_small_shape(), 1);
    set->tokens = 64;
  }
  set->packed = lmshrink::models::llama::Compact::pack_dense(set->dense);
  for (int pct : {50, 30})
    for (bool cls : {false, true}) {
      lmshrink::models::llama::SyntheticCompactOptions o;
      o.q = pct / 100.0;
      o.compress_classifier = cls;
      set->students["q:" + std::to_string(pct) + (cls ? "/cls" : "")] =
          lmshrink::models::llama::synthetic_compact(set->dense, o);
    }
  return *all.emplace(name, std::move(set)).first->second;
}

template <class View>
void generate(benchmark::State& state, View view, int tokens) {
  lmshrink::models::llama::KvDecoder<View> dec(view);
  for (auto _ : state) {
    int token = 1;
    for (int pos = 0; pos < tokens; ++pos) {
      Eigen::Index next = 0;
      dec.forward(token, pos).maxCoeff(&next);
      token = int(next);
    }
    benchmark::DoNotOptimize(token);
  }
  state.counters["tokens_per_s"] =
      benchmark::Counter(double(tokens), benchmark::Counter::kIsIterationInvariantRate);
}

void bench_dense_eigen(benchmark::State& state, std::string model) {
  ModelSet& m = model_set(model);
  generate<lmshrink::models::llama::DenseView>(state, m.dense, m.tokens);
}

void bench_compact(benchmark::State& state, std::string model, std::string variant, int threads) {
  ModelSet& m = model_set(model);
  const lmshrink::models::llama::Compact& c = variant == "dense_packed" ? m.packed : m.students.at(variant);
  lmshrink::CompactForwardOptions options;
  options.threads = threads;
#ifdef _OPENMP
  options.team = lmshrink::openmp_team();
#else
  if (threads > 1) {
    state.SkipWithError("built without OpenMP");
    return;
  }
#endif
  generate<lmshrink::models::llama::CompactView>(state, lmshrink::models::llama::CompactView(c, options), m.tokens);
}

void register_all() {
  for (const std::string model : {"stories260K", "stories15M", "gpt2-small"}) {
    benchmark::RegisterBenchmark((model + "/dense_eigen/threads:1").c_str(), bench_dense_eigen,
                                 model);
    for (int threads : {1, 2})
      for (const std::string variant :
           {"dense_packed", "q:50", "q:50/cls", "q:30", "q:30/cls"})
        benchmark::RegisterBenchmark(
            (model + "/" + variant + "/threads:" + std::to_string(threads)).c_str(),
            bench_compact, model, variant, threads);
  }
}

void write_report(const std::string& dir, const std::map<std::string, double>& tps) {
  std::string md =
      "| model | threads | dense (Eigen) | dense (packed) | q=0.5 | q=0.5, cls | q=0.3 | "
      "q=0.3, cls |\n|---|---|---|---|---|---|---|---|\n";
  int rows = 0;
  for (const std::string model : {"stories260K", "stories15M", "gpt2-small"}) {
    for (int threads : {1, 2}) {
      const std::string t = "/threads:" + std::to_string(threads);
      const auto get = [&](const std::string& v) {
        auto it = tps.find(model + "/" + v + t);
        return it == tps.end() ? 0.0 : it->second;
      };
      const double eigen = threads == 1 ? get("dense_eigen") : 0.0;
      const double packed = get("dense_packed");
      const double base = std::max(eigen, packed);
      if (base == 0) continue;
      char cell[96];
      std::string line = "| " + model + (model == "stories260K" ? "" : " (synthetic weights)") +
                         " | " + std::to_string(threads) + " | ";
      line += eigen > 0 ? (std::snprintf(cell, sizeof cell, "%.0f", eigen), cell) : "";
      std::snprintf(cell, sizeof cell, " | %.0f", packed);
      line += cell;
      for (const std::string v : {"q:50", "q:50/cls", "q:30", "q:30/cls"}) {
        const double s = get(v);
        if (s > 0) std::snprintf(cell, sizeof cell, " | %.0f (%.2fx)", s, s / base);
        else std::snprintf(cell, sizeof cell, " | ");
        line += cell;
      }
      md += line + " |\n";
      ++rows;
    }
  }
  md += "\nTokens per second (medians) of greedy generation from position 0; in brackets the "
        "speedup over the faster dense baseline at the same thread count. Students have the "
        "model's shapes and random weights at q (speed only); \"cls\": classifier compressed "
        "too.\n";
  // The plot: speedup over the faster dense baseline against q, one thread; q = 1 is dense.
  examples::Plot plot;
  plot.title = "Greedy generation, compact against dense, one thread";
  plot.x_label = "remaining ratio q of the compressed matrices";
  plot.y_label = "speedup over the faster dense baseline (x)";
  const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c"};
  int ci = 0;
  for (const std::string model : {"stories260K", "stories15M", "gpt2-small"}) {
    const auto get = [&](const std::string& v) {
      auto it = tps.find(model + "/" + v + "/threads:1");
      return it == tps.end() ? 0.0 : it->second;
    };
    const double base = std::max(get("dense_eigen"), get("dense_packed"));
    const std::string color = colors[ci++];
    if (base == 0) continue;
    const std::string label = model + (model == "stories260K" ? "" : " (synthetic)");
    examples::Series blocks{label + ", blocks", color, {1.0}, {1.0}};
    examples::Series all{label + ", blocks + classifier", color, {1.0}, {1.0}};
    blocks.markers = all.markers = true;
    all.dashed = true;
    for (const auto& [q, name] : {std::pair<double, std::string>{0.5, "q:50"}, {0.3, "q:30"}}) {
      if (get(name) > 0) blocks.x.push_back(q), blocks.y.push_back(get(name) / base);
      if (get(name + "/cls") > 0) all.x.push_back(q), all.y.push_back(get(name + "/cls") / base);
    }
    plot.series.push_back(blocks);
    plot.series.push_back(all);
  }
  examples::Series ideal{"1/q", "black", {1.0, 0.5, 0.3}, {1.0, 2.0, 1 / 0.3}};
  ideal.dashed = true;
  ideal.width = 1;
  plot.series.push_back(ideal);

  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const std::string path = dir + "/decode_tables.md", svg = dir + "/decode_speedup.svg";
  for (const auto& [file_path, text] : {std::pair<std::string, std::string>{path, md},
                                        {svg, plot.svg()}}) {
    std::ofstream file(file_path);
    file << text;
    if (!file.flush()) {
      std::fprintf(stderr, "bench_decode: cannot write %s\n", file_path.c_str());
      std::exit(1);
    }
  }
  std::printf("%sdecode report: %d row%s; wrote %s and %s\n", md.c_str(), rows,
              rows == 1 ? "" : "s", path.c_str(), svg.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  const std::string report_dir = bench::take_report_dir(argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  bench::add_build_context();
  benchmark::AddCustomContext("compact_kernel",
                              lmshrink::compact_kernel_name(lmshrink::best_compact_kernel()));
  register_all();
  // The median (or the only) tokens/s of every benchmark that ran without error.
  bench::MedianCollector reporter([](const benchmark::BenchmarkReporter::Run& run, double& v) {
    auto c = run.counters.find("tokens_per_s");
    if (run.error_occurred || c == run.counters.end()) return false;
    v = c->second.value;
    return true;
  });
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  if (!report_dir.empty()) write_report(report_dir, reporter.values);
  return 0;
}
