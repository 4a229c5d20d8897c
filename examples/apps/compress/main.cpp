// The main job: compress a real pretrained llama2.c model end to end and show what each method
// keeps.
//
//   lmshrink_compress [options]          (defaults: the bundled stories260K, about 5 minutes)
//
// 1. Loads the teacher, its tokenizer and the held-out token stream; scores the teacher with
//    the README protocol (non-overlapping windows of --context inputs, the model's seq_len by
//    default, next tokens as targets).
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
//
// Data parallel: `mpirun -np N lmshrink_compress ...` (built with MPI, docs/parallel.md) splits
// every batch's shards, the story generation and the scoring over the N processes; rank 0 alone
// prints and writes. The results are the single process's bits with the same --shards.
//
// The job's files: options.cpp (command line), evaluate.cpp (scoring and generation), train.cpp
// (one student per job) and this one (the whole run and its reports); they compile in parallel.

#include <lmshrink/models/codecs.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <lmshrink/files.hpp>
#include <optional>
#include <sstream>
#include <tuple>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cli/output_dir.hpp"
#include "cli/svg_plot.hpp"
#include "runtime/thread_index.hpp"
#include "runtime/teacher_text.hpp"
#include "runtime/text_cache.hpp"
#include "compress.hpp"

using namespace compress;

namespace {

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

/// The teacher's path for results.csv: as given, or, when absolute (the bundled default is), as
/// seen from the working directory, so that the table names no machine's folders.
std::string path_for_results(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code error;
  const fs::path given(path);
  if (!given.is_absolute()) return path;
  const fs::path here = fs::current_path(error);
  if (error) return path;
  const fs::path relative = given.lexically_normal().lexically_proximate(here.lexically_normal());
  return relative.generic_string();
}

void write_text(const std::string& path, const std::string& text) {
  lmshrink::write_file_atomically("lmshrink_compress", path, [&](std::FILE* f) {
    return std::fwrite(text.data(), 1, text.size(), f) == text.size();
  });
}

/// One row of the results table: the teacher or a student.
struct Row {
  bool teacher = false;
  std::string method, ratio;
  long long parameters = 0, bytes = 0, index_bytes = 0;
  double linear_kept = 1, val_nll = 0, val_before = 0, final_loss = 0;
  Score heldout;
  double tokens_per_s = 0, speedup = 1;
  int rank_min = 0, rank_max = 0;
  std::string checkpoint, sample;
};

/// results.csv and results.md from one list of columns: each column's header in either file
/// (null: not in that file) and its cell in each.
class ResultTable {
 public:
  ResultTable(bool heldout, bool speed) : heldout_(heldout), speed_(speed) {}
  void add(Row row) { rows_.push_back(std::move(row)); }

  std::string csv() const {
    std::string out = join(headers(false), ",") + "\n";
    for (const Row& r : rows_) out += join(cells(r, false), ",") + "\n";
    return out;
  }
  std::string markdown() const {
    const auto names = headers(true);
    std::string out = "| " + join(names, " | ") + " |\n|";
    for (std::size_t i = 0; i < names.size(); ++i) out += "---|";
    out += "\n";
    for (const Row& r : rows_) out += "| " + join(cells(r, true), " | ") + " |\n";
    return out;
  }

 private:
  struct Column {
    const char* csv;
    const char* md;
    std::function<std::string(const Row&, bool md)> cell;
  };

  static std::string format(const char* fmt, double v) {
    char b[64];
    std::snprintf(b, sizeof b, fmt, v);
    return b;
  }
  static std::string integer(long long v) { return std::to_string(v); }
  std::string heldout(double v, const char* fmt) const { return heldout_ ? format(fmt, v) : ""; }
  std::string speed(double v, const char* fmt) const { return speed_ ? format(fmt, v) : ""; }

  std::vector<Column> columns() const {
    using R = const Row&;
    return {
        {"method", "method", [](R r, bool) { return r.method; }},
        {"ratio", "ratio", [](R r, bool) { return r.ratio; }},
        {"parameters", "parameters", [](R r, bool) { return integer(r.parameters); }},
        {"linear_ratio", "linear kept",
         [](R r, bool md) { return md ? format("%.3f", r.linear_kept) : r.teacher ? "1" : format("%.4f", r.linear_kept); }},
        {"bytes", "bytes (of them indices)",
         [](R r, bool md) { return md ? integer(r.bytes) + " (" + integer(r.index_bytes) + ")" : integer(r.bytes); }},
        {"index_bytes", nullptr, [](R r, bool) { return integer(r.index_bytes); }},
        {"val_nll", "validation NLL", [](R r, bool md) { return format(md ? "%.4f" : "%.6f", r.val_nll); }},
        {"val_nll_before_finetuning", "before fine-tuning",
         [](R r, bool md) { return r.teacher ? std::string() : format(md ? "%.4f" : "%.6f", r.val_before); }},
        {"nll", "held-out NLL", [this](R r, bool md) { return heldout(r.heldout.nll, md ? "%.4f" : "%.6f"); }},
        {"perplexity", "perplexity", [this](R r, bool md) { return heldout(r.heldout.ppl, md ? "%.3f" : "%.6f"); }},
        {"top1", "top-1", [this](R r, bool md) { return heldout(r.heldout.top1, md ? "%.4f" : "%.6f"); }},
        {"tokens_per_s", "tokens/s", [this](R r, bool) { return speed(r.tokens_per_s, "%.0f"); }},
        {"speedup_vs_teacher", "vs teacher",
         [this](R r, bool md) { return speed(r.speedup, md ? "%.2fx" : r.teacher ? "%.0f" : "%.3f"); }},
        {"final_train_loss", nullptr, [](R r, bool) { return r.teacher ? std::string() : format("%.6f", r.final_loss); }},
        {"rank_min", nullptr, [](R r, bool) { return r.teacher ? std::string() : std::to_string(r.rank_min); }},
        {"rank_max", nullptr, [](R r, bool) { return r.teacher ? std::string() : std::to_string(r.rank_max); }},
        {"checkpoint", nullptr, [](R r, bool) { return csv_cell(r.checkpoint); }},
        {"sample", "greedy sample", [](R r, bool md) { return md ? md_cell(r.sample) : csv_cell(r.sample); }},
    };
  }
  std::vector<std::string> headers(bool md) const {
    std::vector<std::string> out;
    for (const Column& c : columns())
      if (const char* h = md ? c.md : c.csv) out.push_back(h);
    return out;
  }
  std::vector<std::string> cells(const Row& r, bool md) const {
    std::vector<std::string> out;
    for (const Column& c : columns())
      if (md ? c.md : c.csv) out.push_back(c.cell(r, md));
    return out;
  }
  static std::string join(const std::vector<std::string>& parts, const char* by) {
    std::string out;
    for (std::size_t i = 0; i < parts.size(); ++i) out += (i ? by : "") + parts[i];
    return out;
  }

  bool heldout_, speed_;
  std::vector<Row> rows_;
};

/// Every process must run the same job: the same options, teacher, tokenizer and held-out text.
/// Paths may differ between machines (--model, --tokenizer, --eval: their contents are compared
/// instead), and --out and --threads are each process's own. Compared by digest across ranks
/// before any work; one process has nothing to compare.
void check_same_inputs(examples::Team& team, int argc, char** argv, lmshrink::models::Model& teacher,
                       const lmshrink::models::TextCodec& codec, const std::vector<int>& eval) {
  if (team.size() < 2) return;
  std::string options;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--out" || a == "--threads" || a == "--model" || a == "--tokenizer" || a == "--eval") && i + 1 < argc) {
      ++i;
      continue;
    }
    options += a + '\0';
  }
  team.check_same("options (" + std::to_string(argc - 1) + " arguments)", {{options.data(), options.size()}});
  std::vector<examples::ByteSpan> weights;
  for (const lmshrink::models::TensorRef& t : teacher.plain_params())
    weights.push_back({t.data, std::size_t(t.size) * sizeof(float)});
  for (int l = 0; l < teacher.shape().n_layers; ++l)
    for (int k = 0; k < teacher.linear_kinds(); ++k) {
      const lmshrink::models::Layer& layer = teacher.linear(l, k);
      for (const auto* m : {&layer.U(), &layer.V(), &layer.S()})
        weights.push_back({m->data(), std::size_t(m->size()) * sizeof(float)});
      weights.push_back({layer.bias().data(), std::size_t(layer.bias().size()) * sizeof(float)});
    }
  team.check_same("teacher's weights", weights);
  std::string vocabulary;
  for (int id = 0; id < codec.vocab_size(); ++id) vocabulary += codec.decode({id}) + '\0';
  team.check_same("tokenizer", {{vocabulary.data(), vocabulary.size()}});
  team.check_same("held-out tokens", {{eval.data(), eval.size() * sizeof(int)}});
}

/// The run: its options, processes and threads, the teacher and its tokenizer, the held-out
/// stream, the shapes of every window, the students to train and the folder being written.
struct Run {
  Options o;
  examples::Team* team = nullptr;
  int threads = 1, shards = 2;
  std::unique_ptr<lmshrink::models::Model> teacher;
  lmshrink::models::ModelShape c;
  std::unique_ptr<lmshrink::models::TextCodec> codec;
  std::unique_ptr<lmshrink::models::TextCodec> eval_codec;  // --parse-special: the held-out text's
  std::vector<int> eval;
  std::vector<int> train_text, val_text;  // --train-text, --val-text (empty: generated)
  int eval_len = 0, eval_windows = 0, length = 0, steps = 0, data_windows = 0, context = 0;
  std::vector<Job> jobs;
  std::optional<lmshrink::StagedDirectory> staged;
  bool any_oats = false;
  int side_by_side = 1;  // students trained at once (the plan's: only as many as fit)
  bool recompute = false;  // students' nets rerun each block's forward in the backward (the plan's)
  int calibration_nets = 1;  // calibration windows run forward at once (the plan's)
  std::int64_t teacher_cache_bytes = 0;  // the teacher's outputs kept for reuse (the plan's)
};

/// Every input read and checked before any work starts; the staging folder made.
void read_inputs(Run& run, int argc, char** argv) {
  Options& o = run.o;
  run.shards = resolve_shards(o, run.team->size());
  run.team->set_exact_sums(o.exact_sums);
#ifdef _OPENMP
  run.threads = o.threads > 0 ? o.threads : std::max(1, omp_get_num_procs() / run.team->size());
#endif
  run.teacher = examples::load_model(o.model);
  const lmshrink::models::ModelShape& c = run.c = run.teacher->shape();
  run.codec = examples::load_codec(*run.teacher, o.model, o.tokenizer);
  if (o.parse_special) run.eval_codec = std::make_unique<lmshrink::models::SpecialTokenCodec>(*run.codec);
  if (o.eval.empty()) o.eval = default_eval(*run.codec);
  run.eval = read_eval_tokens(o.eval, run.eval_codec ? *run.eval_codec : *run.codec);
  for (std::size_t i = 0; i < run.eval.size(); ++i)
    if (run.eval[i] < 0 || run.eval[i] >= c.vocab_size)
      fail<lmshrink::format_error>("lmshrink_compress", "'", o.eval, "' token ", i, " is ",
                                   run.eval[i], "; the model's vocabulary is [0, ", c.vocab_size, ")");
  namespace fs = std::filesystem;
  std::error_code same_error;
  for (const auto& [flag, path, stream] : {std::tuple{"--train-text", &o.train_text, &run.train_text},
                                           std::tuple{"--val-text", &o.val_text, &run.val_text}}) {
    if (path->empty()) continue;
    if (fs::equivalent(*path, o.eval, same_error))
      fail<lmshrink::value_error>("lmshrink_compress", flag, " '", *path, "' is the held-out text (--eval); "
                                  "the held-out stories must stay unseen");
    *stream = read_eval_tokens(*path, *run.codec);
    for (std::size_t i = 0; i < stream->size(); ++i)
      if ((*stream)[i] < 0 || (*stream)[i] >= c.vocab_size)
        fail<lmshrink::format_error>("lmshrink_compress", "'", *path, "' token ", i, " is ", (*stream)[i],
                                     "; the model's vocabulary is [0, ", c.vocab_size, ")");
  }
  if (!o.train_text.empty() && !o.val_text.empty() && fs::equivalent(o.train_text, o.val_text, same_error))
    fail<lmshrink::value_error>("lmshrink_compress", "--train-text and --val-text are the same file; validation "
                                "text must not be training text");
  run.context = o.context > 0 ? o.context : c.seq_len;
  if (run.context > c.seq_len)
    fail<lmshrink::value_error>("lmshrink_compress", "--context ", run.context, " exceeds the model's context of ",
                                c.seq_len, " positions");
  run.eval_len = run.context;
  const int available = int((run.eval.size() - 1) / std::size_t(run.eval_len));
  if (available < 1)
    fail<lmshrink::value_error>("lmshrink_compress", "'", o.eval, "' has ", run.eval.size(),
                                " tokens; one window needs ", run.eval_len + 1);
  run.eval_windows = o.eval_windows > 0 ? std::min(o.eval_windows, available) : available;
  run.length = o.length > 0 ? o.length : run.context;
  if (run.length > c.seq_len)
    fail<lmshrink::value_error>("lmshrink_compress", "--length ", run.length,
                                " exceeds the model's seq_len ", c.seq_len);
  if (o.keep_rule == "distilgpt2") o.keep = lmshrink::distilgpt2_layers(c.n_layers);
  else if (o.keep_rule == "every-other") o.keep = lmshrink::every_other_layer(c.n_layers);
  bool any_trunc = false;
  for (Method m : o.methods) any_trunc |= info(m).start == StudentStart::truncated;
  if (any_trunc) lmshrink::validate_selection(o.keep, c.n_layers);
  for (Method m : o.methods) run.any_oats |= info(m).init == LayerInit::sparse_plus_low_rank;
  // The run's outputs land as a set: written into a folder beside --out, swapped in at the end.
  // A failed run leaves the previous outputs as they were; a killed one leaves the folder,
  // which the next run removes.
  if (run.team->leader()) {
    run.staged.emplace("lmshrink_compress", o.out);
    examples::prepare_output_directory("lmshrink_compress", run.staged->path() + "/checkpoints");
  }
  check_same_inputs(*run.team, argc, argv, *run.teacher, *run.codec, run.eval);
}

/// From this many teacher parameters on, the job says how to get huge pages when it would not.
constexpr std::int64_t kHugePagesHintFrom = 100'000'000;

/// True when transparent huge pages are given only on request (madvise) and glibc has not been
/// told to request them: a large job then page-faults on every 4 KiB of every large matrix it
/// allocates afresh (docs/performance.md measured about 2x on the whitened initialisation).
bool huge_pages_not_requested() {
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables != nullptr && std::strstr(tunables, "glibc.malloc.hugetlb") != nullptr) return false;
  std::ifstream thp("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string mode;
  std::getline(thp, mode);
  return mode.find("[madvise]") != std::string::npos;
}

/// The width the default learning rates were tuned at (stories260K's).
constexpr int kRateWidth = 64;

/// One student per method and ratio (one per method without a ratio), and the budget in steps.
void plan_students(Run& run) {
  Options& o = run.o;
  for (Method m : o.methods)
    for (double r : info(m).has_ratio ? o.ratios : std::vector<double>{0.0}) {
      Job j;
      j.method = m;
      j.ratio = r;
      if (m == Method::trunc_kd) j.loss = o.trunc_loss;
      if (m == Method::oats && o.oats_allocation != OatsAllocation::uniform)
        j.label = std::string("oats-") + name(o.oats_allocation);
      run.jobs.push_back(j);
    }
  const lmshrink::models::ModelShape& c = run.c;
  std::printf("lmshrink_compress: %s (%s, dim %d, %d layers, %d heads/%d kv, vocab %d, %lld parameters)\n",
              o.model.c_str(), run.teacher->family().c_str(), c.dim, c.n_layers, c.n_heads, c.n_kv_heads,
              c.vocab_size, static_cast<long long>(run.teacher->parameters()));
  std::printf("tokenizer: %s\n", run.codec->description().c_str());
  if (run.teacher->parameters() >= kHugePagesHintFrom && huge_pages_not_requested())
    std::printf("hint: transparent huge pages are given on request only here; GLIBC_TUNABLES=glibc.malloc.hugetlb=1 "
                "makes glibc request them (about 1.4-2x faster at these sizes, docs/performance.md)\n");
  if (o.scale_lr_by_width && c.dim > kRateWidth) {  // the defaults were tuned at width 64
    // (64/width)²: 1/width (μP's rule for Adam) still let the loss rise twentyfold in 20 steps
    // on GPT-2 small's shapes (docs/compress.md).
    const double scale = std::pow(double(kRateWidth) / double(c.dim), 2.0);
    o.lr *= scale;
    for (auto& rate : o.method_lr) rate.second *= scale;
    std::printf("learning rates: the defaults times (%d/%d)^2 = %.3g for the teacher's width (--lr or --method-lr "
                "to set them)\n", kRateWidth, c.dim, scale);
  }
  const std::int64_t per_step = std::int64_t(o.batch) * run.length;
  if (o.tokens > 0 && o.tokens < per_step)
    fail<lmshrink::value_error>("lmshrink_compress", "--tokens ", o.tokens, " is less than one step of --batch ", o.batch,
                                " x ", run.length, " = ", per_step, " tokens; give at least ", per_step,
                                " or a smaller --batch or --length");
  if (o.tokens / per_step >= (1 << 24))
    fail<lmshrink::value_error>("lmshrink_compress", "--tokens ", o.tokens, " is more than 2^24 steps of ", per_step,
                                " tokens");
  run.steps = o.tokens > 0 ? int((o.tokens + per_step - 1) / per_step) : o.steps;
  run.data_windows = o.data_windows > 0 ? o.data_windows : std::max(1, run.steps * o.batch / 2);
  for (const Job& j : run.jobs) check_job(o, j, *run.teacher, run.steps);  // before any work
  const std::size_t train_need = std::size_t(run.data_windows) * std::size_t(run.length) + 1;
  const std::size_t val_need = std::size_t(o.val_windows) * std::size_t(run.eval_len) + 1;
  if (!o.train_text.empty() && run.train_text.size() < train_need)
    fail<lmshrink::value_error>("lmshrink_compress", "--train-text '", o.train_text, "' has ", run.train_text.size(),
                                " tokens; ", run.data_windows, " windows of ", run.length, " need ", train_need,
                                " (fewer --data-windows, or more text)");
  if (!o.val_text.empty() && run.val_text.size() < val_need)
    fail<lmshrink::value_error>("lmshrink_compress", "--val-text '", o.val_text, "' has ", run.val_text.size(),
                                " tokens; ", o.val_windows, " windows of ", run.eval_len, " need ", val_need,
                                " (fewer --val-windows, or more text)");
  std::string processes;
  if (run.team->size() > 1) processes = std::to_string(run.team->size()) + " processes x ";
  std::printf("%zu students x %d steps x %d x %d tokens (%lld tokens each), %s%d threads, %d shards per batch, seed %llu, output %s\n\n",
              run.jobs.size(), run.steps, o.batch, run.length, static_cast<long long>(run.steps * per_step),
              processes.c_str(), run.threads, run.shards, static_cast<unsigned long long>(o.seed), o.out.c_str());
}

/// The teacher on the held-out stories (nothing when --no-heldout).
Score score_teacher(const Run& run) {
  Score score;
  if (!run.o.heldout) return score;
  examples::Progress bar("teacher  ", 1);
  bar.update(0, "scoring " + std::to_string(run.eval_windows) + " windows");
  score = evaluate(decoders_of(*run.teacher), run.eval, run.eval_windows, run.eval_len, run.threads, run.team);
  char text[160];
  std::snprintf(text, sizeof text, "NLL %.4f, perplexity %.4f, top-1 %.4f over %ld tokens", score.nll, score.ppl,
                score.top1, score.tokens);
  bar.finish(text);
  return score;
}

/// Training and validation text from the teacher, each from its own seed, disjoint, and the same
/// on every process.
struct Texts {
  std::vector<int> train, val;
};

/// The folder of cached teacher text: --text-cache, "text-cache" beside --out by default, or
/// none ("off").
std::string text_cache_dir(const Options& o) {
  if (o.text_cache == "off") return "";
  if (!o.text_cache.empty()) return o.text_cache;
  const std::filesystem::path out = std::filesystem::path(o.out).lexically_normal();
  const std::filesystem::path parent = out.has_filename() ? out.parent_path() : out.parent_path().parent_path();
  return (parent / "text-cache").string();
}

/// `need` tokens of stories from the teacher at `seed`: those cached (rank 0 reads the file, every
/// rank parses the same bytes), then the rest sampled, and the cache rewritten when it grew.
std::vector<examples::Story> teacher_stories(const Run& run, std::size_t need, std::uint64_t seed, const char* what,
                                             examples::Progress& bar, double done) {
  examples::StoryOptions so;
  so.context = run.context;
  so.max_tokens = run.o.story_tokens;
  const std::string dir = text_cache_dir(run.o);
  const int cap = examples::story_cap(*run.teacher, so);
  std::uint64_t key = 0;
  std::string path;
  std::vector<examples::Story> cached;
  if (!dir.empty()) {
    key = examples::text_key(*run.teacher, *run.codec, seed, so);
    path = examples::text_cache_path(dir, key);
    std::vector<char> bytes;
    std::string problem;
    if (run.team->leader()) {
      std::error_code error;
      if (std::filesystem::exists(path, error)) {
        try {
          bytes = lmshrink::read_file_bytes("lmshrink_compress", path, 0, "a text cache", std::int64_t(1) << 38,
                                            "more than a text cache may hold");
        } catch (const lmshrink::error& e) {
          problem = e.what();
        }
      }
    }
    run.team->broadcast_bytes(bytes);
    if (!bytes.empty()) {
      examples::CachedText c = examples::parse_cached_text(bytes, key, cap, run.codec->vocab_size());
      cached = std::move(c.stories);
      problem = c.problem;
    }
    if (!problem.empty()) bar.print("  text cache '" + path + "' not used: " + problem + "; sampling again");
  }
  const std::size_t from_cache = cached.size();
  auto stories = examples::sample_stories(*run.teacher, *run.codec, need, seed, run.threads,
                                          [&](std::size_t have, std::size_t n) {
    bar.update(done + double(std::min(have, need)), std::to_string(n) + " " + what + " stories");
  }, run.team, so, std::move(cached));
  if (!path.empty() && run.team->leader() && stories.size() > from_cache)
    examples::write_cached_text(path, key, cap, stories);
  if (from_cache > 0)
    bar.print("  " + std::string(what) + " text: " + std::to_string(std::min(from_cache, stories.size())) +
              " stories from the cache '" + path + "'");
  return stories;
}

Texts generate_texts(const Run& run) {
  const Options& o = run.o;
  const std::size_t need = std::size_t(run.data_windows) * std::size_t(run.length) + 1;
  const std::size_t val_need = std::size_t(o.val_windows) * std::size_t(run.eval_len) + 1;
  Texts t;
  examples::Progress bar("generate ", double(need + val_need));
  std::vector<examples::Story> train_stories, val_stories;
  if (o.train_text.empty()) train_stories = teacher_stories(run, need, o.seed, "training", bar, 0);
  if (o.val_text.empty()) val_stories = teacher_stories(run, val_need, o.val_seed, "validation", bar, double(need));
  examples::check_disjoint(train_stories, val_stories);  // (text files are the user's to keep apart)
  t.train = o.train_text.empty() ? examples::concatenate(train_stories) : run.train_text;
  t.val = o.val_text.empty() ? examples::concatenate(val_stories) : run.val_text;
  char text[200];
  std::snprintf(text, sizeof text, "training %zu tokens (%d windows of %d)%s, validation %zu tokens (%d windows of %d)%s",
                t.train.size(), run.data_windows, run.length, o.train_text.empty() ? "" : " from --train-text",
                t.val.size(), o.val_windows, run.eval_len, o.val_text.empty() ? "" : " from --val-text");
  bar.finish(text);
  run.team->check_same("training text", {{t.train.data(), t.train.size() * sizeof(int)}});
  run.team->check_same("validation text", {{t.val.data(), t.val.size() * sizeof(int)}});
  return t;
}

/// The calibration statistics of every distinct linear-layer input of the teacher, over the
/// first --calib-windows training windows.
Calibration calibrate(const Run& run, const Texts& texts) {
  const int windows = std::min(run.o.calib_windows, run.data_windows);
  examples::Progress bar("calibrate", double(windows));
  Calibration calib = lmshrink::models::collect_calibration(*run.teacher, texts.train, run.length, windows,
                                                            examples::thread_team(run.threads), [&](int done, int total) {
    bar.update(double(done), std::to_string(done) + " of " + std::to_string(total) + " windows");
  }, run.calibration_nets);
  char text[160];
  std::snprintf(text, sizeof text, "%d windows of %d tokens, %zu Gram matrices (%.1f MiB)", windows, run.length,
                calib.distinct_inputs(), double(calib.bytes()) / 1048576.0);
  bar.finish(text);
  return calib;
}

/// What every student shares: the options, the teacher, the texts, the calibration statistics
/// and the folder being written.
void share_inputs(Run& run, const Texts& texts, Calibration& calib, Shared& sh) {
  const Options& o = run.o;
  sh.opt = &o;
  sh.teacher = run.teacher.get();
  sh.train = &texts.train;
  sh.windows = run.data_windows;
  sh.length = run.length;
  sh.eval = &run.eval;
  sh.eval_windows = run.eval_windows;
  sh.eval_len = run.eval_len;
  sh.context = run.context;
  sh.val = &texts.val;
  sh.val_windows = o.val_windows;
  sh.calib = &calib;
  sh.owned_calib = &calib;
  sh.steps = run.steps;
  sh.codec = run.codec.get();
  sh.team = run.team;
  sh.out_dir = run.staged ? run.staged->path() : o.out;
  sh.shards = run.shards;
  sh.recompute = run.recompute;
  sh.steps_total = long(run.jobs.size()) * run.steps;
  sh.status.assign(std::size_t(run.threads), "");
}

/// A student's line under the progress bar: its size, validation and held-out NLL, time.
std::string student_line(const Result& r, bool heldout) {
  char line[256];
  std::snprintf(line, sizeof line,
                "  %-14s %8lld params  linear %.3f  validation NLL %.4f (%.4f before fine-tuning)",
                job_name(r.job).c_str(), static_cast<long long>(r.parameters),
                double(r.linear_live) / double(r.linear_dense), r.val_score.nll, r.val_init_score.nll);
  std::string text = line;
  if (heldout) {
    std::snprintf(line, sizeof line, "  held-out NLL %.4f  ppl %7.3f", r.score.nll, r.score.ppl);
    text += line;
  }
  std::snprintf(line, sizeof line, "  (initialisation %.0f s, training %.0f s)", r.init_seconds, r.train_seconds);
  text += line;
  if (r.exchanged_per_step > 0)
    text += "  " + std::to_string((r.exchanged_per_step + 512) / 1024) + " KiB of gradients received per step";
  return text;
}

/// The students. Side by side, one core each, while at least `threads` remain (no
/// synchronisation: the fastest use of the cores); the rest one at a time, each on all cores
/// (its shards in parallel). Results do not depend on the schedule: shards are fixed. Over
/// several processes, one at a time (each process runs its shards of every batch).
std::vector<Result> train_students(Run& run, const Texts& texts, Calibration& calib) {
  const Options& o = run.o;
  const std::vector<Job>& jobs = run.jobs;
  const int threads = run.threads;
  // Side by side only as the plan allows: as many as fit in memory.
  const std::size_t side_by_side =
      run.team->size() > 1 || run.side_by_side < 2 ? 0
      : o.schedule == StudentSchedule::students ? jobs.size()
      : run.side_by_side < threads                ? 0
                                                  : jobs.size() - jobs.size() % std::size_t(threads);
  Shared sh;
  share_inputs(run, texts, calib, sh);
  examples::TeacherOutputCache teacher_outputs(run.teacher_cache_bytes);
  sh.teacher_outputs = &teacher_outputs;
  std::atomic<int> calib_readers{int(jobs.size())};
  sh.calib_readers = &calib_readers;
  std::vector<Result> results(jobs.size());
  examples::Progress bar("train    ", double(sh.steps_total));
  sh.bar = &bar;
  std::atomic<std::size_t> next{0};
  std::string error;
  std::mutex error_mutex;
  const auto train_one = [&](std::size_t j, int worker, int job_threads) {
    try {
      {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error.empty()) return;
      }
      results[j] = run_job(jobs[j], sh, worker, job_threads);
      bar.print(student_line(results[j], o.heldout));
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (error.empty()) error = e.what();
    }
  };
#pragma omp parallel num_threads(threads)
  {
    const int worker = examples::thread_index();
    for (std::size_t j; (j = next++) < side_by_side;) train_one(j, worker, 1);
  }
  for (std::size_t j = side_by_side; j < jobs.size(); ++j) train_one(j, 0, threads);
  if (!error.empty()) throw std::runtime_error(error);
  const auto kept = teacher_outputs.stats();
  char text[200];
  std::snprintf(text, sizeof text, "done; the teacher ran on %lld shard batches, %lld read again (%.0f MiB kept)",
                static_cast<long long>(kept.misses), static_cast<long long>(kept.hits), double(kept.bytes) / 1048576.0);
  bar.finish(text);
  return results;
}

/// Generation speed, one model at a time, teacher and student alternating; medians. Timed by one
/// process, the others done. The teacher runs packed as its students are (every layer dense in
/// the compact form), so a ratio compares weights, not code paths. Returns the teacher's
/// tokens/s; each student's goes into its result.
double measure_speed(const Run& run, std::vector<Result>& results) {
  const Options& o = run.o;
  std::vector<double> teacher_times;
  if (o.speed_tokens > 0 && run.team->leader()) {
    const auto teacher_packed = run.teacher->pack();
    examples::Progress bar("speed    ", double(results.size()));
    const int reps = 7;
    for (std::size_t i = 0; i < results.size(); ++i) {
      // --speed-pack timed: the checkpoint packed again, each layer timed on this machine.
      std::shared_ptr<const lmshrink::models::Packed> student = results[i].compact;
      if (o.speed_pack_timed) {
        lmshrink::PackOptions timed = lmshrink::fastest_pack();
        timed.form = lmshrink::PackForm::timed;
        const std::string dir = run.staged ? run.staged->path() : o.out;
        student = examples::load_checkpoint(dir + "/" + results[i].checkpoint)->pack(timed);
      }
      std::vector<double> t_teacher, t_student;
      for (int r = 0; r < reps; ++r) {
        t_teacher.push_back(generation_seconds(decoders_of(*teacher_packed), *run.codec, o.speed_tokens, run.context));
        t_student.push_back(generation_seconds(decoders_of(*student), *run.codec, o.speed_tokens, run.context));
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
  return teacher_times.empty() ? 0 : o.speed_tokens / teacher_times[teacher_times.size() / 2];
}

/// What the run measured of the teacher.
struct TeacherScores {
  Score heldout, val;
  double tokens_per_s = 0;
  std::string sample;
};

/// The table (teacher first, then every student).
ResultTable result_table(const Run& run, const TeacherScores& teacher, const std::vector<Result>& results) {
  ResultTable table(run.o.heldout, run.o.speed_tokens > 0);
  Row t;
  t.teacher = true;
  t.method = "teacher";
  t.ratio = "1";
  t.parameters = run.teacher->parameters();
  t.bytes = 4 * run.teacher->parameters();
  t.val_nll = teacher.val.nll;
  t.heldout = teacher.heldout;
  t.tokens_per_s = teacher.tokens_per_s;
  t.checkpoint = path_for_results(run.o.model);
  t.sample = teacher.sample;
  table.add(t);
  for (const auto& r : results) {
    Row row;
    row.method = label(r.job);
    row.ratio = r.job.ratio > 0 ? std::to_string(r.job.ratio).substr(0, 4) : "-";
    row.parameters = r.parameters;
    row.bytes = r.bytes;
    row.index_bytes = r.index_bytes;
    row.linear_kept = double(r.linear_live) / double(r.linear_dense);
    row.val_nll = r.val_score.nll;
    row.val_before = r.val_init_score.nll;
    row.heldout = r.score;
    row.tokens_per_s = r.tokens_per_s;
    row.speedup = r.speedup;
    row.final_loss = r.final_loss;
    row.rank_min = r.rank_min;
    row.rank_max = r.rank_max;
    row.checkpoint = r.checkpoint;
    row.sample = r.sample;
    table.add(row);
  }
  return table;
}

/// Every student's training loss per step (training.csv), and each oats layer's fit per
/// iteration (init_errors.csv).
void curves_csv(const std::vector<Result>& results, std::ostringstream& training, std::ostringstream& init) {
  training << "method,ratio,step,loss\n";
  init << "method,ratio,layer,rank,sparse_entries,iteration,relative_output_error\n";
  init.precision(6);
  for (const auto& r : results) {
    const std::string ratio = r.job.ratio > 0 ? std::to_string(r.job.ratio).substr(0, 4) : "-";
    for (std::size_t s = 0; s < r.losses.size(); ++s)
      training << label(r.job) << ',' << ratio << ',' << s << ',' << r.losses[s] << '\n';
    for (const auto& [layer, fit] : r.init_errors) {
      init << label(r.job) << ',' << ratio << ',' << layer << ',' << fit.rank << ',' << fit.sparse_entries
           << ",0," << fit.low_rank_only_error << '\n';
      for (std::size_t t = 0; t < fit.relative_output_error.size(); ++t)
        init << label(r.job) << ',' << ratio << ',' << layer << ',' << fit.rank << ',' << fit.sparse_entries
             << ',' << t + 1 << ',' << fit.relative_output_error[t] << '\n';
    }
  }
}

/// Perplexity against parameters, a series per method and the teacher.
std::string perplexity_plot(const Run& run, const TeacherScores& teacher, const std::vector<Result>& results) {
  const bool heldout = run.o.heldout;
  examples::Plot plot;
  plot.title = heldout ? "Held-out perplexity vs parameters" : "Validation perplexity vs parameters";
  plot.x_label = "parameters";
  plot.y_label = "perplexity";
  for (const auto& m : kMethods) {
    examples::Series s;
    s.label = m.name;
    s.color = m.color;
    s.markers = true;
    for (const auto& r : results)
      if (r.job.method == m.method) {
        s.x.push_back(double(r.parameters));
        s.y.push_back(heldout ? r.score.ppl : std::exp(r.val_score.nll));
      }
    if (!s.x.empty()) plot.series.push_back(s);
  }
  examples::Series t;
  t.label = "teacher";
  t.color = "#000000";
  t.markers = true;
  t.x = {double(run.teacher->parameters())};
  t.y = {heldout ? teacher.heldout.ppl : std::exp(teacher.val.nll)};
  plot.series.push_back(t);
  plot.log_y = true;
  return plot.svg();
}

/// results.md, results.csv, training.csv, init_errors.csv (oats) and the plot into the staging
/// folder, then the folder swapped in for --out (rank 0). Returns the Markdown table.
std::string write_outputs(Run& run, const TeacherScores& teacher, const std::vector<Result>& results) {
  const Options& o = run.o;
  const ResultTable table = result_table(run, teacher, results);
  std::ostringstream training, init;
  curves_csv(results, training, init);
  std::ostringstream doc;
  doc << "# lmshrink_compress results\n\nModel `" << o.model << "`; held-out `" << o.eval << "`, "
      << run.eval_windows << " windows of " << run.eval_len << " tokens (" << teacher.heldout.tokens
      << " scored); validation: " << o.val_windows << " windows of teacher text (seed " << o.val_seed
      << "). Each student: " << run.steps << " steps x " << o.batch << " x " << run.length
      << " tokens of teacher-generated text (seed " << o.seed << "), peak lr " << o.lr;
  for (const auto& [m, lr] : o.method_lr) doc << " (" << name(m) << " " << lr << ")";
  doc << ". *linear kept*: live parameters of the linear layers over the teacher's. tokens/s: "
         "greedy generation of " << o.speed_tokens << " tokens, median of 7, one thread.\n\n"
      << table.markdown();
  if (!run.team->leader()) return table.markdown();
  const std::string dir = run.staged->path();
  write_text(dir + "/results.md", doc.str());
  write_text(dir + "/results.csv", table.csv());
  write_text(dir + "/training.csv", training.str());
  if (run.any_oats) write_text(dir + "/init_errors.csv", init.str());
  write_text(dir + "/perplexity_vs_parameters.svg", perplexity_plot(run, teacher, results));
  run.staged->commit([](const std::string& name) {  // what the user keeps beside the run's outputs
    for (const char* own : {"results.md", "results.csv", "training.csv", "init_errors.csv",
                            "perplexity_vs_parameters.svg", "checkpoints"})
      if (name == own) return false;
    return true;
  });
  return table.markdown();
}

/// Tokens of teacher text the cache already holds for `seed` (0 without a cache).
std::int64_t cached_tokens(const Run& run, std::uint64_t seed) {
  const std::string dir = text_cache_dir(run.o);
  if (dir.empty()) return 0;
  examples::StoryOptions so;
  so.context = run.context;
  so.max_tokens = run.o.story_tokens;
  const std::uint64_t key = examples::text_key(*run.teacher, *run.codec, seed, so);
  const auto cached = examples::read_cached_text(examples::text_cache_path(dir, key), key, *run.teacher, *run.codec, so);
  std::int64_t tokens = 0;
  for (const auto& story : cached.stories) tokens += std::int64_t(story.size());
  return tokens;
}

PlanInputs plan_inputs(const Run& run) {
  PlanInputs in;
  in.o = &run.o;
  in.teacher = run.teacher.get();
  in.jobs = &run.jobs;
  in.steps = run.steps;
  in.length = run.length;
  in.eval_len = run.eval_len;
  in.eval_windows = run.eval_windows;
  in.data_windows = run.data_windows;
  in.context = run.context;
  in.threads = run.threads;
  in.shards = run.shards;
  in.side_by_side = run.team->size() > 1 || run.o.schedule == StudentSchedule::shards ? 1 : run.threads;
  in.remainder_alone = run.o.schedule != StudentSchedule::students;
  in.calibrates = run.o.whitened || run.any_oats;
  in.recompute = run.o.recompute == Recompute::always;
  return in;
}

/// The plan, printed; a value_error with the numbers and the options that would fit when the
/// peak exceeds this machine's memory.
Plan plan_run(Run& run) {
  PlanInputs in = plan_inputs(run);
  if (run.o.train_text.empty()) in.cached_train_tokens = cached_tokens(run, run.o.seed);
  if (run.o.val_text.empty()) in.cached_val_tokens = cached_tokens(run, run.o.val_seed);
  if (run.o.recompute == Recompute::automatic) {
    // Students that keep one block's activations instead of every block's, when it takes that.
    PlanInputs memory_only = in;
    memory_only.timing = false;
    const Plan kept = make_plan(memory_only);
    in.recompute = kept.limit_bytes > 0 && double(kept.peak_bytes) * kPlanMemoryMargin > double(kept.limit_bytes);
  }
  const Plan plan = make_plan(in);
  std::printf("%s\n", plan.text().c_str());
  if (!plan.fits()) {
    // The first of: fewer sequences per step, shorter sequences, that fits.
    std::string fix;
    Options o = run.o;
    PlanInputs memory_only = in;
    memory_only.o = &o;
    memory_only.timing = false;
    memory_only.side_by_side = 1;
    for (int batch = o.batch; batch >= 1 && fix.empty(); batch /= 2)
      for (int length = run.length; length >= 32 && fix.empty(); length /= 2) {
        o.batch = batch;
        memory_only.length = length;
        memory_only.shards = std::min(run.shards, batch);
        if (make_plan(memory_only).fits())
          fix = "--batch " + std::to_string(batch) + " --length " + std::to_string(length) + " with one student at a time";
      }
    fail<lmshrink::value_error>("lmshrink_compress", "the plan needs ", double(plan.peak_bytes) / double(1 << 30),
                                " GiB at its peak but this machine has ", double(plan.limit_bytes) / double(1 << 30),
                                " GiB available; ", fix.empty() ? std::string("no smaller batch or length fits: a smaller model, fewer --methods, or more memory")
                                                                : "it would fit with " + fix);
  }
  run.side_by_side = plan.side_by_side;
  run.recompute = plan.recompute;
  run.calibration_nets = plan.calibration_nets;
  run.teacher_cache_bytes = plan.teacher_cache_bytes;
  return plan;
}

}  // namespace

int main(int argc, char** argv) {
  std::unique_ptr<examples::Team> team;
  try {
    team = examples::make_team(&argc, &argv);
    const auto wall0 = std::chrono::steady_clock::now();
    Run run;
    run.team = team.get();
    run.o = parse(argc, argv);
    Eigen::setNbThreads(1);  // parallel over windows, stories and students instead
    read_inputs(run, argc, argv);
    plan_students(run);
    const Plan plan = plan_run(run);
    if (run.o.plan_only) return 0;  // the staging folder goes unused
    std::vector<Plan::Phase> measured;
    auto phase_start = std::chrono::steady_clock::now();
    const auto lap = [&](const std::string& name) {
      const auto now = std::chrono::steady_clock::now();
      measured.push_back({name, std::chrono::duration<double>(now - phase_start).count()});
      phase_start = now;
    };

    // 1. The teacher; 2. its text; the calibration statistics of every linear layer's inputs.
    TeacherScores teacher;
    teacher.heldout = score_teacher(run);
    if (run.o.heldout) lap("teacher: held-out scoring");
    const Texts texts = generate_texts(run);
    lap("teacher: text generation");
    teacher.val = evaluate(decoders_of(*run.teacher), texts.val, run.o.val_windows, run.eval_len, run.threads, run.team);
    std::printf("teacher on validation text: NLL %.4f\n", teacher.val.nll);
    lap("teacher: validation scoring");
    Calibration calib = run.o.whitened || run.any_oats ? calibrate(run, texts) : Calibration{};
    if (run.o.whitened || run.any_oats) lap("calibration");

    // 3. The students; 4. their speed; 5. the outputs.
    std::vector<Result> results = train_students(run, texts, calib);
    lap("students");
    teacher.tokens_per_s = measure_speed(run, results);
    if (run.o.speed_tokens > 0) lap("generation speed");
    teacher.sample = sample_text(*run.codec, greedy(decoders_of(*run.teacher), *run.codec, run.o.sample_tokens,
                                                    run.context));
    const std::string table = write_outputs(run, teacher, results);
    if (!team->leader()) return 0;
    std::printf("\n%s\n", table.c_str());
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
    std::printf("wrote %s/results.md, results.csv, training.csv, %sperplexity_vs_parameters.svg and "
                "checkpoints/ in %s\n", run.o.out.c_str(), run.any_oats ? "init_errors.csv, " : "",
                examples::format_duration(wall).c_str());
    std::printf("against the plan:\n");
    double planned_total = 0, measured_total = 0;
    for (std::size_t i = 0; i < measured.size() && i < plan.phases.size(); ++i) {
      std::printf("  %-40s planned %10s, took %10s\n", plan.phases[i].name.c_str(),
                  examples::format_duration(plan.phases[i].seconds).c_str(),
                  examples::format_duration(measured[i].seconds).c_str());
      planned_total += plan.phases[i].seconds;
      measured_total += measured[i].seconds;
    }
    std::printf("  %-40s planned %10s, took %10s\n", "total", examples::format_duration(planned_total).c_str(),
                examples::format_duration(measured_total).c_str());
    std::printf("  %-40s planned %10.0f MiB, peak %7.0f MiB\n", "memory", double(plan.peak_bytes) / 1048576.0,
                double(peak_resident_bytes()) / 1048576.0);
    return 0;
  } catch (const std::exception& e) {
    if (team && team->size() > 1) {
      // Some ranks may be waiting for this one: name it and stop them all.
      std::fprintf(stderr, "lmshrink_compress (rank %d of %d): %s\n", team->rank(), team->size(), e.what());
      std::fflush(stderr);
      team->abort(1);
    }
    std::fprintf(stderr, "lmshrink_compress: %s\n", e.what());
    return 1;
  }
}
