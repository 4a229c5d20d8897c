// Training throughput: where a student's step goes. One benchmark iteration is one step of the
// main job's training loop (compress::training_step): the teacher's forward, the student's
// forward, the distillation loss (KL + CE and the layer-wise term), the backward, the shards'
// gradient sum, AdamW and the pruner. Students of each method at ratio 0.5, shaped as they train
// (the plan's shaped layers: rank, live rows of S, element masks; random values, which a step's
// cost does not depend on), LoSparse in both mask modes, at two scales:
//
//   stories260K   the bundled model, the job's batch of 4 × 512 tokens
//   gpt2-small    GPT-2 small's shapes with synthetic weights, 4 × 256 tokens
//
// Counters per benchmark (per step, medians over repetitions): tokens/s; for each phase its wall
// milliseconds (a phase inside the shards counts its thread time divided by the threads that
// run them), and, where the phase is a product, its GFLOP/s per thread:
//
//   linear      the student's linear layers, forward and backward (executed FLOPs: U·V and S's
//               live rows; an element-masked S runs as its dense rows; W = U·V + S where the
//               layer merges them)
//   attention   causal attention, forward and backward (RoPE included), the causal half's FLOPs
//   classifier  the logits' product and its two backward products
//   rest        norms, activations, residual adds, embeddings
//   teacher     the teacher's forward (logits and block outputs)
//   loss        KL + CE and the layer-wise term, values and gradients
//   optimizer   AdamW over every parameter
//   pruner      importance and masks (pruning methods; a mask every 10 steps, as the job's)
//   other       the rest of the step's wall time: the shards' gradient sum, waiting on the
//               slower shard
//
// BM_sgemm gives the machine's practical rate beside it: oneDNN's sgemm (Eigen's GEMM without
// oneDNN) on one thread, at the scale's MLP shape (tokens of one shard × dim → hidden) and at
// 1024³. With --report=DIR the run writes DIR/train_phases.md (docs/performance.md's table).

#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef LMSHRINK_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#endif

#include <lmshrink/models/gpt2/model.hpp>
#include <lmshrink/models/gpt2/synthetic.hpp>

#include "apps/compress/training.hpp"
#include "bench_context.hpp"

namespace {

using compress::Method;
using lmshrink::models::NetProfile;

struct Scale {
  const char* name;
  int batch, length;
  int dim, hidden;  // the MLP's shape, for BM_sgemm
};
constexpr Scale kScales[] = {{"stories260K", 4, 512, 64, 172}, {"gpt2-small", 4, 256, 768, 3072}};
constexpr int kShards = 2;

// The pruner's mask mode, as --mask-mode: reference (the job's default) leaves every row of S
// live on the layers, so S trains as a dense product; persistent sets the masks on the layers.
// The steps timed: from the pruning phase's midpoint (a mask every 10 steps), or in the final
// phase, where every step masks (and, in reference mode, the pruned rows are zero at every
// forward).
struct MethodCase {
  Method method;
  const char* label;
  double ratio;
  lmshrink::MaskMode mode = lmshrink::MaskMode::reference;
  int first_step = 400;
};
constexpr MethodCase kMethodCases[] = {{Method::dense, "dense", 1.0},
                                       {Method::lowrank, "lowrank", 0.5},
                                       {Method::losparse, "losparse", 0.5},
                                       {Method::losparse, "losparse-final", 0.5, lmshrink::MaskMode::reference, 700},
                                       {Method::losparse, "losparse-persistent", 0.5, lmshrink::MaskMode::persistent},
                                       {Method::oats, "oats-sparse", 0.5}};

lmshrink::models::Model& teacher(int scale) {
  static std::unique_ptr<lmshrink::models::Model> models[2];
  auto& m = models[scale];
  if (!m) {
    if (scale == 0) {
      m = examples::load_model(LMSHRINK_DATA_DIR "/stories260K.bin");
    } else {
      namespace gpt2 = lmshrink::models::gpt2;
      m = std::make_unique<gpt2::Model>(gpt2::Weights<float>::from_model(gpt2::synthetic_model(gpt2::small_config(), 2019)));
    }
  }
  return *m;
}

// Per token: the FLOPs of one forward of a layer as it runs on `tokens` rows at a time (U·V,
// S's live rows, or every row of an element-masked S); in the merged form (S trained dense), W's
// product and a token's share of forming W, dU and dV (a third of them: a step counts three
// forwards).
double layer_forward_flops(const lmshrink::models::Layer& layer, lmshrink::Index tokens) {
  const double in = double(layer.in_features()), out = double(layer.out_features());
  if (layer.merges(tokens)) return 2 * out * in * (1 + double(layer.rank()) / double(tokens));
  double rows = 0;
  for (const auto& run : layer.live_row_runs()) rows += double(run.second);
  return 2 * (double(layer.rank()) * (in + out) + rows * in);
}

// Per sequence: causal attention's forward FLOPs (QKᵀ and P·V over the causal half).
double attention_forward_flops(const lmshrink::models::ModelShape& s, int n) {
  const double hs = double(s.dim) / double(s.n_heads);
  return double(s.n_layers) * s.n_heads * 2 * hs * double(n) * double(n + 1);
}

struct StepFlops {
  double linear = 0, attention = 0, classifier = 0, teacher = 0;
};

StepFlops step_flops(const lmshrink::models::Model& student, const lmshrink::models::Model& t, int batch, int n,
                     int shards) {
  const double tokens = double(batch) * n;
  const lmshrink::Index shard_tokens = lmshrink::Index((batch + shards - 1) / shards) * n;  // a layer's call
  StepFlops f;
  const auto shape = student.shape();
  double teacher_linear = 0;
  for (int l = 0; l < shape.n_layers; ++l)
    for (int k = 0; k < student.linear_kinds(); ++k) {
      f.linear += 3 * tokens * layer_forward_flops(student.linear(l, k), shard_tokens);
      teacher_linear += tokens * layer_forward_flops(t.linear(l, k), shard_tokens);
    }
  f.attention = 3 * batch * attention_forward_flops(shape, n);
  f.classifier = 3 * tokens * 2 * double(shape.dim) * shape.vocab_size;
  f.teacher = teacher_linear + batch * attention_forward_flops(shape, n) + f.classifier / 3;
  return f;
}

// Args: {scale, method case, threads, teacher outputs kept}. Kept: the teacher's outputs come
// from a TeacherOutputCache that already holds the batch, as for every student of a run but
// the first (lmshrink_compress keeps them), so the step runs no teacher forward.
void BM_train_step(benchmark::State& state) {
  const int scale = int(state.range(0)), threads = int(state.range(2));
  const bool kept = state.range(3) != 0;
  const Scale& sc = kScales[scale];
  const MethodCase& mc = kMethodCases[state.range(1)];
  lmshrink::models::Model& t = teacher(scale);
  compress::Options o;
  o.batch = sc.batch;
  o.oats_allocation = compress::OatsAllocation::sparse;
  o.mask_mode = mc.mode;
  compress::Job job;
  job.method = mc.method;
  job.ratio = mc.ratio;
  const compress::StudentFootprint footprint = compress::student_footprint(o, job, t);
  auto student = t.clone();
  lmshrink::SplitMix64 rng(3);
  if (mc.method != Method::dense)
    for (int l = 0; l < t.shape().n_layers; ++l)
      for (int k = 0; k < t.linear_kinds(); ++k)
        student->linear(l, k) = compress::shaped_layer(t.linear(l, k), footprint.block[std::size_t(k)], rng);

  const int steps = 1000;
  compress::Shared sh;
  sh.opt = &o;
  sh.teacher = &t;
  sh.length = sc.length;
  sh.steps = steps;
  examples::TeacherOutputCache teacher_outputs(std::int64_t(1) << 30);
  if (kept) sh.teacher_outputs = &teacher_outputs;
  examples::ShardedTrainer net(*student, sc.batch, sc.length, kShards);
  compress::Distillation distill(sh, compress::Loss::recipe, net, *student, nullptr);
  compress::Optimizers opt(*student, 1e-5, steps);
  // The job's pruning phase (10 % to 70 % of the steps, a mask every 10), from half way through
  // it: step 400 masks, the steps timed are 401, 402, ... The pruner's share is a mask step's
  // time and nine others', over ten (mask steps timed apart, however many iterations run). In
  // the final phase (step 700 masks, then every step) it is a mask step's time.
  lmshrink::PrunerOptions popt;
  popt.granularity = compress::info(mc.method).granularity;
  popt.mode = mc.mode;
  popt.schedule.total_steps = steps;
  popt.schedule.initial_warmup = 100;
  popt.schedule.final_warmup = 300;
  popt.schedule.mask_interval = 10;
  popt.schedule.final_keep = 0.25;
  popt.importance.window = 10;
  lmshrink::Pruner<float> pruner(popt);
  if (footprint.prunes)
    for (int l = 0; l < t.shape().n_layers; ++l)
      for (int k = 0; k < t.linear_kinds(); ++k)
        pruner.add(student->linear_name(l, k), student->linear(l, k), net.linear_grad(l, k));

  const int N = sc.batch * sc.length;
  std::vector<int> inputs(static_cast<std::size_t>(N));
  Eigen::VectorXi targets(N);
  lmshrink::SplitMix64 tokens(7);
  const auto vocab = std::uint64_t(t.shape().vocab_size);
  for (int i = 0; i < N; ++i) {
    inputs[std::size_t(i)] = int(tokens.next() % vocab);
    targets[i] = int(tokens.next() % vocab);
  }
  std::vector<NetProfile> student_profile(kShards), teacher_profile(kShards);
  for (int s = 0; s < kShards; ++s) {
    net.shard(s).set_profile(&student_profile[std::size_t(s)]);
    distill.teacher[std::size_t(s)]->set_profile(&teacher_profile[std::size_t(s)]);
  }
  compress::StepTimes times;
  const auto run = [&](int step) {
    const auto out = compress::training_step(step, inputs.data(), targets, false, net, distill, opt, 1.0, *student,
                                             footprint.prunes ? &pruner : nullptr, threads, &times);
    if (!std::isfinite(out.loss)) state.SkipWithError("the loss is not finite");
    return out.masked;
  };
  const int first = mc.first_step;
  run(first - 1);  // warm-up: caches sized, importance gathered, the teacher's outputs kept
  if (kept && teacher_outputs.stats().entries != kShards) state.SkipWithError("the teacher's outputs were not kept");
  double pruner_seconds[2] = {0, 0};  // [masked] Σ over steps
  int pruner_steps[2] = {0, 0};
  const auto pruner_step = [&](int step) {
    const double before = times.pruner;
    const bool masked = run(step);
    pruner_seconds[masked] += times.pruner - before;
    ++pruner_steps[masked];
    return masked;
  };
  if (footprint.prunes && !pruner_step(first)) state.SkipWithError("the pruner did not mask at the first step");
  for (auto& p : student_profile) p.clear();
  for (auto& p : teacher_profile) p.clear();
  times.loss.assign(times.loss.size(), 0.0);
  times.optimizer = 0;
  std::int64_t iteration = 0;
  for (auto _ : state) pruner_step(first + 1 + int(iteration++));

  const double steps_run = double(iteration);
  const double active = double(std::min(threads, kShards));
  NetProfile sp, tp;
  for (const auto& p : student_profile) sp += p;
  for (const auto& p : teacher_profile) tp += p;
  double loss = 0;
  for (double l : times.loss) loss += l;
  loss -= tp.total;  // the loss callback ran the teacher's forward
  const StepFlops flops = step_flops(*student, t, sc.batch, sc.length, kShards);
  const auto ms = [&](double thread_seconds) { return 1e3 * thread_seconds / active / steps_run; };
  const auto gflops = [&](double flop, double thread_seconds) {
    return thread_seconds > 0 ? flop * steps_run / thread_seconds / 1e9 : 0.0;
  };
  auto& c = state.counters;
  c["tok/s"] = benchmark::Counter(double(N), benchmark::Counter::kIsIterationInvariantRate);
  c["linear_ms"] = ms(sp.linear);
  c["attention_ms"] = ms(sp.attention);
  c["classifier_ms"] = ms(sp.classifier);
  c["rest_ms"] = ms(sp.rest());
  c["teacher_ms"] = ms(tp.total);
  c["loss_ms"] = ms(loss);
  c["optimizer_ms"] = 1e3 * times.optimizer / steps_run;
  const auto mean = [&](int masked) { return pruner_steps[masked] ? pruner_seconds[masked] / pruner_steps[masked] : 0.0; };
  c["pruner_ms"] = 1e3 * (pruner_steps[0] ? (mean(1) + 9 * mean(0)) / 10 : mean(1));
  c["linear_GFLOPs"] = gflops(flops.linear, sp.linear);
  c["attention_GFLOPs"] = gflops(flops.attention, sp.attention);
  c["classifier_GFLOPs"] = gflops(flops.classifier, sp.classifier);
  c["teacher_GFLOPs"] = gflops(flops.teacher, tp.total);
  c["step_GFLOP"] = (flops.linear + flops.attention + flops.classifier + flops.teacher) / 1e9;
  state.SetLabel(std::string(sc.name) + " " + mc.label);
}

// C (m×n) = A (m×k)·Bᵀ (B: n×k), row-major, one thread. Args: {m, n, k}.
void BM_sgemm(benchmark::State& state) {
  const Eigen::Index m = state.range(0), n = state.range(1), k = state.range(2);
  lmshrink::RowMatrix<float> a = lmshrink::RowMatrix<float>::Random(m, k), b = lmshrink::RowMatrix<float>::Random(n, k),
                             c = lmshrink::RowMatrix<float>::Zero(m, n);
  for (auto _ : state) {
#ifdef LMSHRINK_HAVE_ONEDNN
    dnnl_sgemm('N', 'T', m, n, k, 1.f, a.data(), k, b.data(), k, 0.f, c.data(), n);
#else
    c.noalias() = a * b.transpose();
#endif
    benchmark::ClobberMemory();
  }
  state.counters["GFLOPs"] =
      benchmark::Counter(2.0 * double(m) * double(n) * double(k) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

void register_all() {
  for (int scale = 0; scale < 2; ++scale) {
    const Scale& sc = kScales[scale];
    for (int m = 0; m < int(std::size(kMethodCases)); ++m)
      for (int kept = 0; kept < (scale == 0 ? 2 : 1); ++kept)
        for (int threads : {1, 2})
          benchmark::RegisterBenchmark((std::string("BM_train_step/") + sc.name + "/" + kMethodCases[m].label +
                                        (kept ? "/teacher_kept" : ""))
                                           .c_str(),
                                       BM_train_step)
              ->Args({scale, m, threads, kept})
              ->ArgNames({"scale", "method", "threads", "kept"})
              ->Unit(benchmark::kMillisecond)
              ->UseRealTime()
              ->Iterations(scale == 0 ? 20 : 2);
    benchmark::RegisterBenchmark((std::string("BM_sgemm/") + sc.name + "/mlp").c_str(), BM_sgemm)
        ->Args({sc.batch / kShards * sc.length, sc.hidden, sc.dim})
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  benchmark::RegisterBenchmark("BM_sgemm/peak/1024", BM_sgemm)->Args({1024, 1024, 1024})->Unit(benchmark::kMillisecond)->UseRealTime();
}

// Keeps every counter of each benchmark's median run (or its only run) for the report.
class Collector : public benchmark::ConsoleReporter {
 public:
  std::map<std::string, std::map<std::string, double>> rows;
  std::vector<std::string> order;

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.error_occurred) continue;
      if (run.run_type == Run::RT_Aggregate && run.aggregate_name != "median") continue;
      const std::string name = run.run_name.str();
      if (run.run_type != Run::RT_Aggregate && rows.count(name)) continue;
      if (!rows.count(name)) order.push_back(name);
      auto& row = rows[name];
      for (const auto& [key, counter] : run.counters) row[key] = counter.value;
      row["real_ms"] = run.GetAdjustedRealTime() / benchmark::GetTimeUnitMultiplier(run.time_unit) * 1e3;
    }
    ConsoleReporter::ReportRuns(runs);
  }
};

void write_report(const std::string& dir, const Collector& c) {
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/train_phases.md";
  std::ofstream out(path);
  const char* phases[] = {"linear", "attention", "classifier", "rest", "teacher", "loss", "optimizer", "pruner"};
  out << "| benchmark | tokens/s | step ms |";
  for (const char* p : phases) out << ' ' << p << " ms |";
  out << " other ms | linear GFLOP/s | attention GFLOP/s | classifier GFLOP/s | teacher GFLOP/s |\n|---|---|---|";
  for (std::size_t i = 0; i < std::size(phases) + 5; ++i) out << "---|";
  out << '\n';
  int rows = 0;
  for (const std::string& name : c.order) {
    const auto& r = c.rows.at(name);
    if (!r.count("tok/s")) continue;
    char buf[64];
    out << "| " << name << " | ";
    std::snprintf(buf, sizeof buf, "%.0f | %.1f |", r.at("tok/s"), r.at("real_ms"));
    out << buf;
    double accounted = 0;
    for (const char* p : phases) {
      const double v = r.at(std::string(p) + "_ms");
      accounted += v;
      std::snprintf(buf, sizeof buf, " %.1f (%.0f %%) |", v, 100 * v / r.at("real_ms"));
      out << buf;
    }
    std::snprintf(buf, sizeof buf, " %.1f |", r.at("real_ms") - accounted);
    out << buf;
    for (const char* p : {"linear", "attention", "classifier", "teacher"}) {
      std::snprintf(buf, sizeof buf, " %.1f |", r.at(std::string(p) + "_GFLOPs"));
      out << buf;
    }
    out << '\n';
    ++rows;
  }
  out << "\nsgemm, one thread (GFLOP/s):";
  for (const std::string& name : c.order)
    if (c.rows.at(name).count("GFLOPs")) {
      char buf[128];
      std::snprintf(buf, sizeof buf, " %s %.1f;", name.c_str(), c.rows.at(name).at("GFLOPs"));
      out << buf;
    }
  out << '\n';
  std::printf("train report: %d rows; wrote %s\n", rows, path.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  const std::string report_dir = bench::take_report_dir(argc, argv);
#ifdef _OPENMP
  omp_set_num_threads(1);  // sgemm on one core; the shards' threads are the trainer's own
#endif
  Eigen::setNbThreads(1);  // the job's setting: parallel over shards, not inside a product
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  bench::add_build_context();
#ifdef LMSHRINK_HAVE_ONEDNN
  benchmark::AddCustomContext("sgemm", "oneDNN, one thread");
#else
  benchmark::AddCustomContext("sgemm", "Eigen, one thread (oneDNN not built: Debian libdnnl-dev)");
#endif
  register_all();
  Collector reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  if (!report_dir.empty()) write_report(report_dir, reporter);
  return 0;
}
