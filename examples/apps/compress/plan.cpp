// lmshrink_compress: the plan. Before any work the job states what each phase will take in time
// and memory: the memory from the shapes (every buffer the job allocates, counted as the nets
// count their own), the time from the FLOPs of each phase at rates measured on this machine in
// a few seconds (a one- and a two-block copy of the teacher trained, run forward and decoded at
// the job's shapes, an SVD, a Gram update).
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "compress.hpp"

namespace compress {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

/// The second of two runs of `f` (the first warms caches and allocations), in seconds.
template <class F>
double timed(F&& f) {
  f();
  const auto t0 = Clock::now();
  f();
  return seconds_since(t0);
}

std::int64_t read_kib(const char* file, const char* key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0) {
      std::istringstream fields(line.substr(std::string(key).size()));
      std::int64_t kib = -1;
      fields >> kib;
      return kib;
    }
  return -1;
}

/// FLOPs of one token's forward through the teacher at context position `pos` (causal: a
/// window of n tokens averages pos = n/2): the linear layers, the classifier, attention.
double forward_flops(const lmshrink::models::Model& t, double linear_share, double pos) {
  const lmshrink::models::ModelShape s = t.shape();
  return 2.0 * double(t.linear_dense_parameters()) * linear_share + 2.0 * double(s.vocab_size) * s.dim +
         4.0 * double(s.n_layers) * s.dim * pos;
}

/// The share of a block's FLOPs that are its linear layers', for windows of n tokens.
double linear_share_of_block(const lmshrink::models::Model& t, int n) {
  const lmshrink::models::ModelShape s = t.shape();
  const double linear = 2.0 * double(t.linear_dense_parameters()) / s.n_layers;
  const double attention = 4.0 * s.dim * (n / 2.0);
  return linear / (linear + attention);
}

/// Seconds of one training step's parts, measured on copies of the teacher's first block (and
/// first two): per block and outside the blocks (embedding, classifier, loss), for the
/// student's forward + backward and the teacher's forward, per shard of `batch` sequences.
struct StepRates {
  double train_block = 0, train_rest = 0, teacher_block = 0, teacher_rest = 0;
  double optimizer_per_value = 0;  // AdamW, seconds per parameter
};

StepRates measure_steps(lmshrink::models::Model& teacher, int batch, int n) {
  using lmshrink::models::NetMode;
  const int L = teacher.shape().n_layers;
  std::vector<int> tokens(std::size_t(batch) * std::size_t(n));
  for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = int((i * 7919) % std::size_t(teacher.shape().vocab_size));
  double train[2] = {0, 0}, forward[2] = {0, 0};
  for (int blocks = 1; blocks <= std::min(2, L); ++blocks) {
    std::vector<int> keep;
    for (int b = 0; b < blocks; ++b) keep.push_back(b);
    const auto part = teacher.truncated(keep);
    {
      const auto net = part->net(batch, n, NetMode::training);
      train[blocks - 1] = timed([&] {
        const auto& logits = net->forward(tokens.data());
        const RowMat d = RowMat::Constant(logits.rows(), logits.cols(), 1e-6f);
        net->zero_grad();
        net->backward(d, nullptr);
      });
    }
    const auto fwd = part->net(batch, n, NetMode::forward_only);
    forward[blocks - 1] = timed([&] { fwd->forward(tokens.data()); });
  }
  StepRates r;
  if (L >= 2) {
    r.train_block = std::max(0.0, train[1] - train[0]);
    r.teacher_block = std::max(0.0, forward[1] - forward[0]);
  } else {
    r.train_block = train[0];
    r.teacher_block = forward[0];
  }
  r.train_rest = std::max(0.0, train[0] - r.train_block);
  r.teacher_rest = std::max(0.0, forward[0] - r.teacher_block);
  // AdamW over one block's layers.
  std::int64_t values = 0;
  std::vector<lmshrink::AdamW<float>> opt;
  std::vector<lmshrink::models::Layer::Gradients> grads;
  auto one = teacher.truncated({0});
  for (int k = 0; k < one->linear_kinds(); ++k) {
    lmshrink::AdamWOptions ao;
    ao.weight_decay = 0;
    opt.emplace_back(one->linear(0, k), ao);
    grads.push_back(one->linear(0, k).make_gradients());
    values += one->linear(0, k).dense_parameters();
  }
  const double t = timed([&] {
    for (int k = 0; k < one->linear_kinds(); ++k) opt[std::size_t(k)].step(one->linear(0, k), grads[std::size_t(k)]);
  });
  r.optimizer_per_value = t / double(std::max<std::int64_t>(1, values));
  return r;
}

std::string gib(std::int64_t bytes) {
  char b[32];
  if (bytes >= (std::int64_t(1) << 30)) std::snprintf(b, sizeof b, "%.2f GiB", double(bytes) / double(1 << 30));
  else std::snprintf(b, sizeof b, "%.0f MiB", double(bytes) / double(1 << 20));
  return b;
}

}  // namespace

std::int64_t memory_limit_bytes() {
  std::int64_t limit = read_kib("/proc/meminfo", "MemAvailable:");
  const std::int64_t resident = read_kib("/proc/self/status", "VmRSS:");
  limit = limit < 0 ? -1 : (limit + std::max<std::int64_t>(0, resident)) * 1024;
  std::ifstream cgroup("/sys/fs/cgroup/memory.max");
  std::string text;
  if (cgroup >> text && text != "max") {
    const std::int64_t c = std::atoll(text.c_str());
    if (c > 0 && (limit < 0 || c < limit)) limit = c;
  }
  return limit;
}

std::int64_t peak_resident_bytes() {
  const std::int64_t kib = read_kib("/proc/self/status", "VmHWM:");
  return kib < 0 ? -1 : kib * 1024;
}

double Plan::seconds() const {
  double s = 0;
  for (const auto& p : phases) s += p.seconds;
  return s;
}

std::string Plan::text() const {
  std::string out = "plan (estimated from the shapes and rates measured here in " + examples::format_duration(calibration_seconds) + "):\n";
  char line[256];
  for (const auto& p : phases) {
    std::snprintf(line, sizeof line, "  %-40s %10s\n", p.name.c_str(), examples::format_duration(p.seconds).c_str());
    out += line;
  }
  std::snprintf(line, sizeof line, "  %-40s %10s\n", "total", examples::format_duration(seconds()).c_str());
  out += line;
  out += "memory: teacher " + gib(teacher_bytes) + ", calibration " + gib(calibration_bytes) + " (freed after the "
         "students' initialisation)\n";
  for (const auto& [name, bytes] : student_bytes) {
    std::snprintf(line, sizeof line, "  %-40s %10s\n", (name + " while training").c_str(), gib(bytes).c_str());
    out += line;
  }
  out += "  peak " + gib(peak_bytes) + " with " + std::to_string(side_by_side) +
         (side_by_side == 1 ? " student" : " students side by side") + "; this machine has " +
         (limit_bytes > 0 ? gib(limit_bytes) : std::string("an unknown amount")) + " available\n";
  return out;
}

Plan make_plan(const PlanInputs& in) {
  const Options& o = *in.o;
  lmshrink::models::Model& teacher = *in.teacher;
  const lmshrink::models::ModelShape s = teacher.shape();
  const int L = s.n_layers;
  Plan plan;

  // ---- memory ----
  std::int64_t plain = 0;
  for (const auto& t : teacher.plain_params()) plain += t.size;
  plan.teacher_bytes = 4 * (teacher.linear_dense_parameters() + plain);
  std::int64_t gram = 0;
  if (in.calibrates) {
    // One Gram matrix (double) per distinct input of a block: what collect_calibration keeps.
    const auto net = teacher.net(1, 2, lmshrink::models::NetMode::forward_only);
    for (int l = 0; l < L; ++l) {
      std::vector<const void*> seen;
      for (int k = 0; k < teacher.linear_kinds(); ++k) {
        const void* p = &net->linear_input(l, k);
        if (std::find(seen.begin(), seen.end(), p) != seen.end()) continue;
        seen.push_back(p);
        const std::int64_t f = teacher.linear(l, k).in_features();
        gram += 8 * f * f;
      }
    }
  }
  plan.calibration_bytes = gram;
  const int shard_batch = (o.batch + in.shards - 1) / in.shards;
  const std::int64_t text = 4 * std::int64_t(in.data_windows) * in.length + 4 * std::int64_t(o.val_windows) * in.eval_len;
  std::vector<StudentFootprint> feet;
  for (const Job& j : *in.jobs) {
    const StudentFootprint f = student_footprint(o, j, teacher);
    feet.push_back(f);
    const std::int64_t N = std::int64_t(shard_batch) * in.length;
    // Its state, a gradient copy per shard, each shard's net and the teacher's net beside it
    // (activations, caches, dlogits), and the layer-wise gradients.
    const double block_share = double(f.blocks) / double(L);
    const std::int64_t own_net = std::int64_t(block_share * double(teacher.net_activation_bytes(shard_batch, in.length, lmshrink::models::NetMode::training)));
    const std::int64_t teacher_net = teacher.net_activation_bytes(shard_batch, in.length, lmshrink::models::NetMode::forward_only);
    const std::int64_t per_shard = f.gradients + own_net + 8 * N * f.rank_sum + teacher_net + 4 * N * s.vocab_size +
                                   4 * N * s.dim * f.blocks;
    const std::int64_t bytes = f.weights + f.optimizer + f.pruner + in.shards * per_shard;
    plan.student_bytes.push_back({job_name(j), bytes});
  }
  // Initialisation: the student starts as a copy of the teacher; the SVD's work matrices.
  std::int64_t widest = 0;
  for (int k = 0; k < teacher.linear_kinds(); ++k)
    widest = std::max<std::int64_t>(widest, teacher.linear(0, k).dense_parameters());
  const std::int64_t init = plan.teacher_bytes + 8 * 6 * widest;
  const std::int64_t calibration_phase =
      gram + std::int64_t(std::max(1, std::min(in.threads, o.calib_windows))) *
                 teacher.net_activation_bytes(1, in.length, lmshrink::models::NetMode::forward_only);
  plan.limit_bytes = memory_limit_bytes();
  const std::int64_t base = plan.teacher_bytes + text;
  const std::size_t jobs = in.jobs->size();
  std::vector<std::int64_t> sorted;
  for (const auto& named : plan.student_bytes) sorted.push_back(named.second);
  std::sort(sorted.rbegin(), sorted.rend());
  // `c` students at once: the calibration statistics live until the last one is initialised,
  // possibly beside the others' training; one is in its initialisation or training.
  const auto peak_with = [&](int c) {
    std::int64_t others = 0;
    for (int i = 1; i < c && std::size_t(i) < sorted.size(); ++i) others += sorted[std::size_t(i)];
    const std::int64_t first = sorted.empty() ? 0 : std::max(init, sorted[0]);
    return base + std::max(calibration_phase, gram + first + others);
  };
  // Side by side (one core each) only while they fit; else one at a time on every core.
  int concurrent = std::max(1, std::min<int>(int(jobs), in.side_by_side));
  while (concurrent > 1 && plan.limit_bytes > 0 && peak_with(concurrent) > plan.limit_bytes) --concurrent;
  plan.side_by_side = concurrent;
  plan.peak_bytes = peak_with(concurrent);

  if (!in.timing) return plan;
  // ---- time: rates measured here ----
  const auto t_measure = Clock::now();
  const StepRates step = measure_steps(teacher, shard_batch, in.length);
  // Scoring: the teacher's forward over one window of up to 128 tokens, scaled by FLOPs.
  const int n0 = std::min(in.eval_len, 128);
  std::vector<int> window(std::size_t(n0) + 1);
  for (std::size_t i = 0; i < window.size(); ++i) window[i] = int((i * 31) % std::size_t(s.vocab_size));
  const auto dec = teacher.decoder();
  const double t_window0 = timed([&] { dec->forward_sequence(window.data(), n0); });
  const double rate_forward = double(n0) * forward_flops(teacher, 1.0, n0 / 2.0) / std::max(t_window0, 1e-9);
  // Generation: 8 tokens decoded one by one at positions 0..7, scaled by FLOPs to the mean position.
  const double t_token0 = timed([&] {
    const auto d = teacher.decoder();
    for (int p = 0; p < 8; ++p) d->forward_token(window[std::size_t(p)], p);
  }) / 8.0;
  const double rate_decode = forward_flops(teacher, 1.0, 4.0) / std::max(t_token0, 1e-12);
  // The Gram update (double) and the SVD (a layer of the teacher's first block).
  lmshrink::GramAccumulator acc(s.dim);
  const RowMat x = RowMat::Constant(256, s.dim, 0.5f);
  const double t_gram = timed([&] { acc.add<float>(x); });
  const double rate_gram = 256.0 * double(s.dim) * s.dim / std::max(t_gram, 1e-12);
  const auto& probe = teacher.linear(0, 0);
  lmshrink::models::Layer fitted;
  lmshrink::SvdInitOptions so;
  so.rank = int(std::max<lmshrink::Index>(1, std::min(probe.out_features(), probe.in_features()) / 4));
  const RowMat w0 = probe.to_dense();
  const double t_svd = timed([&] { lmshrink::svd_init<float>(w0, fitted, so); });
  const auto svd_work = [](double out, double in) { return out * in * std::min(out, in); };
  const double rate_svd = svd_work(double(probe.out_features()), double(probe.in_features())) / std::max(t_svd, 1e-12);
  plan.calibration_seconds = seconds_since(t_measure);

  // ---- time: the phases ----
  const int threads = std::max(1, in.threads);
  const int cap = o.story_tokens > 0 ? std::min(o.story_tokens, in.context) : in.context;
  const double decode_token = forward_flops(teacher, 1.0, cap / 2.0) / rate_decode;
  const double train_tokens = std::max(0.0, double(in.data_windows) * in.length + 1 - double(in.cached_train_tokens));
  const double val_tokens = std::max(0.0, double(o.val_windows) * in.eval_len + 1 - double(in.cached_val_tokens));
  const double window_seconds = double(in.eval_len) * forward_flops(teacher, 1.0, in.eval_len / 2.0) / rate_forward;
  if (o.heldout) plan.phases.push_back({"teacher: held-out scoring", in.eval_windows * window_seconds / threads});
  plan.phases.push_back({"teacher: text generation", ((o.train_text.empty() ? train_tokens : 0) +
                                                      (o.val_text.empty() ? val_tokens : 0)) * decode_token / threads});
  plan.phases.push_back({"teacher: validation scoring", o.val_windows * window_seconds / threads});
  if (in.calibrates) {
    const int windows = std::min(o.calib_windows, in.data_windows);
    double gram_flops = 0;
    for (int l = 0; l < L; ++l)
      for (int k = 0; k < teacher.linear_kinds(); ++k)
        if (k == 0 || teacher.linear(l, k).in_features() != teacher.linear(l, k - 1).in_features())
          gram_flops += double(teacher.linear(l, k).in_features()) * teacher.linear(l, k).in_features();
    gram_flops *= double(windows) * in.length;
    const double fwd = windows * (double(in.length) * forward_flops(teacher, 1.0, in.length / 2.0) / rate_forward);
    plan.phases.push_back({"calibration", (fwd + gram_flops / rate_gram) / threads});
  }
  const double lin = linear_share_of_block(teacher, in.length);
  // The schedule: side by side (one core each) in waves, the rest one at a time on every core.
  const std::size_t side = concurrent < 2 ? 0
                           : !in.remainder_alone ? jobs
                                                 : jobs - jobs % std::size_t(concurrent);
  std::vector<double> per_student;
  for (std::size_t i = 0; i < jobs; ++i) {
    const Job& j = (*in.jobs)[i];
    const StudentFootprint& f = feet[i];
    const MethodInfo& m = info(j.method);
    const int job_threads = i < side ? 1 : threads;
    // Initialisation: SVD work per layer (oats: one per iteration; per-matrix: several fits).
    double fits = 0;
    if (m.init == LayerInit::svd_low_rank_only || m.init == LayerInit::svd_then_prune_s) fits = 1;
    if (m.init == LayerInit::sparse_plus_low_rank)
      fits = o.oats_allocation == OatsAllocation::sparse ? 1 : o.oats_iterations * (o.oats_allocation == OatsAllocation::per_matrix ? 3.0 : 1.0);
    double svd = 0;
    for (int l = 0; l < L; ++l)
      for (int k = 0; k < teacher.linear_kinds(); ++k)
        svd += svd_work(double(teacher.linear(l, k).out_features()), double(teacher.linear(l, k).in_features()));
    const double init_seconds = fits * svd / rate_svd;
    // Training: per step, the shards in rounds of job_threads, then AdamW.
    const double shard = step.train_rest + f.blocks * step.train_block * (lin * f.linear_flops + (1 - lin)) +
                         step.teacher_rest + L * step.teacher_block;
    const int shard_rounds = (in.shards + job_threads - 1) / job_threads;
    const double optimizer = step.optimizer_per_value * double(f.weights / 4);
    const double train_seconds = in.steps * (shard_rounds * shard + optimizer);
    // Scoring the packed student: validation before and after training, held-out after.
    const double student_window = window_seconds * (lin * f.linear_flops + (1 - lin));
    const double scoring = (2.0 * o.val_windows + (o.heldout ? in.eval_windows : 0)) * student_window / job_threads;
    per_student.push_back(init_seconds + train_seconds + scoring);
  }
  double students_seconds = 0;
  for (std::size_t i = 0; i < side; i += std::size_t(concurrent)) {
    double wave = 0;
    for (std::size_t k = i; k < std::min(side, i + std::size_t(concurrent)); ++k) wave = std::max(wave, per_student[k]);
    students_seconds += wave;
  }
  for (std::size_t i = side; i < jobs; ++i) students_seconds += per_student[i];
  plan.phases.push_back({std::to_string(jobs) + " students, " + std::to_string(side) + " side by side",
                         students_seconds});
  if (o.speed_tokens > 0)
    plan.phases.push_back({"generation speed", 2.0 * 7 * double(jobs) * o.speed_tokens *
                                                    forward_flops(teacher, 1.0, o.speed_tokens / 2.0) / rate_decode});
  return plan;
}

}  // namespace compress
