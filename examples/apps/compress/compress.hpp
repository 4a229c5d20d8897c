#pragma once
// lmshrink_compress, the main job: what its files share (options, jobs, results, and the
// functions each file provides). See main.cpp for what the job does.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <lmshrink/lmshrink.hpp>
#include <lmshrink/models/calibration.hpp>
#include <lmshrink/models/scoring.hpp>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "runtime/layerwise.hpp"
#include "cli/progress.hpp"
#include "runtime/team.hpp"
#include "runtime/teacher_outputs.hpp"
#include "models/registry.hpp"
#include "methods.hpp"

#ifndef LMSHRINK_DATA_DIR
#define LMSHRINK_DATA_DIR "examples/data"
#endif

namespace compress {

using RowMat = lmshrink::models::Mat;
using lmshrink::fail;

struct Options {
  std::string model = LMSHRINK_DATA_DIR "/stories260K.bin";
  std::string tokenizer;  // empty: the model directory's tokenizer files, else the family's bundled one
  std::string eval;  // empty: default_eval()
  bool parse_special = false;  // special-token text in --eval's stories as the special tokens (tokenizer.json)
  std::string out = "out/compress";
  std::vector<Method> methods = {Method::losparse, Method::lowrank, Method::itp, Method::oats, Method::trunc_kd};
  std::vector<double> ratios = {0.5};
  std::vector<int> keep = {0, 2, 4};
  std::string keep_rule;  // a preset's blocks, chosen once the teacher's depth is known ("distilgpt2", "every-other")
  Loss trunc_loss = Loss::recipe;  // trunc-kd's loss
  // The budget per student: --tokens (steps = tokens / (batch·length), rounded up), or --steps.
  int steps = 0;
  std::int64_t tokens = 160 * 4 * 512;
  int batch = 4;
  int context = 0;         // scoring windows, generation and the default training length; 0 = the model's seq_len
  int length = 0;          // training sequence length; 0 = the context
  int data_windows = 0;    // distinct generated training windows; 0 = steps·batch/2 (two epochs)
  int eval_windows = 0;    // 0 = all
  bool heldout = true;     // score the held-out stories (off for recipe studies)
  int story_tokens = 0;    // generated stories cut at this many tokens (0: the context)
  std::string text_cache;  // folder of generated text kept between runs; empty: beside --out; "off"
  std::string train_text;  // the user's training text instead of generated text (empty: generate)
  std::string val_text;    // the user's validation text instead of generated text (empty: generate)
  int val_windows = 64;    // validation windows (teacher text from val_seed), scored for every student
  std::uint64_t val_seed = 7;
  double lr = 5e-3;
  // Per-method overrides of lr (each method at its own tuned rate, docs/recipe.md); defaults:
  // the methods table's rates.
  std::vector<std::pair<Method, double>> method_lr = default_method_lr();
  // The default rates were tuned at width 64 (stories260K): for a wider teacher every default
  // rate is scaled by (64/dim)² (Adam's stable rate falls with the width). Off once --lr or
  // --method-lr gives a rate.
  bool scale_lr_by_width = true;
  double embed_lr_scale = 1.0;  // learning rate of the embedding and the norm gains, relative
  double lowrank_share = 0.5;  // LoSparse, losparse-elem, oats: fraction of the budget in U·V
  int oats_iterations = 5;     // oats: alternations of the low-rank fit and the hard threshold
  lmshrink::LowRankFit oats_fit = lmshrink::LowRankFit::whitened;
  bool oats_refit = true;      // oats: S's values by least squares under the full Gram matrix
  OatsAllocation oats_allocation = OatsAllocation::sparse;
  bool reconstruct = false;    // lowrank, oats: fit block by block to the teacher's outputs
  double reconstruct_damping = 1e-3;  // its ridge toward the teacher's W
  double temperature = 1.0;
  double kd_alpha = 0.5;  // distillation loss: α·KL + (1 − α)·CE on the generated tokens
  double recovery_kd_alpha = 1.0;  // the same once the masks are final (or nothing is pruned)
  double hidden_weight = 1.0;  // layer-wise distillation weight (0 = off)
  examples::HiddenLoss hidden_loss = examples::HiddenLoss::mse;
  bool whitened = true;  // data-aware init: whitened SVD and output-energy priors
  SvdChoice svd = SvdChoice::automatic;  // the initialisation's truncated SVDs
  int calib_windows = 16;
  double prune_start = 0.1, prune_end = 0.7;  // pruning phase, fractions of the steps
  lmshrink::MaskMode mask_mode = lmshrink::MaskMode::reference;
  lmshrink::ThresholdScope allocation = lmshrink::ThresholdScope::global;
  double min_layer_keep = 0.0;
  int threads = 0;  // 0 = all cores
  int shards = 0;   // per batch, capped at batch; 0 = 2, or the number of processes when more
  StudentSchedule schedule = StudentSchedule::automatic;
  Recompute recompute = Recompute::automatic;
  // The teacher's outputs kept for every student and epoch that trains on the same batch, MiB
  // (-1: auto, up to 1024 and what the memory plan leaves; 0: each student runs the teacher).
  std::int64_t teacher_cache_mb = -1;
  bool exact_sums = true;  // --reduce exact; false: mpi
  int curve_points = 0;  // validation NLL this many times during training (0 = none)
  bool plan_only = false;  // --plan: print the plan and stop
  double plan_probe_seconds = 0.25;  // CPU seconds each of the plan's rate measurements repeats for
  int speed_tokens = 256;
  bool speed_pack_timed = false;  // --speed-pack timed: students packed by time for the speed
  int sample_tokens = 40;
  std::uint64_t seed = 20231;
};

// ---- options.cpp ----

Options parse(int argc, char** argv);
/// The shards of a batch on `processes` processes: Options::shards, or 2 (the number of
/// processes when more) for 0, capped at --batch for one process; lmshrink::value_error unless
/// it is a multiple of `processes` that --batch can hold.
int resolve_shards(const Options& o, int processes);

// ---- evaluate.cpp: scoring and generation, of a teacher (its own layers) or a packed
// student ----

struct Score {
  double nll = 0, ppl = 0, top1 = 0;
  long tokens = 0;
};

/// Makes one decoder (each scoring thread and each generation has its own).
using DecoderFactory = std::function<std::unique_ptr<lmshrink::models::Decoder>()>;
inline DecoderFactory decoders_of(const lmshrink::models::Model& teacher) {
  return [&teacher] { return teacher.decoder(); };
}
inline DecoderFactory decoders_of(const lmshrink::models::Packed& packed) {
  return [&packed] { return packed.decoder(); };
}

std::vector<int> read_eval_tokens(const std::string& path, const lmshrink::models::TextCodec& codec);
/// The bundled held-out stories: as the reference token stream (tok512) for a model with
/// tok512's 512-token vocabulary, else as text, encoded with the model's tokenizer.
std::string default_eval(const lmshrink::models::TextCodec& codec);
/// With a team of several processes, each scores a contiguous share of the windows and the
/// per-window sums are gathered and added in window order: the single process's bits.
Score evaluate(const DecoderFactory& decoders, const std::vector<int>& stream, int windows, int window_len,
               int threads, examples::Team* team = nullptr);
/// `n` greedy tokens after the codec's story start.
std::vector<int> greedy(const DecoderFactory& decoders, const lmshrink::models::TextCodec& codec, int n, int context);
/// The greedy story up to the first story end after the start.
std::string sample_text(const lmshrink::models::TextCodec& codec, std::vector<int> ids);
double generation_seconds(const DecoderFactory& decoders, const lmshrink::models::TextCodec& codec, int n, int context);

// ---- train.cpp: one student per job ----

struct Job {
  Method method = Method::losparse;
  double ratio = 0;       // nominal remaining ratio of the linear weights
  std::vector<int> keep;  // truncation: the teacher blocks kept (empty = Options::keep)
  std::optional<Loss> loss;  // none: "lm" for trunc-lm, else "recipe"
  std::string tag;        // names the checkpoint files when several jobs share a method
  std::string label;      // the method as tables and files name it (empty = method)
  double lr = 0;          // peak learning rate; 0 = Options' rate for the method
  // Overrides of Shared::train and Shared::calib (same number of windows), for studies that
  // train on several streams in one run.
  const std::vector<int>* train = nullptr;
  const lmshrink::models::Calibration* calib = nullptr;
};

/// The job's training loss: Job::loss, else "lm" for trunc-lm and "recipe" for the others.
inline Loss job_loss(const Job& job) {
  return job.loss ? *job.loss : job.method == Method::trunc_lm ? Loss::lm : Loss::recipe;
}

/// The loss adds the layer-wise term on every block: "recipe" with --hidden-weight > 0, or
/// "layerwise".
inline bool layerwise_loss(const Options& o, Loss loss) {
  return (loss == Loss::recipe && o.hidden_weight > 0) || loss == Loss::layerwise;
}

// The job's peak learning rate: Job::lr, else --method-lr's rate for its method, else --lr.
double peak_lr(const Options& o, const Job& job);

struct Result {
  Job job;
  std::int64_t parameters = 0, linear_live = 0, linear_dense = 0, bytes = 0, index_bytes = 0;
  // oats: each layer's sparse + low-rank fit (output error per iteration), by layer name.
  std::vector<std::pair<std::string, lmshrink::SparsePlusLowRankResult>> init_errors;
  Score score, val_score, val_init_score;
  double final_loss = 0, init_seconds = 0, train_seconds = 0, tokens_per_s = 0, speedup = 0;
  int rank_min = 0, rank_max = 0;
  std::int64_t exchanged_per_step = 0;  // gradient bytes each process receives per step (data parallel)
  std::string sample, checkpoint;
  std::vector<float> losses;
  // Validation NLL during training (Options::curve_points): (training tokens so far, NLL).
  std::vector<std::pair<std::int64_t, double>> curve;
  std::shared_ptr<const lmshrink::models::Packed> compact;
};

// Calibration statistics of the teacher's linear-layer inputs, one per distinct input.
using Calibration = lmshrink::models::Calibration;

struct Shared {
  const Options* opt;
  lmshrink::models::Model* teacher;  // its nets read it; nothing changes it
  const std::vector<int>* train;  // generated stream
  int windows = 0, length = 0, steps = 0;
  const std::vector<int>* eval;
  int eval_windows = 0, eval_len = 0;
  int context = 0;  // the most positions a sample is generated to
  const std::vector<int>* val;
  int val_windows = 0;
  const Calibration* calib = nullptr;
  // When set, the students still to read `calib`; the last one clears owned_calib (= calib).
  std::atomic<int>* calib_readers = nullptr;
  Calibration* owned_calib = nullptr;
  const lmshrink::models::TextCodec* codec;
  examples::Team* team = nullptr;  // the processes of a data-parallel run; never null in run_job
  std::string out_dir;             // where rank 0 writes: the run's staging folder (StagedDirectory)
  int shards = 2;                  // per batch (Options::shards resolved)
  bool recompute = false;          // students' nets: NetMode::recompute (the plan's choice)
  examples::TeacherOutputCache* teacher_outputs = nullptr;  // shared by the students, or null
  examples::Progress* bar;
  std::atomic<long> steps_done{0};
  long steps_total = 0;
  std::mutex status_mutex;
  std::vector<std::string> status;  // per worker
};

std::string job_name(const Job& j);
/// The SVD that fits a layer of (out, in) under --svd.
inline lmshrink::SvdMethod svd_method(const Options& o, lmshrink::Index out, lmshrink::Index in) {
  const bool randomized = o.svd == SvdChoice::randomized ||
                          (o.svd == SvdChoice::automatic && std::min(out, in) >= kRandomizedSvdFrom);
  return randomized ? lmshrink::SvdMethod::randomized : lmshrink::SvdMethod::exact;
}

/// Job::label, else the method's name.
inline std::string label(const Job& j) { return j.label.empty() ? std::string(name(j.method)) : j.label; }
/// Fits layer (l, k) of a student to a target weight under statistics of its inputs.
using LayerFit = std::function<void(int l, int k, const lmshrink::RowMatrix<float>& target,
                                    const lmshrink::GramAccumulator& stats)>;
/// Block by block, stage by stage in forward order: pairs the student's and the teacher's
/// inputs of each layer over `windows` training windows, and fits the layer to the target that
/// reproduces the teacher's outputs (lmshrink::reconstruction_target).
void reconstruct_sequentially(lmshrink::models::Model& teacher, lmshrink::models::Model& student, const std::vector<int>& train,
                              int length, int windows, double damping, const LayerFit& fit);
/// What a student holds while it trains, as planned before it exists (bytes).
struct StudentFootprint {
  std::int64_t weights = 0;     // its parameters (U, V, S where kept, biases, plain tensors)
  std::int64_t gradients = 0;   // one copy of their gradients
  std::int64_t optimizer = 0;   // AdamW's two moments
  std::int64_t pruner = 0;      // importance scores, masks, priors (pruning methods)
  std::int64_t rank_sum = 0;    // Σ ranks of its linear layers (the layers' caches)
  // Its layers whose rows of S the pruner scatters (the live rows of persistent masks, the
  // non-zero rows of reference ones), and Σ of their inputs: their caches also gather up to 64
  // rows of S and an (N, 64) product (LowRankSparseLinear::Cache).
  std::int64_t gather_layers = 0, gather_in = 0;
  int blocks = 0;               // its blocks (truncation keeps fewer)
  bool prunes = false;          // its pruner reads the calibration statistics once its nets exist
  double linear_flops = 1;      // its linear layers' training FLOPs relative to the teacher's
  double weight_ratio = 0;      // its linear layers' budget as a share of the teacher's weights
  /// A block's linear layers as the student trains them, for the plan to time: the rank, the
  /// share of S's rows live (0: S released) and whether S has an element mask.
  struct TrainedLayer {
    int rank = 0;
    double s_rows = 1;
    bool element_mask = false;
    bool dense() const { return rank == 0 && s_rows == 1 && !element_mask; }
    bool operator==(const TrainedLayer& o) const {
      return rank == o.rank && s_rows == o.s_rows && element_mask == o.element_mask;
    }
  };
  std::vector<TrainedLayer> block;  // the first block's, one per linear kind
};
StudentFootprint student_footprint(const Options& o, const Job& job, const lmshrink::models::Model& teacher);
/// A copy of `dense` shaped as a student trains it: rank, live rows of S spread evenly (pruned
/// rows split S into runs, as a pruner's do), S released, an element mask. Its values are
/// random: a step's cost does not depend on them (the plan and bench_train time such layers).
lmshrink::models::Layer shaped_layer(const lmshrink::models::Layer& dense, const StudentFootprint::TrainedLayer& shape,
                                     lmshrink::SplitMix64& rng);

// ---- plan.cpp: what the job will take, before it starts ----

struct PlanInputs {
  const Options* o = nullptr;
  lmshrink::models::Model* teacher = nullptr;
  const std::vector<Job>* jobs = nullptr;
  int steps = 0, length = 0, eval_len = 0, eval_windows = 0, data_windows = 0, context = 0;
  int threads = 1, shards = 2;
  int side_by_side = 1;  // students the schedule would train at once (fewer when they do not fit)
  bool remainder_alone = true;  // the students left over from full waves train one at a time (auto)
  bool calibrates = false;
  bool recompute = false;  // students' nets rerun each block's forward in the backward
  bool timing = true;    // measure this machine's rates and estimate the times (else memory only)
  std::int64_t cached_train_tokens = 0, cached_val_tokens = 0;  // teacher text already on disk
};

struct Plan {
  struct Phase {
    std::string name;
    double seconds = 0;
  };
  std::vector<Phase> phases;
  std::vector<std::pair<std::string, std::int64_t>> student_bytes;  // each student while it trains
  std::vector<std::string> student_times;  // each student's initialisation, steps and scoring
  std::int64_t teacher_bytes = 0, calibration_bytes = 0, peak_bytes = 0;
  std::int64_t limit_bytes = -1;  // what this process may use (-1: unknown)
  int side_by_side = 1;           // students trained at once
  bool recompute = false;         // students' nets rerun each block's forward in the backward
  int calibration_nets = 1;       // calibration windows run forward at once
  // The teacher's outputs kept for reuse (TeacherOutputCache's limit), and what every distinct
  // batch of the run would take.
  std::int64_t teacher_cache_bytes = 0, teacher_outputs_bytes = 0;
  double calibration_seconds = 0; // spent measuring this machine's rates
  double seconds() const;
  bool fits() const { return limit_bytes < 0 || peak_bytes <= limit_bytes; }
  std::string text() const;
};

/// Measured peaks have been up to 1.15x the planned peak (docs/compress.md): --recompute auto
/// recomputes when the plan without it comes that close to the memory.
inline constexpr double kPlanMemoryMargin = 1.15;

/// The plan: the peak memory from the shapes, each phase's time from rates measured in a few
/// seconds on this machine, and how many students fit side by side.
Plan make_plan(const PlanInputs& in);
/// MemAvailable plus this process's resident memory, or the cgroup's limit when lower; -1 when
/// unknown.
std::int64_t memory_limit_bytes();
/// This process's peak resident memory so far (VmHWM), or -1.
std::int64_t peak_resident_bytes();

/// What can be known of a job before any work: a value_error naming the reason when it cannot
/// produce a reportable student in `steps` steps (no mask step left to reach the final ratio,
/// no budget for S after the low-rank part, biases above the ratio).
void check_job(const Options& o, const Job& job, const lmshrink::models::Model& teacher, int steps);
/// One student, its batch in `Options::shards` shards run on `job_threads` threads (the same
/// result for any thread count).
Result run_job(const Job& job, Shared& sh, int worker, int job_threads);

}  // namespace compress
