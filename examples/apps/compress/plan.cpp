// lmshrink_compress: the plan. Before any work the job states what each phase will take in time
// and memory: the memory from the shapes (every buffer the job allocates, counted as the nets
// count their own), the time from the FLOPs of each phase at rates measured on this machine in
// a few seconds (a one- and a two-block copy of the teacher trained, run forward and decoded at
// the job's shapes, an SVD, a Gram update).
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <sstream>
#include <time.h>

#include "compress.hpp"

namespace compress {

lmshrink::models::Layer shaped_layer(const lmshrink::models::Layer& dense, const StudentFootprint::TrainedLayer& shape,
                                     lmshrink::SplitMix64& rng) {
  lmshrink::models::Layer layer = dense;
  const lmshrink::Index out = layer.out_features(), in = layer.in_features();
  if (shape.rank > 0)
    layer.set_low_rank(lmshrink::models::random_normal(rng, out, shape.rank, 0.02),
                       lmshrink::models::random_normal(rng, shape.rank, in, 0.02));
  lmshrink::RowMask rows(out);
  for (lmshrink::Index i = 0; i < out; ++i)
    rows[i] = std::floor(double(i + 1) * shape.s_rows) > std::floor(double(i) * shape.s_rows) ? 1 : 0;
  layer.set_row_mask(rows);
  if (shape.element_mask) {
    lmshrink::ElementMask mask(out, in);
    for (lmshrink::Index i = 0; i < out; ++i)
      for (lmshrink::Index j = 0; j < in; ++j) mask(i, j) = std::uint8_t((i + j) % 2);
    layer.set_element_mask(mask);
  }
  layer.release_sparse();
  return layer;
}

namespace {

/// This thread's CPU seconds so far: rates measured in CPU time hold on a busy machine too (the
/// plan assumes the job gets its cores).
double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

/// Repetitions of a measurement: at least 3 and `min_seconds` of CPU time in all
/// (--plan-probe-seconds, 0.25 by default), at most 2 s or 25 (a run of a second or more is
/// measured once): the median. One run of stories260K's millisecond probes varied by a third
/// between plans; the median of repeats by a tenth.
template <class Once>
double median_of_repeats(double min_seconds, Once&& once) {
  std::vector<double> seconds;
  double total = 0;
  while ((seconds.size() < 3 || total < min_seconds) && total < 2.0 && seconds.size() < 25) {
    seconds.push_back(once());
    total += seconds.back();
  }
  std::nth_element(seconds.begin(), seconds.begin() + std::ptrdiff_t(seconds.size() / 2), seconds.end());
  return seconds[seconds.size() / 2];
}

/// CPU seconds of one run of `f` on the calling thread (every measured part runs on it): the
/// median of repeated runs after one that warms caches and allocations.
template <class F>
double timed(double min_seconds, F&& f) {
  f();
  return median_of_repeats(min_seconds, [&] {
    const double t0 = thread_cpu_seconds();
    f();
    return thread_cpu_seconds() - t0;
  });
}

/// The same, with `threads` copies of the work running at once (`f(i)` on thread i, each on its
/// own buffers): the slowest thread's CPU seconds per run. The job runs its shards, stories and
/// windows side by side, and they share the memory bandwidth; a rate measured alone would be too
/// fast.
template <class F>
double timed_together(int threads, double min_seconds, F&& f) {
  std::vector<double> seconds(std::size_t(std::max(1, threads)), 0.0);
  const auto once = [&] {
#ifdef _OPENMP
#pragma omp parallel for schedule(static, 1) num_threads(threads) if (threads > 1)
#endif
    for (int i = 0; i < threads; ++i) {
      const double t0 = thread_cpu_seconds();
      f(i);
      seconds[std::size_t(i)] = thread_cpu_seconds() - t0;
    }
    return *std::max_element(seconds.begin(), seconds.end());
  };
  once();
  return median_of_repeats(min_seconds, once);
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

/// Multiply-adds of one layer's initialisation, counted as svd_init and
/// sparse_plus_low_rank_init do the work, for the plan to scale by the rate of one fitted layer.
/// An exact SVD is mostly matrix-vector work: it counts `exact_unit` multiply-adds per
/// M·k² + k³/3 (k the shorter side, M the longer), a ratio measured on this machine. The
/// whitened path's Cholesky factor runs at about half a product's rate, so counts k³/3.
struct InitWork {
  double exact_unit = 16;
  double power_iterations = 4, oversampling = 10;
  bool whitened = true;

  double svd(double rows, double cols, double rank, bool randomized) const {
    const double k = std::min(rows, cols), big = std::max(rows, cols);
    if (!randomized) return exact_unit * (big * k * k + k * k * k / 3);
    // The sketch and 2·q power products with an (M, l) block, a QR per product, the small
    // Gram matrix, its eigenvectors and the two factors.
    const double l = std::min(rank + oversampling, k), q = power_iterations;
    return (2 * q + 2) * k * big * l + 2 * (q + 1) * k * l * l + (k + 2 * big) * l * l + 3 * l * l * l;
  }
  /// The factor of the Gram matrix of `cols` inputs.
  static double factor(double cols) { return cols * cols * cols / 3; }
  /// svd_init: the SVD of W (whitened: of W·L), and S = W − U·V; whitened also W·L and V·L⁻¹
  /// (triangular) and (W − U·V)·L.
  double svd_init(double rows, double cols, double rank, bool randomized) const {
    double w = svd(rows, cols, rank, randomized) + rows * rank * cols;
    if (whitened) w += factor(cols) + rows * cols * cols / 2 + rank * cols * cols / 2 + rows * rank * cols;
    return w;
  }
  /// sparse_plus_low_rank_init: the factor and W's output energy once; per iteration the
  /// mapped SVD and U·V, the residual's output energy, and with refit S's values (the rows'
  /// product with the Gram matrix, then per row a Cholesky factor of its kept entries).
  double oats(double rows, double cols, double rank, double entries, int iterations, bool randomized,
              bool whitened_fit, bool refit) const {
    double w = (whitened_fit ? factor(cols) : 0) + 2 * rows * cols * cols;
    double per = rows * cols * cols;
    if (rank > 0) {
      per += svd(rows, cols, rank, randomized) + rows * rank * cols;
      if (whitened_fit) per += rows * cols * cols / 2 + rank * cols * cols / 2;
    }
    if (refit) {
      const double kept = entries / rows;
      // Per row the factor's kept³/6, and its gather and small-block overhead: about 100
      // multiply-adds' time per kept pair (fitted to 768 x 3072 and 3072 x 768 at density 0.5).
      per += rows * cols * cols + rows * (kept * kept * kept / 6 + 100 * kept * kept);
    }
    return w + (rank > 0 ? iterations : 1) * per;  // rank 0 fits in one pass
  }
};

/// The work of fitting layer (l, k) as the job's method starts it (train.cpp's
/// initialise_layers): its rank from the footprint, and for oats S's entries as its allocation
/// splits the budget (per matrix: every candidate storage_choices fits, then the chosen one,
/// counted at half the budget in U·V).
double init_work(const Options& o, const InitWork& work, LayerInit init, const StudentFootprint& f,
                 const lmshrink::models::Model& teacher, int l, int k) {
  const auto& layer = teacher.linear(l, k);
  const double rows = double(layer.out_features()), cols = double(layer.in_features()), size = rows * cols;
  const bool randomized = svd_method(o, layer.out_features(), layer.in_features()) == lmshrink::SvdMethod::randomized;
  const double rank = f.block.empty() ? 0.0 : double(f.block[std::size_t(k)].rank);
  switch (init) {
    case LayerInit::none:
    case LayerInit::prune_all: return 0;
    case LayerInit::svd_low_rank_only:
    case LayerInit::svd_then_prune_s: return work.svd_init(rows, cols, std::max(1.0, rank), randomized);
    case LayerInit::sparse_plus_low_rank: break;
  }
  const bool whitened_fit = o.oats_fit == lmshrink::LowRankFit::whitened;
  const double budget = f.weight_ratio * size, side = rows + cols;
  const auto fit = [&](double r, double entries, int iterations) {
    return work.oats(rows, cols, r, entries, iterations, randomized, whitened_fit, o.oats_refit);
  };
  switch (o.oats_allocation) {
    case OatsAllocation::sparse: return fit(0, budget, o.oats_iterations);
    case OatsAllocation::uniform: return fit(rank, std::max(0.0, budget - rank * side), o.oats_iterations);
    case OatsAllocation::attention_lr:
      if (teacher.attention_linear(k)) return fit(std::max(1.0, std::floor(budget / side)), 0, o.oats_iterations);
      return fit(0, budget, o.oats_iterations);
    case OatsAllocation::per_matrix: {
      const lmshrink::StorageChoiceOptions choices;
      double w = 0;
      for (double b : choices.budgets)
        for (double share : choices.lowrank_shares) {
          const double r = std::min(std::min(rows, cols), std::floor(share * b * size / side));
          w += fit(r, share == 1.0 ? 0.0 : std::max(0.0, b * size - r * side), std::min(o.oats_iterations, 3));
        }
      const double r = std::floor(0.5 * budget / side);
      return w + fit(r, std::max(0.0, budget - r * side), o.oats_iterations);
    }
  }
  return 0;
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
  double calibration_block = 0, calibration_rest = 0;  // one window forward (forward-only net)
  double loss = 0;                 // the distillation loss and its gradient, per shard
  double optimizer_per_value = 0;  // AdamW, seconds per parameter
};

StepRates measure_steps(lmshrink::models::Model& teacher, int batch, int n, int threads, double probe_seconds) {
  using lmshrink::models::NetMode;
  const int L = teacher.shape().n_layers;
  std::vector<int> tokens(std::size_t(batch) * std::size_t(n));
  for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = int((i * 7919) % std::size_t(teacher.shape().vocab_size));
  double train[2] = {0, 0}, forward[2] = {0, 0}, window[2] = {0, 0};
  for (int blocks = 1; blocks <= std::min(2, L); ++blocks) {
    std::vector<int> keep;
    for (int b = 0; b < blocks; ++b) keep.push_back(b);
    const auto part = teacher.truncated(keep);
    // Each of `threads` nets on its own thread, as the job's shards and windows run.
    {
      std::vector<std::unique_ptr<lmshrink::models::Net>> nets;
      for (int t = 0; t < threads; ++t) nets.push_back(part->net(batch, n, NetMode::training));
      const RowMat d = RowMat::Constant(std::int64_t(batch) * n, teacher.shape().vocab_size, 1e-6f);
      train[blocks - 1] = timed_together(threads, probe_seconds, [&](int t) {
        nets[std::size_t(t)]->forward(tokens.data());
        nets[std::size_t(t)]->zero_grad();
        nets[std::size_t(t)]->backward(d, nullptr);
      });
    }
    {
      std::vector<std::unique_ptr<lmshrink::models::Net>> nets;
      for (int t = 0; t < threads; ++t) nets.push_back(part->net(batch, n, NetMode::outputs));
      forward[blocks - 1] = timed_together(threads, probe_seconds, [&](int t) { nets[std::size_t(t)]->forward(tokens.data()); });
    }
    std::vector<std::unique_ptr<lmshrink::models::Net>> ones;
    for (int t = 0; t < threads; ++t) ones.push_back(part->net(1, n, NetMode::forward_only));
    window[blocks - 1] = timed_together(threads, probe_seconds, [&](int t) { ones[std::size_t(t)]->forward(tokens.data()); });
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
  r.calibration_block = L >= 2 ? std::max(0.0, window[1] - window[0]) : window[0];
  r.calibration_rest = std::max(0.0, window[0] - r.calibration_block);
  // The loss (KL and cross-entropy over the vocabulary, and their gradient) on up to 256 rows,
  // scaled to the shard's rows.
  const int rows = std::min(256, batch * n), vocab = teacher.shape().vocab_size;
  RowMat student = RowMat::Random(rows, vocab), target = RowMat::Random(rows, vocab), dlogits(rows, vocab);
  Eigen::VectorXi next(rows);
  for (int i = 0; i < rows; ++i) next[i] = (i * 13) % vocab;
  r.loss = timed(probe_seconds, [&] { lmshrink::soft_hard_loss<float>(student, target, next, dlogits, 0.5, {}); }) *
           double(batch) * n / rows;
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
  const double t = timed(probe_seconds, [&] {
    for (int k = 0; k < one->linear_kinds(); ++k) opt[std::size_t(k)].step(one->linear(0, k), grads[std::size_t(k)]);
  });
  r.optimizer_per_value = t / double(std::max<std::int64_t>(1, values));
  return r;
}

/// CPU seconds of one forward and backward through a block's linear layers on `tokens` rows,
/// `threads` copies at once: the teacher's first block's own layers (`shape` empty), or as a
/// student trains them. The difference to the teacher's replaces the linear layers' share of a
/// measured block step, so no FLOP count has to say how fast a rank-r product runs.
double linear_layers_seconds(const lmshrink::models::Model& teacher,
                             const std::vector<StudentFootprint::TrainedLayer>& shape, lmshrink::Index tokens,
                             int threads, double probe_seconds) {
  using lmshrink::models::Layer;
  const int K = teacher.linear_kinds();
  lmshrink::SplitMix64 rng(11);
  std::vector<Layer> layers;
  for (int k = 0; k < K; ++k)
    layers.push_back(shape.empty() ? teacher.linear(0, k) : shaped_layer(teacher.linear(0, k), shape[std::size_t(k)], rng));
  struct Buffers {
    std::vector<RowMat> x, y, dx;
    std::vector<Layer::Cache> cache;
    std::vector<Layer::Gradients> grads;
  };
  std::vector<Buffers> per_thread(std::size_t(std::max(1, threads)));
  for (auto& b : per_thread)
    for (const Layer& layer : layers) {
      b.x.push_back(RowMat::Random(tokens, layer.in_features()));
      b.y.push_back(RowMat::Random(tokens, layer.out_features()));
      b.dx.push_back(RowMat::Zero(tokens, layer.in_features()));
      b.cache.push_back(layer.make_cache(tokens));
      b.grads.push_back(layer.make_gradients());
    }
  return timed_together(threads, probe_seconds, [&](int t) {
    Buffers& b = per_thread[std::size_t(t)];
    for (std::size_t k = 0; k < layers.size(); ++k) {
      layers[k].forward(b.x[k], b.y[k], b.cache[k]);
      b.grads[k].set_zero();
      layers[k].backward(b.x[k], b.y[k], b.cache[k], b.dx[k], b.grads[k]);  // y stands in for dy
    }
  });
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
  std::string out = "plan (from the shapes, and rates measured on this machine in " +
                    examples::format_duration(calibration_seconds) + " of CPU time):\n";
  char line[256];
  for (const auto& p : phases) {
    std::snprintf(line, sizeof line, "  %-40s %10s\n", p.name.c_str(), examples::format_duration(p.seconds).c_str());
    out += line;
  }
  std::snprintf(line, sizeof line, "  %-40s %10s\n", "total", examples::format_duration(seconds()).c_str());
  out += line;
  for (const auto& t : student_times) out += "    " + t + "\n";
  out += "memory: teacher " + gib(teacher_bytes) + ", calibration " + gib(calibration_bytes) + " (freed after the "
         "students' initialisation)\n";
  for (const auto& [name, bytes] : student_bytes) {
    std::snprintf(line, sizeof line, "  %-40s %10s\n", (name + " while training").c_str(), gib(bytes).c_str());
    out += line;
  }
  if (teacher_outputs_bytes > 0) {
    out += "  the teacher's outputs, kept for every student and epoch: " +
           gib(std::min(teacher_cache_bytes, teacher_outputs_bytes)) +
           (teacher_cache_bytes >= teacher_outputs_bytes ? " (every distinct batch)"
                                                         : " of " + gib(teacher_outputs_bytes) + " (--teacher-cache-mb)") +
           "\n";
  }
  if (recompute)
    out += "  the students keep each block's input and run its forward again in the backward (--recompute)\n";
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
  plan.recompute = in.recompute;

  // ---- memory ----
  std::int64_t plain = 0;
  for (const auto& t : teacher.plain_params()) plain += t.size;
  plan.teacher_bytes = 4 * (teacher.linear_dense_parameters() + plain);
  std::int64_t gram = 0;
  std::vector<double> gram_costs;  // one update's cost per distinct input: in²
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
        gram_costs.push_back(double(f) * double(f));
      }
    }
  }
  plan.calibration_bytes = gram;
  const int shard_batch = (o.batch + in.shards - 1) / in.shards;
  const std::int64_t text = 4 * std::int64_t(in.data_windows) * in.length + 4 * std::int64_t(o.val_windows) * in.eval_len;
  std::vector<StudentFootprint> feet;
  std::vector<std::int64_t> attached;  // each student's state when its pruner reads the statistics
  for (const Job& j : *in.jobs) {
    const StudentFootprint f = student_footprint(o, j, teacher);
    feet.push_back(f);
    const std::int64_t N = std::int64_t(shard_batch) * in.length;
    // Its state, a gradient copy per shard, each shard's net and the teacher's net beside it
    // (activations, caches, dlogits), and the layer-wise gradients.
    // Recompute: every block's input and one block's activations and linear caches (an upper
    // bound for a truncated student, which keeps fewer inputs).
    const double block_share = double(f.blocks) / double(L);
    std::int64_t block_ranks = 0;
    for (const auto& layer : f.block) block_ranks += layer.rank;
    const std::int64_t own_net =
        in.recompute ? teacher.net_activation_bytes(shard_batch, in.length, lmshrink::models::NetMode::recompute)
                     : std::int64_t(block_share * double(teacher.net_activation_bytes(shard_batch, in.length, lmshrink::models::NetMode::training)));
    const std::int64_t gathered = 4 * 64 * (f.gather_in + N * f.gather_layers);  // scattered rows of S
    const std::int64_t caches = 8 * N * (in.recompute ? block_ranks : f.rank_sum) +
                                (in.recompute ? gathered / std::max(1, f.blocks) : gathered);
    const std::int64_t teacher_net = teacher.net_activation_bytes(shard_batch, in.length, lmshrink::models::NetMode::outputs);
    const std::int64_t per_shard = f.gradients + own_net + caches + teacher_net + 4 * N * s.vocab_size +
                                   4 * N * s.dim * f.blocks;
    const std::int64_t bytes = f.weights + f.optimizer + f.pruner + in.shards * per_shard;
    plan.student_bytes.push_back({job_name(j), bytes});
    // A pruner reads the statistics once the student's nets exist, before the optimizer, the
    // teacher's nets and the loss's buffers are made.
    attached.push_back(f.weights + f.pruner + in.shards * (f.gradients + own_net + caches));
  }
  // Initialisation: the student starts as a copy of the teacher; the SVD's work matrices.
  std::int64_t widest = 0;
  for (int k = 0; k < teacher.linear_kinds(); ++k)
    widest = std::max<std::int64_t>(widest, teacher.linear(0, k).dense_parameters());
  const std::int64_t init = plan.teacher_bytes + 8 * 6 * widest;
  plan.limit_bytes = memory_limit_bytes();
  const std::int64_t base = plan.teacher_bytes + text;
  // Calibration runs a window per thread, each net holding the window's every activation; as
  // many at once as fit (collect_calibration's windows_at_once).
  const std::int64_t window_net = teacher.net_activation_bytes(1, in.length, lmshrink::models::NetMode::forward_only);
  plan.calibration_nets = std::max(1, std::min(in.threads, o.calib_windows));
  while (plan.calibration_nets > 1 && plan.limit_bytes > 0 &&
         double(base + gram + plan.calibration_nets * window_net) * kPlanMemoryMargin > double(plan.limit_bytes))
    --plan.calibration_nets;
  const std::int64_t calibration_phase = gram + plan.calibration_nets * window_net;
  const std::size_t jobs = in.jobs->size();
  std::vector<std::int64_t> sorted;
  for (const auto& named : plan.student_bytes) sorted.push_back(named.second);
  std::sort(sorted.rbegin(), sorted.rend());
  // `c` students at once: the calibration statistics live until the last one is initialised,
  // possibly beside the others' training; one is in its initialisation or training.
  const auto peak_with = [&](int c) {
    if (jobs == 1) {  // the statistics are freed after its initialisation (a pruner's: once its nets exist)
      const std::int64_t during_init = gram + (feet[0].prunes ? std::max(init, attached[0]) : init);
      return base + std::max({calibration_phase, during_init, sorted[0]});
    }
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
  // The teacher's outputs, one entry per distinct shard batch: step t reads windows from
  // (t·batch) mod data_windows, so the steps repeat every data_windows / gcd(batch, data_windows).
  bool reads_teacher = false, reads_blocks = false;
  for (const Job& j : *in.jobs) {
    const Loss loss = job_loss(j);
    reads_teacher |= info(loss).teacher;
    reads_blocks |= layerwise_loss(o, loss) || loss == Loss::triple;
  }
  std::int64_t distinct_steps = in.steps;
  if (in.data_windows > 0 && reads_teacher) {
    distinct_steps = std::min<std::int64_t>(in.steps, in.data_windows / std::gcd(o.batch, in.data_windows));
    plan.teacher_outputs_bytes = distinct_steps * in.shards *
                                 examples::TeacherOutputCache::entry_bytes(std::int64_t(shard_batch) * in.length, s.vocab_size,
                                                                           reads_blocks ? L : 0, s.dim);
  }
  if (o.teacher_cache_mb >= 0) {
    plan.teacher_cache_bytes = o.teacher_cache_mb << 20;
  } else {  // auto: up to 1 GiB, within what the plan leaves of the memory
    std::int64_t room = std::int64_t(1) << 30;
    if (plan.limit_bytes > 0)
      room = std::min(room, std::int64_t(double(plan.limit_bytes) / kPlanMemoryMargin) - plan.peak_bytes);
    plan.teacher_cache_bytes = std::max<std::int64_t>(0, std::min(room, plan.teacher_outputs_bytes));
  }
  plan.peak_bytes += std::min(plan.teacher_cache_bytes, plan.teacher_outputs_bytes);

  if (!in.timing) return plan;
  // ---- time: rates measured here ----
  const double t_measure = thread_cpu_seconds();
  const double probe_seconds = o.plan_probe_seconds;
  const StepRates step = measure_steps(teacher, shard_batch, in.length, std::max(1, in.threads), probe_seconds);
  // Scoring: the teacher's forward over one window of up to 128 tokens, scaled by FLOPs.
  const int n0 = std::min(in.eval_len, 128);
  std::vector<int> window(std::size_t(n0) + 1);
  for (std::size_t i = 0; i < window.size(); ++i) window[i] = int((i * 31) % std::size_t(s.vocab_size));
  const auto dec = teacher.decoder();
  const double t_window0 = timed(probe_seconds, [&] { dec->forward_sequence(window.data(), n0); });
  const double rate_forward = double(n0) * forward_flops(teacher, 1.0, n0 / 2.0) / std::max(t_window0, 1e-9);
  // Generation: 8 tokens decoded one by one at positions 0..7, scaled by FLOPs to the mean position.
  const double t_token0 = timed_together(std::max(1, in.threads), probe_seconds, [&](int) {
    const auto d = teacher.decoder();
    for (int p = 0; p < 8; ++p) d->forward_token(window[std::size_t(p)], p);
  }) / 8.0;
  const double rate_decode = forward_flops(teacher, 1.0, 4.0) / std::max(t_token0, 1e-12);
  // The Gram update (double) and the SVD (a layer of the teacher's first block).
  lmshrink::Index widest_in = 0;
  for (int k = 0; k < teacher.linear_kinds(); ++k) widest_in = std::max(widest_in, teacher.linear(0, k).in_features());
  lmshrink::GramAccumulator acc(widest_in);
  const RowMat x = RowMat::Random(256, widest_in);
  const double t_gram = timed(probe_seconds, [&] { acc.add<float>(x); });
  const double rate_gram = 256.0 * double(widest_in) * double(widest_in) / std::max(t_gram, 1e-12);
  // The exact SVD's work against the randomized one's (InitWork::exact_unit), each timed on a
  // square matrix as wide as the teacher's layers are short (64 to 512: a 512-wide exact SVD
  // took most of a small model's plan) in the precision the fits use, then one layer's fit,
  // whose time sets the rate of the rest.
  InitWork work;
  work.whitened = o.whitened;
  {
    lmshrink::Index n = 64;
    for (int k = 0; k < teacher.linear_kinds(); ++k)
      n = std::max(n, std::min(teacher.linear(0, k).out_features(), teacher.linear(0, k).in_features()));
    n = std::min<lmshrink::Index>(n, 512);
    const lmshrink::Index r = n / 4;
    const RowMat e = RowMat::Random(n, n);
    lmshrink::models::Layer scratch;
    lmshrink::SvdInitOptions exact, randomized;
    exact.rank = randomized.rank = r;
    randomized.method = lmshrink::SvdMethod::randomized;
    randomized.randomized_in_double = o.whitened;  // the whitened path works in double
    const double t_exact = timed(probe_seconds, [&] { lmshrink::svd_init<float>(e, scratch, exact); });
    const double t_randomized = timed(probe_seconds, [&] { lmshrink::svd_init<float>(e, scratch, randomized); });
    InitWork unit;
    unit.whitened = false;
    unit.exact_unit = 1;
    const double rate = unit.svd_init(double(n), double(n), double(r), true) / std::max(t_randomized, 1e-12);
    const double rest = unit.svd_init(double(n), double(n), double(r), false) - unit.svd(double(n), double(n), double(r), false);
    work.exact_unit = std::max(1.0, (t_exact * rate - rest) / unit.svd(double(n), double(n), double(r), false));
  }
  const auto& probe = teacher.linear(0, 0);
  lmshrink::models::Layer fitted;
  lmshrink::SvdInitOptions so;
  so.rank = int(std::max<lmshrink::Index>(1, std::min(probe.out_features(), probe.in_features()) / 4));
  so.method = svd_method(o, probe.out_features(), probe.in_features());
  const RowMat w0 = probe.to_dense();
  lmshrink::GramAccumulator probe_stats(probe.in_features());
  probe_stats.add<float>(RowMat::Random(std::max<lmshrink::Index>(256, 2 * probe.in_features()), probe.in_features()));
  const double t_svd = timed(probe_seconds, [&] {
    if (o.whitened) lmshrink::svd_init<float>(w0, fitted, so, probe_stats);
    else lmshrink::svd_init<float>(w0, fitted, so);
  });
  const double rate_svd = work.svd_init(double(probe.out_features()), double(probe.in_features()), double(so.rank),
                                        so.method == lmshrink::SvdMethod::randomized) /
                          std::max(t_svd, 1e-12);
  plan.calibration_seconds = thread_cpu_seconds() - t_measure;

  // ---- time: the phases ----
  const int threads = std::max(1, in.threads);
  const int cap = o.story_tokens > 0 ? std::min(o.story_tokens, in.context) : in.context;
  const double decode_token = forward_flops(teacher, 1.0, cap / 2.0) / rate_decode;
  // Stories are sampled in rounds (teacher_text.hpp), each round's stories spread over the
  // threads: counted as stories that reach the cap (a model that ends its stories earlier
  // writes more, shorter ones in about the same time).
  const auto sampling_seconds = [&](double tokens) {
    double seconds = 0, have = 0;
    while (have < tokens) {
      const double missing = std::ceil((tokens - have) / cap);
      const double round = std::max<double>(threads, std::min(16.0, missing));
      seconds += std::ceil(round / threads) * cap * decode_token;
      have += round * cap;
    }
    return seconds;
  };
  const double train_tokens = std::max(0.0, double(in.data_windows) * in.length + 1 - double(in.cached_train_tokens));
  const double val_tokens = std::max(0.0, double(o.val_windows) * in.eval_len + 1 - double(in.cached_val_tokens));
  const double window_seconds = double(in.eval_len) * forward_flops(teacher, 1.0, in.eval_len / 2.0) / rate_forward;
  if (o.heldout) plan.phases.push_back({"teacher: held-out scoring", in.eval_windows * window_seconds / threads});
  plan.phases.push_back({"teacher: text generation", (o.train_text.empty() ? sampling_seconds(train_tokens) : 0) +
                                                         (o.val_text.empty() ? sampling_seconds(val_tokens) : 0)});
  plan.phases.push_back({"teacher: validation scoring", o.val_windows * window_seconds / threads});
  if (in.calibrates) {
    // The windows forward, `threads` at a time; the Gram updates split as collect_calibration
    // splits them: the busiest thread's share.
    const int windows = std::min(o.calib_windows, in.data_windows);
    const double gram_flops = lmshrink::models::balanced_makespan(gram_costs, threads) * double(windows) * in.length;
    const double fwd = std::ceil(double(windows) / plan.calibration_nets) * (step.calibration_rest + L * step.calibration_block);
    plan.phases.push_back({"calibration", fwd + gram_flops / rate_gram});
  }
  const double lin = linear_share_of_block(teacher, in.length);
  // The schedule: side by side (one core each) in waves, the rest one at a time on every core.
  const std::size_t side = concurrent < 2 ? 0
                           : !in.remainder_alone ? jobs
                                                 : jobs - jobs % std::size_t(concurrent);
  // The teacher's block's linear layers, and each distinct student shape's, timed on a shard's
  // tokens.
  const lmshrink::Index shard_tokens = lmshrink::Index(shard_batch) * in.length;
  double dense_layers = 0;
  std::vector<std::pair<std::vector<StudentFootprint::TrainedLayer>, double>> timed_blocks;
  {
    const double t0 = thread_cpu_seconds();
    dense_layers = linear_layers_seconds(teacher, {}, shard_tokens, threads, probe_seconds);
    plan.calibration_seconds += thread_cpu_seconds() - t0;
  }
  const bool all_outputs_kept = plan.teacher_outputs_bytes > 0 && plan.teacher_cache_bytes >= plan.teacher_outputs_bytes;
  std::vector<double> per_student;
  for (std::size_t i = 0; i < jobs; ++i) {
    const Job& j = (*in.jobs)[i];
    const StudentFootprint& f = feet[i];
    const MethodInfo& m = info(j.method);
    const int job_threads = i < side ? 1 : threads;
    // One block's training step: the teacher's, with its linear layers' share as the student's.
    double block_seconds = step.train_block;
    if (!f.block.empty() && !std::all_of(f.block.begin(), f.block.end(), [](const auto& l) { return l.dense(); })) {
      auto known = std::find_if(timed_blocks.begin(), timed_blocks.end(), [&](const auto& t) { return t.first == f.block; });
      if (known == timed_blocks.end()) {
        const double t0 = thread_cpu_seconds();
        timed_blocks.push_back({f.block, linear_layers_seconds(teacher, f.block, shard_tokens, threads, probe_seconds)});
        plan.calibration_seconds += thread_cpu_seconds() - t0;
        known = timed_blocks.end() - 1;
      }
      block_seconds = std::max(known->second, step.train_block - dense_layers + known->second);
    }
    // Initialisation: each layer's fit at the rank (and S's entries) it starts with.
    std::vector<double> fits;
    for (int l = 0; l < L; ++l)
      for (int k = 0; k < teacher.linear_kinds(); ++k)
        fits.push_back(init_work(o, work, m.init, f, teacher, l, k));
    const bool parallel_fits = !(o.reconstruct && m.reconstructs);
    const double init_seconds = lmshrink::models::balanced_makespan(fits, parallel_fits ? job_threads : 1) / rate_svd;
    // Training: per step, the shards in rounds of job_threads, then AdamW.
    // Recompute runs each block's forward once more: about a third of its training step.
    // With every distinct batch's outputs kept, the teacher runs once per batch in the whole
    // run: the first student pays for it, and those beside it wait for it.
    const bool first_wave = i == 0 || (i < side && i < std::size_t(concurrent));
    const double teacher_runs = !all_outputs_kept ? 1.0
                                : first_wave      ? double(distinct_steps) / std::max(1, in.steps)
                                                  : 0.0;
    const double shard = step.train_rest + f.blocks * block_seconds * (in.recompute ? 4.0 / 3.0 : 1.0) +
                         teacher_runs * (step.teacher_rest + L * step.teacher_block) + step.loss;
    const int shard_rounds = (in.shards + job_threads - 1) / job_threads;
    const double optimizer = step.optimizer_per_value * double(f.weights / 4);
    const double train_seconds = in.steps * (shard_rounds * shard + optimizer);
    // Scoring the packed student: validation before and after training, held-out after.
    const double student_window = window_seconds * (lin * f.linear_flops + (1 - lin) * double(f.blocks) / L);
    const double scoring = (2.0 * o.val_windows + (o.heldout ? in.eval_windows : 0)) * student_window / job_threads;
    per_student.push_back(init_seconds + train_seconds + scoring);
    char detail[256];
    std::snprintf(detail, sizeof detail, "%s: initialisation %s, %d steps of %.2f s, scoring %s", job_name(j).c_str(),
                  examples::format_duration(init_seconds).c_str(), in.steps, train_seconds / std::max(1, in.steps),
                  examples::format_duration(scoring).c_str());
    plan.student_times.push_back(detail);
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
