// The main job: compress a real pretrained llama2.c model end to end and show what each method
// keeps.
//
//   lmshrink_compress [options]          (defaults: the bundled stories260K, about 5 minutes)
//
// 1. Loads the teacher, its tokenizer and the held-out token stream; scores the teacher with
//    the README protocol (non-overlapping windows of seq_len inputs, next tokens as targets).
// 2. Generates training text with the teacher (seeded sampling at temperature 1; never the
//    held-out stories).
// 3. For every method and ratio, builds a student from the teacher and fine-tunes it with the
//    same budget (steps × batch × length tokens, AdamW):
//      losparse  U·V from a truncated SVD + S = W − U·V pruned by rows (LoSparse's pruner:
//                Taylor importance with moving averages, cubic schedule, global threshold)
//      lowrank   U·V only (the low-rank baseline)
//      itp       the same pruner on the dense weights (the ITP baseline)
//      trunc-kd  blocks --keep of the teacher, distilled     } layer truncation
//      trunc-lm  the same blocks, language-model loss only   }
//    Students learn from the teacher's logits and the generated tokens (α·KL_T + (1 − α)·CE;
//    the cross-entropy part also gives the pruner's Taylor importance a signal while a student
//    still equals its teacher) except trunc-lm, which learns from the generated tokens alone.
// 4. Packs every student (lmshrink::CompactLinear), scores it, times generation against the
//    teacher, saves it (safetensors; truncated students also as llama2.c) and writes
//    results.md, results.csv, training.csv and perplexity_vs_parameters.svg.
//
// Everything except the measured speeds is reproducible: the same options give the same table.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <lmshrink/lmshrink.hpp>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "common/llama_checkpoint.hpp"
#include "common/llama_compact.hpp"
#include "common/llama_decoder.hpp"
#include "common/llama_trainer.hpp"
#include "common/output_dir.hpp"
#include "common/progress.hpp"
#include "common/svg_plot.hpp"
#include "common/teacher_text.hpp"

#ifndef LMSHRINK_DATA_DIR
#define LMSHRINK_DATA_DIR "examples/data"
#endif

namespace {

using examples::RowMat;
using lmshrink::detail::fail;

// ---- options -----------------------------------------------------------------------------------

struct Options {
  std::string model = LMSHRINK_DATA_DIR "/stories260K.bin";
  std::string tokenizer = LMSHRINK_DATA_DIR "/tok512.bin";
  std::string eval = LMSHRINK_DATA_DIR "/tinystories_valid_first1000.tok512.u16";
  std::string out = "out/compress";
  std::vector<std::string> methods = {"losparse", "lowrank", "itp", "trunc-kd", "trunc-lm"};
  std::vector<double> ratios = {0.5};
  std::vector<int> keep = {0, 2, 4};
  // The budget per student: --tokens (steps = tokens / (batch·length), rounded up), or --steps.
  int steps = 0;
  std::int64_t tokens = 160 * 4 * 512;
  int batch = 4;
  int length = 0;          // training sequence length; 0 = the model's seq_len
  int data_windows = 0;    // distinct generated training windows; 0 = steps·batch/2 (two epochs)
  int eval_windows = 0;    // 0 = all
  bool heldout = true;     // score the held-out stories (off for recipe studies)
  int val_windows = 64;    // validation windows (teacher text from val_seed), scored for every student
  std::uint64_t val_seed = 7;
  double lr = 5e-3;
  // Per-method overrides of lr (each method at its own tuned rate, docs/recipe.md).
  std::vector<std::pair<std::string, double>> method_lr = {{"losparse", 5e-3}, {"lowrank", 1e-2}, {"itp", 1e-2}};
  double embed_lr_scale = 1.0;  // learning rate of the embedding and the norm gains, relative
  double lowrank_share = 0.5;  // LoSparse: fraction of the budget in U·V
  double temperature = 1.0;
  double kd_alpha = 0.5;  // distillation loss: α·KL + (1 − α)·CE on the generated tokens
  double hidden_weight = 1.0;  // layer-wise distillation weight (0 = off)
  examples::HiddenLoss hidden_loss = examples::HiddenLoss::mse;
  bool whitened = true;  // data-aware init: whitened SVD and output-energy priors
  int calib_windows = 16;
  double prune_start = 0.1, prune_end = 0.7;  // pruning phase, fractions of the steps
  lmshrink::MaskMode mask_mode = lmshrink::MaskMode::reference;
  lmshrink::ThresholdScope allocation = lmshrink::ThresholdScope::global;
  double min_layer_keep = 0.0;
  int threads = 0;  // 0 = all cores
  int speed_tokens = 256;
  int sample_tokens = 40;
  std::uint64_t seed = 20231;
};

const char* kUsage = R"(usage: lmshrink_compress [options]
  --model PATH          llama2.c checkpoint (default: bundled stories260K.bin)
  --tokenizer PATH      llama2.c tokenizer (default: bundled tok512.bin)
  --eval PATH           held-out tokens (.u16 stream) or text (stories separated by
                        <|endoftext|>, encoded with the README protocol)
  --out DIR             output folder (default: out/compress)
  --methods LIST        losparse,lowrank,itp,trunc-kd,trunc-lm (default: all five), and
                        dense: the teacher fine-tuned with the same recipe and nothing
                        removed (what fine-tuning alone costs)
  --ratios LIST         remaining ratios of the linear weights (default: 0.5)
  --keep LIST           blocks kept by truncation (default: 0,2,4)
  --tokens N            training tokens per student; steps = ceil(N / (batch * length))
                        (default: 327680, 160 steps of 4 x 512)
  --steps N             or the budget in optimizer steps
  --batch N             sequences per step (default: 4)
  --length N            training sequence length (default: the model's seq_len)
  --data-windows N      distinct generated training windows (default: steps*batch/2)
  --eval-windows N      held-out windows scored (default: all)
  --no-heldout          score only the validation stream (for recipe studies)
  --val-windows N       validation windows of teacher text, scored for every student
                        (default: 64)
  --val-seed N          seed of the validation text; must differ from --seed (default: 7)
  --lr X                peak AdamW learning rate; alone, it sets every method's rate
                        (default: 0.005, and --method-lr's rates)
  --method-lr LIST      per-method peak learning rates overriding --lr
                        (default: losparse=0.005,lowrank=0.01,itp=0.01)
  --embed-lr-scale X    learning rate of the embedding and norm gains relative to --lr;
                        0 freezes them (default: 1)
  --lowrank-share X     LoSparse: share of the budget in U*V, in (0, 1) (default: 0.5)
  --temperature X       distillation temperature (default: 1)
  --kd-alpha X          distillation loss a*KL + (1-a)*CE, a in [0, 1]; below 1 the CE
                        part gives Taylor importance a signal near the teacher (default: 0.5)
  --hidden-weight X     layer-wise distillation: weight of the block-output loss; 0 turns
                        it off (default: 1)
  --hidden-loss KIND    mse (normalised per block) or cosine (default: mse)
  --init KIND           plain (SVD of W) or whitened (SVD of W weighted by calibration
                        inputs, and rows ranked by output energy before any gradient)
                        (default: whitened)
  --calib-windows N     training windows whose activations calibrate --init whitened
                        (default: 16)
  --prune-start X       pruning begins after this fraction of the steps (default: 0.1)
  --prune-end X         and reaches its final ratio here; the rest is recovery at the final
                        masks. 0 prunes once, before training (default: 0.7)
  --mask-mode KIND      reference (pruned rows may regrow between mask steps) or
                        persistent (default: reference)
  --allocation KIND     global (one threshold over raw scores), normalized (over scores
                        divided by their layer's mean) or per-layer (default: global)
  --min-layer-keep X    every layer keeps at least this share of its S (default: 0)
  --threads N           students trained at once (default: all cores)
  --seed N              generation seed (default: 20231)
  --speed-tokens N      tokens generated per speed measurement; 0 skips it, and
                        then results.csv is byte-identical between runs (default: 256)
  --sample-tokens N     length of the greedy sample in the table (default: 40)
)";

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(item);
  return out;
}

double parse_double(const char* flag, const std::string& s) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !std::isfinite(v))
    fail<lmshrink::value_error>("lmshrink_compress", flag, " expects a number, got '", s, "'");
  return v;
}

long parse_int(const char* flag, const std::string& s, long lo, long hi) {
  char* end = nullptr;
  const long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || v < lo || v > hi)
    fail<lmshrink::value_error>("lmshrink_compress", flag, " must be an integer in [", lo, ", ",
                                hi, "], got '", s, "'");
  return v;
}

Options parse(int argc, char** argv) {
  Options o;
  bool steps_given = false, tokens_given = false, lr_given = false, method_lr_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf("%s", kUsage);
      std::exit(0);
    }
    if (a == "--no-heldout") {
      o.heldout = false;
      continue;
    }
    if (i + 1 >= argc) fail<lmshrink::value_error>("lmshrink_compress", "unknown option or missing value: '", a, "'\n", kUsage);
    const std::string v = argv[++i];
    if (a == "--model") o.model = v;
    else if (a == "--tokenizer") o.tokenizer = v;
    else if (a == "--eval") o.eval = v;
    else if (a == "--out") o.out = v;
    else if (a == "--methods") o.methods = split(v);
    else if (a == "--ratios") {
      o.ratios.clear();
      for (const auto& r : split(v)) o.ratios.push_back(parse_double("--ratios", r));
    } else if (a == "--keep") {
      o.keep.clear();
      for (const auto& k : split(v)) o.keep.push_back(int(parse_int("--keep", k, 0, 1 << 20)));
    } else if (a == "--steps") {
      o.steps = int(parse_int("--steps", v, 1, 1 << 24));
      steps_given = true;
    } else if (a == "--tokens") {
      o.tokens = parse_int("--tokens", v, 1, 1L << 40);
      tokens_given = true;
    }
    else if (a == "--batch") o.batch = int(parse_int("--batch", v, 1, 4096));
    else if (a == "--length") o.length = int(parse_int("--length", v, 2, 1 << 20));
    else if (a == "--data-windows") o.data_windows = int(parse_int("--data-windows", v, 1, 1 << 24));
    else if (a == "--eval-windows") o.eval_windows = int(parse_int("--eval-windows", v, 1, 1 << 24));
    else if (a == "--val-windows") o.val_windows = int(parse_int("--val-windows", v, 1, 1 << 24));
    else if (a == "--val-seed") o.val_seed = std::uint64_t(parse_int("--val-seed", v, 0, (1L << 62)));
    else if (a == "--lr") {
      o.lr = parse_double("--lr", v);
      lr_given = true;
    }
    else if (a == "--method-lr") {
      method_lr_given = true;
      o.method_lr.clear();
      for (const auto& item : split(v)) {
        const auto eq = item.find('=');
        if (eq == std::string::npos)
          fail<lmshrink::value_error>("lmshrink_compress", "--method-lr expects method=rate items, got '", item, "'");
        o.method_lr.push_back({item.substr(0, eq), parse_double("--method-lr", item.substr(eq + 1))});
      }
    } else if (a == "--embed-lr-scale") o.embed_lr_scale = parse_double("--embed-lr-scale", v);
    else if (a == "--hidden-weight") o.hidden_weight = parse_double("--hidden-weight", v);
    else if (a == "--hidden-loss") {
      if (v == "mse") o.hidden_loss = examples::HiddenLoss::mse;
      else if (v == "cosine") o.hidden_loss = examples::HiddenLoss::cosine;
      else fail<lmshrink::value_error>("lmshrink_compress", "--hidden-loss must be mse or cosine, got '", v, "'");
    } else if (a == "--init") {
      if (v == "plain") o.whitened = false;
      else if (v == "whitened") o.whitened = true;
      else fail<lmshrink::value_error>("lmshrink_compress", "--init must be plain or whitened, got '", v, "'");
    } else if (a == "--calib-windows") o.calib_windows = int(parse_int("--calib-windows", v, 1, 1 << 20));
    else if (a == "--prune-start") o.prune_start = parse_double("--prune-start", v);
    else if (a == "--prune-end") o.prune_end = parse_double("--prune-end", v);
    else if (a == "--mask-mode") {
      if (v == "reference") o.mask_mode = lmshrink::MaskMode::reference;
      else if (v == "persistent") o.mask_mode = lmshrink::MaskMode::persistent;
      else fail<lmshrink::value_error>("lmshrink_compress", "--mask-mode must be reference or persistent, got '", v, "'");
    } else if (a == "--allocation") {
      if (v == "global") o.allocation = lmshrink::ThresholdScope::global;
      else if (v == "normalized") o.allocation = lmshrink::ThresholdScope::global_normalized;
      else if (v == "per-layer") o.allocation = lmshrink::ThresholdScope::per_layer;
      else fail<lmshrink::value_error>("lmshrink_compress", "--allocation must be global, normalized or per-layer, got '", v, "'");
    } else if (a == "--min-layer-keep") o.min_layer_keep = parse_double("--min-layer-keep", v);
    else if (a == "--lowrank-share") o.lowrank_share = parse_double("--lowrank-share", v);
    else if (a == "--temperature") o.temperature = parse_double("--temperature", v);
    else if (a == "--kd-alpha") o.kd_alpha = parse_double("--kd-alpha", v);
    else if (a == "--threads") o.threads = int(parse_int("--threads", v, 0, 1024));
    else if (a == "--speed-tokens") o.speed_tokens = int(parse_int("--speed-tokens", v, 0, 1 << 20));
    else if (a == "--sample-tokens") o.sample_tokens = int(parse_int("--sample-tokens", v, 1, 1 << 20));
    else if (a == "--seed") o.seed = std::uint64_t(parse_int("--seed", v, 0, (1L << 62)));
    else fail<lmshrink::value_error>("lmshrink_compress", "unknown option '", a, "'\n", kUsage);
  }
  for (const auto& m : o.methods)
    if (m != "losparse" && m != "lowrank" && m != "itp" && m != "trunc-kd" && m != "trunc-lm" && m != "dense")
      fail<lmshrink::value_error>("lmshrink_compress", "unknown method '", m,
                                  "'; losparse, lowrank, itp, trunc-kd, trunc-lm or dense was expected");
  for (double r : o.ratios)
    if (!(r > 0 && r < 1))
      fail<lmshrink::value_error>("lmshrink_compress", "ratio ", r,
                                  " is impossible: remaining ratios must be in (0, 1)");
  if (!(o.lr > 0 && o.lr < 1))
    fail<lmshrink::value_error>("lmshrink_compress", "--lr must be in (0, 1), got ", o.lr);
  for (const auto& [m, lr] : o.method_lr) {
    if (m != "losparse" && m != "lowrank" && m != "itp" && m != "trunc-kd" && m != "trunc-lm" && m != "dense")
      fail<lmshrink::value_error>("lmshrink_compress", "--method-lr names unknown method '", m, "'");
    if (!(lr > 0 && lr < 1))
      fail<lmshrink::value_error>("lmshrink_compress", "--method-lr rate for ", m, " must be in (0, 1), got ", lr);
  }
  if (!(o.lowrank_share > 0 && o.lowrank_share < 1))
    fail<lmshrink::value_error>("lmshrink_compress", "--lowrank-share must be in (0, 1), got ", o.lowrank_share);
  if (!(o.kd_alpha >= 0 && o.kd_alpha <= 1))
    fail<lmshrink::value_error>("lmshrink_compress", "--kd-alpha must be in [0, 1], got ", o.kd_alpha);
  if (!(o.temperature > 0))
    fail<lmshrink::value_error>("lmshrink_compress", "--temperature must be > 0, got ", o.temperature);
  if (steps_given && tokens_given)
    fail<lmshrink::value_error>("lmshrink_compress", "give the budget as --steps or as --tokens, not both");
  if (steps_given) o.tokens = 0;
  if (lr_given && !method_lr_given) o.method_lr.clear();  // --lr alone: one rate for every method
  if (!(o.embed_lr_scale >= 0 && o.embed_lr_scale <= 10))
    fail<lmshrink::value_error>("lmshrink_compress", "--embed-lr-scale must be in [0, 10], got ", o.embed_lr_scale);
  if (!(o.hidden_weight >= 0 && o.hidden_weight <= 1e3))
    fail<lmshrink::value_error>("lmshrink_compress", "--hidden-weight must be in [0, 1000], got ", o.hidden_weight);
  const bool one_shot = o.prune_start == 0 && o.prune_end == 0;
  if (!one_shot && !(o.prune_start >= 0 && o.prune_start < o.prune_end && o.prune_end <= 1))
    fail<lmshrink::value_error>("lmshrink_compress", "the pruning phase needs 0 <= --prune-start < --prune-end <= 1 "
                                "(or both 0: prune once before training), got ", o.prune_start, " and ", o.prune_end);
  if (!(o.min_layer_keep >= 0 && o.min_layer_keep < 1))
    fail<lmshrink::value_error>("lmshrink_compress", "--min-layer-keep must be in [0, 1), got ", o.min_layer_keep);
  if (o.val_seed == o.seed)
    fail<lmshrink::value_error>("lmshrink_compress", "--val-seed ", o.val_seed, " equals --seed: the validation text "
                                "would repeat the training text; give it its own seed");
  return o;
}

// ---- data --------------------------------------------------------------------------------------

std::vector<int> read_eval_tokens(const std::string& path, const lmshrink::Tokenizer& tok) {
  std::vector<int> tokens;
  if (path.size() >= 4 && path.compare(path.size() - 4, 4, ".u16") == 0) {
    const auto bytes = lmshrink::detail::read_file_bytes("lmshrink_compress", path, 2,
                                                         "at least one token", std::int64_t(1) << 34, "too large");
    if (bytes.size() % 2 != 0)
      fail<lmshrink::format_error>("lmshrink_compress", "'", path, "' has ", bytes.size(),
                                   " bytes; a .u16 token stream has an even size");
    for (std::size_t i = 0; i < bytes.size(); i += 2)
      tokens.push_back(int(static_cast<unsigned char>(bytes[i])) | (int(static_cast<unsigned char>(bytes[i + 1])) << 8));
    return tokens;
  }
  // Text: stories separated by <|endoftext|>, each stripped, "\n\n" → "\n", BOS + dummy prefix.
  const auto bytes = lmshrink::detail::read_file_bytes("lmshrink_compress", path, 1, "some text",
                                                       std::int64_t(1) << 32, "too large");
  const std::string text(bytes.begin(), bytes.end());
  const std::string sep = "<|endoftext|>";
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find(sep, start);
    if (end == std::string::npos) end = text.size();
    std::string story = text.substr(start, end - start);
    const auto first = story.find_first_not_of(" \t\r\n");
    const auto last = story.find_last_not_of(" \t\r\n");
    story = first == std::string::npos ? "" : story.substr(first, last - first + 1);
    for (std::size_t p; (p = story.find("\n\n")) != std::string::npos;) story.replace(p, 2, "\n");
    if (!story.empty()) {
      const auto ids = tok.encode(story, true, false);
      tokens.insert(tokens.end(), ids.begin(), ids.end());
    }
    start = end + sep.size();
  }
  return tokens;
}

// ---- evaluation --------------------------------------------------------------------------------

struct Score {
  double nll = 0, ppl = 0, top1 = 0;
  long tokens = 0;
};

template <class View>
Score evaluate(View view, const std::vector<int>& stream, int windows, int window_len, int threads) {
  std::vector<examples::SequenceScore> per(static_cast<std::size_t>(windows));
#pragma omp parallel num_threads(threads)
  {
    examples::SequenceDecoder<View> dec(view);
#pragma omp for schedule(dynamic)
    for (int w = 0; w < windows; ++w) {
      const int* in = stream.data() + std::size_t(w) * window_len;
      per[std::size_t(w)] = examples::score_logits(dec.forward(in, window_len), in + 1);
    }
  }
  Score s;
  double nll = 0;
  long top1 = 0;
  for (const auto& p : per) {  // in window order: the same sum for any thread count
    nll += p.nll_sum;
    top1 += p.top1;
    s.tokens += p.tokens;
  }
  s.nll = nll / double(s.tokens);
  s.ppl = std::exp(s.nll);
  s.top1 = double(top1) / double(s.tokens);
  return s;
}

template <class View>
std::vector<int> greedy(View view, int n) {
  examples::KvDecoder<View> dec(view);
  std::vector<int> out{1};
  for (int pos = 0; pos < n && pos + 1 < dec.config().seq_len; ++pos) {
    Eigen::Index next = 0;
    dec.forward(out.back(), pos).maxCoeff(&next);
    out.push_back(int(next));
  }
  return out;
}

// The greedy story up to the first BOS after the start (the model's end of story).
std::string sample_text(const lmshrink::Tokenizer& tok, std::vector<int> ids) {
  const auto end = std::find(ids.begin() + 1, ids.end(), 1);
  ids.erase(end, ids.end());
  return tok.decode(ids);
}

template <class View>
double generation_seconds(View view, int n) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = greedy(view, n);
  const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return ids.empty() ? 0 : t;
}

// ---- training ----------------------------------------------------------------------------------

// Adam on a plain tensor (embedding, gains), no weight decay: the same rule as lmshrink::AdamW.
struct TensorAdam {
  Eigen::VectorXf m, v;
  void step(float* p, const float* g, Eigen::Index n, double lr, long t) {
    if (m.size() != n) m.setZero(n), v.setZero(n);
    Eigen::Map<Eigen::VectorXf> P(p, n);
    Eigen::Map<const Eigen::VectorXf> G(g, n);
    m = 0.9f * m + 0.1f * G;
    v = 0.999f * v + 0.001f * G.cwiseProduct(G);
    const double bc1 = 1 - std::pow(0.9, double(t)), bc2 = 1 - std::pow(0.999, double(t));
    P.array() -= float(lr / bc1) * m.array() / (v.array().sqrt() / float(std::sqrt(bc2)) + 1e-8f);
  }
};

// Linear warm-up over the first 5 % of steps, then cosine decay to 10 % of the peak.
double learning_rate(double peak, int step, int steps) {
  const int warm = std::max(1, steps / 20);
  if (step < warm) return peak * (step + 1) / warm;
  const double f = double(step - warm) / std::max(1, steps - warm);
  return peak * (0.1 + 0.9 * 0.5 * (1 + std::cos(3.141592653589793 * f)));
}

struct Job {
  std::string method;
  double ratio = 0;  // nominal remaining ratio of the linear weights
};

struct Result {
  Job job;
  std::int64_t parameters = 0, linear_live = 0, linear_dense = 0, bytes = 0;
  Score score, val_score, val_init_score;
  double final_loss = 0, train_seconds = 0, tokens_per_s = 0, speedup = 0;
  int rank_min = 0, rank_max = 0;
  std::string sample, checkpoint;
  std::vector<float> losses;
  examples::CompactLlama compact;
};

// Calibration statistics of the teacher's linear-layer inputs, [block][kind].
using Calibration = std::vector<std::array<lmshrink::GramAccumulator, examples::kLinearKinds>>;

struct Shared {
  const Options* opt;
  const lmshrink::Llama2cModel* teacher;
  const std::vector<int>* train;  // generated stream
  int windows = 0, length = 0, steps = 0;
  const std::vector<int>* eval;
  int eval_windows = 0, eval_len = 0;
  const std::vector<int>* val;
  int val_windows = 0;
  const Calibration* calib = nullptr;
  const lmshrink::Tokenizer* tok;
  examples::Progress* bar;
  std::atomic<long> steps_done{0};
  long steps_total = 0;
  std::mutex status_mutex;
  std::vector<std::string> status;  // per worker
};

// Methods without a ratio: truncation, and the uncompressed control.
bool ratio_free(const std::string& method) {
  return method == "trunc-kd" || method == "trunc-lm" || method == "dense";
}

std::string job_name(const Job& j) {
  if (ratio_free(j.method)) return j.method;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s %.2g", j.method.c_str(), j.ratio);
  return buf;
}

std::string file_stem(const Job& j) {
  if (ratio_free(j.method)) return j.method;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s_%.2f", j.method.c_str(), j.ratio);
  return buf;
}

// Ranks whose low-rank parameters Σ r·(out + in) come closest to ρ·Σ out·in from below: the
// floor of each layer's ρ·out·in/(out + in), then one more rank for the layers with the largest
// remainders while the budget allows. (The per-layer ceil of the reference overshoots a 35-layer
// model's budget by 2 %.)
std::vector<int> ranks_for_budget(const examples::LlamaWeights<float>& w, double rho) {
  std::vector<int> ranks;
  std::vector<std::pair<double, std::size_t>> remainder;
  double budget = 0, used = 0;
  for (const auto& block : w.linear)
    for (const auto& layer : block) {
      const double out = double(layer.out_features()), in = double(layer.in_features());
      const double exact = rho * out * in / (out + in);
      const int r = std::max(1, int(std::floor(exact)));
      ranks.push_back(r);
      remainder.push_back({exact - r, ranks.size() - 1});
      budget += rho * out * in;
      used += r * (out + in);
    }
  std::stable_sort(remainder.begin(), remainder.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (const auto& [rest, i] : remainder) {
    const auto& layer = w.linear[i / examples::kLinearKinds][i % examples::kLinearKinds];
    const double cost = double(layer.out_features() + layer.in_features());
    if (rest > 0 && used + cost <= budget && ranks[i] < std::min(layer.out_features(), layer.in_features())) {
      ++ranks[i];
      used += cost;
    }
  }
  return ranks;
}

double peak_lr(const Options& o, const std::string& method) {
  for (const auto& [m, lr] : o.method_lr)
    if (m == method) return lr;
  return o.lr;
}

void set_lr(std::vector<std::array<lmshrink::AdamW<float>, examples::kLinearKinds>>& opt, double lr) {
  for (auto& block : opt)
    for (auto& o : block) o.set_lr(lr);
}

Result run_job(const Job& job, Shared& sh, int worker) {
  const Options& o = *sh.opt;
  const bool truncation = job.method == "trunc-kd" || job.method == "trunc-lm";
  const bool kd = job.method != "trunc-lm";
  const int steps = sh.steps;
  Result res;
  res.job = job;

  // The student.
  lmshrink::Llama2cModel base = truncation ? lmshrink::truncate_layers(*sh.teacher, o.keep) : *sh.teacher;
  auto w = examples::LlamaWeights<float>::from_model(base);
  const bool one_shot = o.prune_end == 0;
  lmshrink::PrunerOptions popt;
  popt.mode = one_shot ? lmshrink::MaskMode::persistent : o.mask_mode;
  popt.scope = o.allocation;
  popt.min_layer_keep = o.min_layer_keep;
  if (!one_shot) {
    const int start = int(std::lround(o.prune_start * steps));
    const int end = std::max(start + 1, int(std::lround(o.prune_end * steps)));
    if (end > steps)
      fail<lmshrink::value_error>("lmshrink_compress", "the pruning phase needs more steps than ", steps);
    popt.schedule.total_steps = steps;
    popt.schedule.initial_warmup = start;
    popt.schedule.final_warmup = steps - end;
    popt.schedule.mask_interval = std::max(1, std::min(10, steps / 10));
    popt.importance.window = popt.schedule.mask_interval;
  } else {
    popt.schedule.total_steps = 2;  // unused: one mask before training
  }
  bool prune = false;
  if (job.method == "losparse" || job.method == "lowrank") {
    const double rho = job.method == "lowrank" ? job.ratio : job.ratio * o.lowrank_share;
    const std::vector<int> ranks = ranks_for_budget(w, rho);
    for (std::size_t l = 0; l < w.linear.size(); ++l)
      for (int k = 0; k < examples::kLinearKinds; ++k) {
        auto& layer = w.linear[l][std::size_t(k)];
        const lmshrink::RowMatrix<float> dense = layer.to_dense();
        lmshrink::SvdInitOptions so;
        so.rank = ranks[l * examples::kLinearKinds + std::size_t(k)];
        if (o.whitened) lmshrink::svd_init<float>(dense, layer, so, (*sh.calib)[l][std::size_t(k)]);
        else lmshrink::svd_init<float>(dense, layer, so);
        if (job.method == "lowrank") lmshrink::make_low_rank_only(layer);
      }
    if (job.method == "losparse") {
      std::int64_t low = 0;
      for (const auto& block : w.linear)
        for (const auto& layer : block) low += layer.rank() * (layer.out_features() + layer.in_features());
      const double keep = job.ratio - double(low) / double(w.linear_dense_parameters());
      if (!(keep > 0))
        fail<lmshrink::value_error>("lmshrink_compress", "LoSparse at ratio ", job.ratio,
                                    " leaves no budget for S after the low-rank part (",
                                    double(low) / double(w.linear_dense_parameters()),
                                    "); lower --lowrank-share");
      popt.schedule.final_keep = keep;
      prune = true;
    }
  } else if (job.method == "itp") {
    popt.schedule.final_keep = job.ratio;
    prune = true;
  }
  lmshrink::Pruner<float> pruner(popt);
  examples::LlamaTrainer<float> net(w, o.batch, sh.length);
  auto& g = net.grads();
  if (prune) {
    for (int l = 0; l < w.config.n_layers; ++l)
      for (int k = 0; k < examples::kLinearKinds; ++k) {
        auto& layer = w.linear[std::size_t(l)][std::size_t(k)];
        pruner.add("layers." + std::to_string(l) + "." + examples::linear_kind_name(k), layer,
                   g.linear[std::size_t(l)][std::size_t(k)]);
        // Data-aware: rows ranked by their output energy until gradients can rank them.
        if (o.whitened)
          pruner.set_prior(l * examples::kLinearKinds + k,
                           lmshrink::row_output_energy<float>(layer.S(), (*sh.calib)[std::size_t(l)][std::size_t(k)]));
      }
    if (one_shot) pruner.mask(popt.schedule.final_keep);
  }

  {
    const auto start = examples::CompactLlama::pack(w);
    res.val_init_score = evaluate<examples::CompactView>(start, *sh.val, sh.val_windows, sh.eval_len, 1);
  }
  std::vector<std::array<lmshrink::AdamW<float>, examples::kLinearKinds>> opt;
  lmshrink::AdamWOptions ao;
  const double peak = peak_lr(o, job.method);
  ao.lr = peak;
  ao.weight_decay = 0;
  for (auto& block : w.linear)
    opt.push_back({lmshrink::AdamW<float>(block[0], ao), lmshrink::AdamW<float>(block[1], ao),
                   lmshrink::AdamW<float>(block[2], ao), lmshrink::AdamW<float>(block[3], ao),
                   lmshrink::AdamW<float>(block[4], ao), lmshrink::AdamW<float>(block[5], ao),
                   lmshrink::AdamW<float>(block[6], ao)});
  std::vector<TensorAdam> plain(3 + 2 * w.linear.size());

  // The teacher runs the same full-sequence forward, for its logits and block outputs.
  auto teacher_w = examples::LlamaWeights<float>::from_model(*sh.teacher);
  examples::LlamaTrainer<float> teacher(teacher_w, o.batch, sh.length);
  const bool layerwise = kd && o.hidden_weight > 0;
  std::vector<const RowMat*> teacher_blocks;
  std::vector<RowMat> dblock;
  if (layerwise)
    for (int l = 0; l < w.config.n_layers; ++l)
      teacher_blocks.push_back(&teacher.block_output(truncation ? o.keep[std::size_t(l)] : l));

  const int n = sh.length, B = o.batch, V = w.config.vocab_size;
  RowMat dlogits(B * n, V);
  std::vector<int> inputs(std::size_t(B * n));
  Eigen::VectorXi targets(B * n);
  const auto t0 = std::chrono::steady_clock::now();
  for (int step = 0; step < steps; ++step) {
    for (int b = 0; b < B; ++b) {
      const int win = int((std::int64_t(step) * B + b) % sh.windows);
      const int* src = sh.train->data() + std::size_t(win) * n;
      std::copy(src, src + n, inputs.begin() + b * n);
      for (int t = 0; t < n; ++t) targets[b * n + t] = src[t + 1];
    }
    const RowMat& logits = net.forward(inputs.data());
    double loss;
    if (kd) {
      const RowMat& teacher_logits = teacher.forward(inputs.data());
      lmshrink::LossOptions lo;
      lo.temperature = o.temperature;
      loss = lmshrink::soft_hard_loss<float>(logits, teacher_logits, targets, dlogits, o.kd_alpha, lo);
      if (layerwise)
        loss += examples::layerwise_distillation<float>(net, teacher_blocks, o.hidden_loss, o.hidden_weight, dblock);
    } else {
      loss = lmshrink::cross_entropy<float>(logits, targets, dlogits);
    }
    if (!std::isfinite(loss))
      fail<lmshrink::numeric_error>("lmshrink_compress", job_name(job), ": the loss is ", loss,
                                    " at step ", step, "; lower --lr");
    res.losses.push_back(float(loss));
    net.zero_grad();
    net.backward(dlogits, layerwise ? &dblock : nullptr);
    const double lr = learning_rate(peak, step, steps);
    set_lr(opt, lr);
    for (std::size_t l = 0; l < w.linear.size(); ++l)
      for (int k = 0; k < examples::kLinearKinds; ++k)
        opt[l][std::size_t(k)].step(w.linear[l][std::size_t(k)], g.linear[l][std::size_t(k)]);
    const long t = step + 1;
    const double lr_plain = lr * o.embed_lr_scale;
    if (lr_plain > 0) {
      plain[0].step(w.embedding.data(), g.embedding.data(), w.embedding.size(), lr_plain, t);
      plain[1].step(w.rms_final.data(), g.rms_final.data(), w.rms_final.size(), lr_plain, t);
      if (!w.config.shared_classifier)
        plain[2].step(w.classifier.data(), g.classifier.data(), w.classifier.size(), lr_plain, t);
      for (std::size_t l = 0; l < w.linear.size(); ++l) {
        plain[3 + 2 * l].step(w.rms_att[l].data(), g.rms_att[l].data(), w.rms_att[l].size(), lr_plain, t);
        plain[4 + 2 * l].step(w.rms_ffn[l].data(), g.rms_ffn[l].data(), w.rms_ffn[l].size(), lr_plain, t);
      }
    }
    if (prune && !one_shot) pruner.after_optimizer_step(step);

    const long done = ++sh.steps_done;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    char text[160];
    std::snprintf(text, sizeof text, "%s step %d/%d loss %.4f %.1fk tok/s", job_name(job).c_str(),
                  step + 1, steps, loss, (step + 1) * double(B * n) / secs / 1e3);
    std::string line;
    {
      std::lock_guard<std::mutex> lock(sh.status_mutex);
      sh.status[std::size_t(worker)] = text;
      for (const auto& st : sh.status)
        if (!st.empty()) line += (line.empty() ? "" : " | ") + st;
    }
    sh.bar->update(double(done), line);
  }
  res.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  res.final_loss = res.losses.back();

  // Final masks onto the layers (the reference pruning mode leaves them on the pruner).
  if (prune)
    for (lmshrink::Index i = 0; i < pruner.layers(); ++i) {
      auto& layer = w.linear[std::size_t(i / examples::kLinearKinds)][std::size_t(i % examples::kLinearKinds)];
      layer.set_row_mask(pruner.row_mask(i));
      layer.apply_masks();
    }
  res.rank_min = 1 << 30;
  for (const auto& block : w.linear)
    for (const auto& layer : block) {
      res.rank_min = std::min<int>(res.rank_min, int(layer.rank()));
      res.rank_max = std::max<int>(res.rank_max, int(layer.rank()));
    }
  res.parameters = w.parameters();
  res.linear_live = w.linear_parameters();
  for (int l = 0; l < sh.teacher->config.n_layers; ++l) {  // the teacher's linear weights
    const auto& t = *sh.teacher;
    const std::size_t L = std::size_t(l);
    res.linear_dense += t.wq[L].size() + t.wk[L].size() + t.wv[L].size() + t.wo[L].size() +
                        t.w1[L].size() + t.w2[L].size() + t.w3[L].size();
  }
  // No row of the table may claim a ratio the model does not have.
  const double nominal = ratio_free(job.method) ? double(w.linear_dense_parameters()) / double(res.linear_dense) : job.ratio;
  const double kept = examples::checked_linear_ratio(job_name(job), res.linear_live, res.linear_dense, nominal);

  // Save, then score what was saved: the table describes the checkpoints on disk.
  const std::string ckpt = o.out + "/checkpoints/" + file_stem(job) + ".safetensors";
  char ratio_text[32];
  std::snprintf(ratio_text, sizeof ratio_text, "%.4f", kept);
  examples::save_checkpoint(w, ckpt, job.method, {{"lmshrink.method", job.method},
                                                  {"lmshrink.linear_ratio", ratio_text}});
  if (truncation) lmshrink::write_llama2c(w.to_model(), o.out + "/checkpoints/" + file_stem(job) + ".bin");
  res.checkpoint = "checkpoints/" + file_stem(job) + ".safetensors";
  const auto loaded = examples::load_checkpoint(ckpt);
  res.compact = examples::CompactLlama::pack(loaded);
  res.bytes = res.compact.bytes();
  res.val_score = evaluate<examples::CompactView>(res.compact, *sh.val, sh.val_windows, sh.eval_len, 1);
  if (o.heldout)
    res.score = evaluate<examples::CompactView>(res.compact, *sh.eval, sh.eval_windows, sh.eval_len, 1);
  res.sample = sample_text(*sh.tok, greedy<examples::CompactView>(res.compact, o.sample_tokens));
  return res;
}

// ---- output ------------------------------------------------------------------------------------

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  const auto first = s.find_first_not_of(' ');
  return first == std::string::npos ? "" : s.substr(first);
}

std::string md_cell(const std::string& s) {
  std::string out;
  for (char c : one_line(s)) {
    if (c == '|') out += "\\|";
    else out += c;
  }
  return out;
}

std::string csv_cell(const std::string& s) {
  std::string out = "\"";
  for (char c : one_line(s)) {
    if (c == '"') out += "\"\"";
    else out += c;
  }
  return out + "\"";
}

void write_text(const std::string& path, const std::string& text) {
  lmshrink::detail::write_file_atomically("lmshrink_compress", path, [&](std::FILE* f) {
    return std::fwrite(text.data(), 1, text.size(), f) == text.size();
  });
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const auto wall0 = std::chrono::steady_clock::now();
    const Options o = parse(argc, argv);
#ifdef _OPENMP
    const int threads = o.threads > 0 ? o.threads : omp_get_num_procs();
#else
    const int threads = 1;
#endif
    Eigen::setNbThreads(1);  // parallel over windows, stories and students instead

    // Every input is read and checked before any work starts.
    const lmshrink::Llama2cModel teacher = lmshrink::read_llama2c(o.model);
    const auto& c = teacher.config;
    const lmshrink::Tokenizer tok = lmshrink::read_tokenizer(o.tokenizer, c.vocab_size);
    const std::vector<int> eval = read_eval_tokens(o.eval, tok);
    for (std::size_t i = 0; i < eval.size(); ++i)
      if (eval[i] < 0 || eval[i] >= c.vocab_size)
        fail<lmshrink::format_error>("lmshrink_compress", "'", o.eval, "' token ", i, " is ",
                                     eval[i], "; the model's vocabulary is [0, ", c.vocab_size, ")");
    const int eval_len = c.seq_len;
    const int available = int((eval.size() - 1) / std::size_t(eval_len));
    if (available < 1)
      fail<lmshrink::value_error>("lmshrink_compress", "'", o.eval, "' has ", eval.size(),
                                  " tokens; one window needs ", eval_len + 1);
    const int eval_windows = o.eval_windows > 0 ? std::min(o.eval_windows, available) : available;
    const int length = o.length > 0 ? o.length : c.seq_len;
    if (length > c.seq_len)
      fail<lmshrink::value_error>("lmshrink_compress", "--length ", length,
                                  " exceeds the model's seq_len ", c.seq_len);
    bool any_trunc = false;
    for (const auto& m : o.methods) any_trunc |= m == "trunc-kd" || m == "trunc-lm";
    if (any_trunc) lmshrink::validate_selection(o.keep, c.n_layers);
    examples::prepare_output_directory("lmshrink_compress", o.out + "/checkpoints");

    std::vector<Job> jobs;
    for (const auto& m : o.methods) {
      if (ratio_free(m)) {
        jobs.push_back({m, 0});
        continue;
      }
      for (double r : o.ratios) jobs.push_back({m, r});
    }

    std::printf("lmshrink_compress: %s (dim %d, %d layers, %d heads/%d kv, vocab %d, %lld parameters)\n",
                o.model.c_str(), c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size,
                static_cast<long long>(teacher.parameter_count()));
    const int steps = o.tokens > 0 ? int((o.tokens + std::int64_t(o.batch) * length - 1) / (std::int64_t(o.batch) * length))
                                    : o.steps;
    std::printf("%zu students x %d steps x %d x %d tokens (%lld tokens each), %d threads, seed %llu, output %s\n\n",
                jobs.size(), steps, o.batch, length,
                static_cast<long long>(std::int64_t(steps) * o.batch * length), threads,
                static_cast<unsigned long long>(o.seed), o.out.c_str());

    // 1. The teacher.
    Score teacher_score;
    if (o.heldout) {
      examples::Progress bar("teacher  ", 1);
      bar.update(0, "scoring " + std::to_string(eval_windows) + " windows");
      teacher_score = evaluate<examples::DenseView>(teacher, eval, eval_windows, eval_len, threads);
      char text[160];
      std::snprintf(text, sizeof text, "NLL %.4f, perplexity %.4f, top-1 %.4f over %ld tokens",
                    teacher_score.nll, teacher_score.ppl, teacher_score.top1, teacher_score.tokens);
      bar.finish(text);
    }

    // 2. Training and validation text from the teacher, each from its own seed, disjoint.
    const int data_windows = o.data_windows > 0 ? o.data_windows : std::max(1, steps * o.batch / 2);
    const std::size_t need = std::size_t(data_windows) * std::size_t(length) + 1;
    const std::size_t val_need = std::size_t(o.val_windows) * std::size_t(eval_len) + 1;
    std::vector<int> train, val;
    {
      examples::Progress bar("generate ", double(need + val_need));
      const auto train_stories = examples::sample_stories(teacher, need, o.seed, threads, [&](std::size_t have, std::size_t n) {
        bar.update(double(std::min(have, need)), std::to_string(n) + " training stories");
      });
      const auto val_stories = examples::sample_stories(teacher, val_need, o.val_seed, threads, [&](std::size_t have, std::size_t n) {
        bar.update(double(need + std::min(have, val_need)), std::to_string(n) + " validation stories");
      });
      examples::check_disjoint(train_stories, val_stories);
      train = examples::concatenate(train_stories);
      val = examples::concatenate(val_stories);
      char text[160];
      std::snprintf(text, sizeof text, "training %zu tokens (%d windows of %d), validation %zu tokens (%d windows of %d)",
                    train.size(), data_windows, length, val.size(), o.val_windows, eval_len);
      bar.finish(text);
    }
    const Score teacher_val = evaluate<examples::DenseView>(teacher, val, o.val_windows, eval_len, threads);
    std::printf("teacher on validation text: NLL %.4f\n", teacher_val.nll);

    // Calibration statistics of every linear layer's inputs, from the teacher on training text.
    Calibration calib;
    if (o.whitened) {
      auto tw = examples::LlamaWeights<float>::from_model(teacher);
      examples::LlamaTrainer<float> tnet(tw, 1, length);
      calib.resize(std::size_t(c.n_layers));
      for (auto& block : calib)
        for (int k = 0; k < examples::kLinearKinds; ++k)
          block[std::size_t(k)].reset(tw.linear[0][std::size_t(k)].in_features());
      for (int win = 0; win < std::min(o.calib_windows, data_windows); ++win) {
        tnet.forward(train.data() + std::size_t(win) * std::size_t(length));
        for (int l = 0; l < c.n_layers; ++l)
          for (int k = 0; k < examples::kLinearKinds; ++k)
            calib[std::size_t(l)][std::size_t(k)].add<float>(tnet.linear_input(l, k));
      }
    }

    // 3. Students, several at once (each on one thread: results do not depend on scheduling).
    Shared sh;
    sh.opt = &o;
    sh.teacher = &teacher;
    sh.train = &train;
    sh.windows = data_windows;
    sh.length = length;
    sh.eval = &eval;
    sh.eval_windows = eval_windows;
    sh.eval_len = eval_len;
    sh.val = &val;
    sh.val_windows = o.val_windows;
    sh.calib = &calib;
    sh.steps = steps;
    sh.tok = &tok;
    sh.steps_total = long(jobs.size()) * steps;
    sh.status.assign(std::size_t(threads), "");
    std::vector<Result> results(jobs.size());
    {
      examples::Progress bar("train    ", double(sh.steps_total));
      sh.bar = &bar;
      std::atomic<std::size_t> next{0};
      std::string error;
      std::mutex error_mutex;
#pragma omp parallel num_threads(threads)
      {
#ifdef _OPENMP
        const int worker = omp_get_thread_num();
#else
        const int worker = 0;
#endif
        for (std::size_t j; (j = next++) < jobs.size();) {
          try {
            {
              std::lock_guard<std::mutex> lock(error_mutex);
              if (!error.empty()) break;
            }
            results[j] = run_job(jobs[j], sh, worker);
            const Result& r = results[j];
            char line[256];
            std::snprintf(line, sizeof line,
                          "  %-14s %8lld params  linear %.3f  validation NLL %.4f (%.4f before fine-tuning)  held-out NLL %.4f  ppl %7.3f  (%.0f s)",
                          job_name(r.job).c_str(), static_cast<long long>(r.parameters),
                          double(r.linear_live) / double(r.linear_dense), r.val_score.nll, r.val_init_score.nll,
                          r.score.nll, r.score.ppl, r.train_seconds);
            bar.print(line);
          } catch (const std::exception& e) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (error.empty()) error = e.what();
          }
        }
      }
      if (!error.empty()) throw std::runtime_error(error);
      bar.finish("done");
    }

    // 4. Generation speed, one model at a time, teacher and student alternating; medians.
    std::vector<double> teacher_times;
    if (o.speed_tokens > 0) {
      examples::Progress bar("speed    ", double(results.size()));
      const int reps = 7;
      for (std::size_t i = 0; i < results.size(); ++i) {
        std::vector<double> t_teacher, t_student;
        for (int r = 0; r < reps; ++r) {
          t_teacher.push_back(generation_seconds<examples::DenseView>(teacher, o.speed_tokens));
          t_student.push_back(generation_seconds<examples::CompactView>(results[i].compact, o.speed_tokens));
        }
        std::sort(t_teacher.begin(), t_teacher.end());
        std::sort(t_student.begin(), t_student.end());
        results[i].tokens_per_s = o.speed_tokens / t_student[reps / 2];
        results[i].speedup = t_teacher[reps / 2] / t_student[reps / 2];
        teacher_times.insert(teacher_times.end(), t_teacher.begin(), t_teacher.end());
        bar.update(double(i + 1), job_name(results[i].job));
      }
      bar.finish("greedy generation of " + std::to_string(o.speed_tokens) + " tokens, medians of 7");
    }
    std::sort(teacher_times.begin(), teacher_times.end());
    const double teacher_tps = teacher_times.empty() ? 0 : o.speed_tokens / teacher_times[teacher_times.size() / 2];
    const auto speed = [&](double v, const char* fmt) {
      if (o.speed_tokens == 0) return std::string();
      char b[32];
      std::snprintf(b, sizeof b, fmt, v);
      return std::string(b);
    };
    const std::string teacher_sample = sample_text(tok, greedy<examples::DenseView>(teacher, o.sample_tokens));

    // 5. Results.
    const auto heldout = [&](double v, const char* fmt) {
      if (!o.heldout) return std::string();
      char b[32];
      std::snprintf(b, sizeof b, fmt, v);
      return std::string(b);
    };
    std::ostringstream md, csv, training;
    csv << "method,ratio,parameters,linear_ratio,bytes,val_nll,val_nll_before_finetuning,nll,perplexity,top1,"
           "tokens_per_s,speedup_vs_teacher,final_train_loss,rank_min,rank_max,checkpoint,sample\n";
    char buf[1024];
    std::snprintf(buf, sizeof buf, "teacher,1,%lld,1,%lld,%.6f,,%s,%s,%s,%s,%s,,,,%s,%s\n",
                  static_cast<long long>(teacher.parameter_count()),
                  static_cast<long long>(4 * teacher.parameter_count()), teacher_val.nll,
                  heldout(teacher_score.nll, "%.6f").c_str(), heldout(teacher_score.ppl, "%.6f").c_str(),
                  heldout(teacher_score.top1, "%.6f").c_str(), speed(teacher_tps, "%.0f").c_str(),
                  speed(1, "%.0f").c_str(), csv_cell(o.model).c_str(), csv_cell(teacher_sample).c_str());
    csv << buf;
    md << "| method | ratio | parameters | linear kept | validation NLL | before fine-tuning | held-out NLL | perplexity | top-1 | tokens/s | vs teacher | greedy sample |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    std::snprintf(buf, sizeof buf, "| teacher | 1 | %lld | 1.000 | %.4f | | %s | %s | %s | %s | %s | %s |\n",
                  static_cast<long long>(teacher.parameter_count()), teacher_val.nll,
                  heldout(teacher_score.nll, "%.4f").c_str(), heldout(teacher_score.ppl, "%.3f").c_str(),
                  heldout(teacher_score.top1, "%.4f").c_str(), speed(teacher_tps, "%.0f").c_str(),
                  speed(1, "%.2fx").c_str(), md_cell(teacher_sample).c_str());
    md << buf;
    training << "method,ratio,step,loss\n";
    for (const auto& r : results) {
      const double kept = double(r.linear_live) / double(r.linear_dense);
      const std::string ratio = r.job.ratio > 0 ? std::to_string(r.job.ratio).substr(0, 4) : "-";
      std::snprintf(buf, sizeof buf, "%s,%s,%lld,%.4f,%lld,%.6f,%.6f,%s,%s,%s,%s,%s,%.6f,%d,%d,%s,%s\n",
                    r.job.method.c_str(), ratio.c_str(), static_cast<long long>(r.parameters), kept,
                    static_cast<long long>(r.bytes), r.val_score.nll, r.val_init_score.nll,
                    heldout(r.score.nll, "%.6f").c_str(), heldout(r.score.ppl, "%.6f").c_str(),
                    heldout(r.score.top1, "%.6f").c_str(), speed(r.tokens_per_s, "%.0f").c_str(),
                    speed(r.speedup, "%.3f").c_str(), r.final_loss, r.rank_min, r.rank_max,
                    csv_cell(r.checkpoint).c_str(), csv_cell(r.sample).c_str());
      csv << buf;
      std::snprintf(buf, sizeof buf, "| %s | %s | %lld | %.3f | %.4f | %.4f | %s | %s | %s | %s | %s | %s |\n",
                    r.job.method.c_str(), ratio.c_str(), static_cast<long long>(r.parameters), kept,
                    r.val_score.nll, r.val_init_score.nll, heldout(r.score.nll, "%.4f").c_str(),
                    heldout(r.score.ppl, "%.3f").c_str(), heldout(r.score.top1, "%.4f").c_str(),
                    speed(r.tokens_per_s, "%.0f").c_str(), speed(r.speedup, "%.2fx").c_str(),
                    md_cell(r.sample).c_str());
      md << buf;
      for (std::size_t s = 0; s < r.losses.size(); ++s)
        training << r.job.method << ',' << ratio << ',' << s << ',' << r.losses[s] << '\n';
    }
    std::ostringstream doc;
    doc << "# lmshrink_compress results\n\nModel `" << o.model << "`; held-out `" << o.eval << "`, "
        << eval_windows << " windows of " << eval_len << " tokens (" << teacher_score.tokens
        << " scored); validation: " << o.val_windows << " windows of teacher text (seed " << o.val_seed
        << "). Each student: " << steps << " steps x " << o.batch << " x " << length
        << " tokens of teacher-generated text (seed " << o.seed << "), peak lr " << o.lr;
    for (const auto& [m, lr] : o.method_lr) doc << " (" << m << " " << lr << ")";
    doc
        << ". *linear kept*: live parameters of the linear layers over the teacher's. tokens/s: "
           "greedy generation of " << o.speed_tokens << " tokens, median of 7, one thread.\n\n"
        << md.str();
    write_text(o.out + "/results.md", doc.str());
    write_text(o.out + "/results.csv", csv.str());
    write_text(o.out + "/training.csv", training.str());

    examples::Plot plot;
    plot.title = o.heldout ? "Held-out perplexity vs parameters" : "Validation perplexity vs parameters";
    plot.x_label = "parameters";
    plot.y_label = "perplexity";
    const char* colors[] = {"#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#7f7f7f"};
    const char* names[] = {"losparse", "lowrank", "itp", "trunc-kd", "trunc-lm", "dense"};
    for (int m = 0; m < 6; ++m) {
      examples::Series s;
      s.label = names[m];
      s.color = colors[m];
      s.markers = true;
      for (const auto& r : results)
        if (r.job.method == names[m]) {
          s.x.push_back(double(r.parameters));
          s.y.push_back(o.heldout ? r.score.ppl : std::exp(r.val_score.nll));
        }
      if (!s.x.empty()) plot.series.push_back(s);
    }
    examples::Series t;
    t.label = "teacher";
    t.color = "#000000";
    t.markers = true;
    t.x = {double(teacher.parameter_count())};
    t.y = {o.heldout ? teacher_score.ppl : std::exp(teacher_val.nll)};
    plot.series.push_back(t);
    plot.log_y = true;
    write_text(o.out + "/perplexity_vs_parameters.svg", plot.svg());

    std::printf("\n%s\n", md.str().c_str());
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
    std::printf("wrote %s/results.md, results.csv, training.csv, perplexity_vs_parameters.svg and "
                "checkpoints/ in %s\n", o.out.c_str(), examples::format_duration(wall).c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lmshrink_compress: %s\n", e.what());
    return 1;
  }
}
