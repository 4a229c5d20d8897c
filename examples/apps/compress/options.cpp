// lmshrink_compress: command-line options.
#include <initializer_list>
#include <sstream>
#include <utility>
#include <stdexcept>

#include "cli/option_parsing.hpp"
#include "compress.hpp"

namespace compress {
namespace {

const char* kUsageTemplate = R"(usage: lmshrink_compress [options]
  --model PATH          llama2.c checkpoint, or Hugging Face directory of a "llama", "qwen2"
                        or "gpt2" model (config.json + model.safetensors or shards; default:
                        bundled stories260K.bin)
  --tokenizer PATH      SentencePiece tokenizer.model, llama2.c tokenizer file, or a directory
                        with tokenizer.model or GPT-2's vocab.json + merges.txt (or encoder.json
                        + vocab.bpe) (default: those in the model's directory; for a model file,
                        or a directory with no tokenizer files, the bundled tok512.bin or GPT-2
                        files)
  --eval PATH           held-out tokens (.u16 stream) or text (stories separated by
                        <|endoftext|>, encoded with the README protocol) (default: the
                        bundled stories, as tok512's reference stream when the model uses
                        tok512, else as text)
  --parse-special       special-token text in --eval's stories is the special token (a
                        tokenizer.json's; by default it is text, docs/tokenizers.md)
  --out DIR             output folder (default: out/compress)
@METHODS@  --ratios LIST         remaining ratios of the linear weights (default: 0.5)
  --keep LIST           blocks kept by truncation (default: 0,2,4)
@TRUNC_LOSS@  --preset NAME         distilgpt2: trunc-kd of a GPT-2 to half its blocks, spread
                        evenly from the first to the last (12 blocks: 0,2,4,7,9,11), with the
                        triple loss (DistilGPT-2's recipe); distilgpt2-alternate: the same
                        with every other block (0,2,4,6,8,10). --methods, --keep and
                        --trunc-loss given too override it
  --tokens N            training tokens per student; steps = ceil(N / (batch * length))
                        (default: 327680, 160 steps of 4 x 512)
  --steps N             or the budget in optimizer steps
  --batch N             sequences per step (default: 4)
  --context N           positions used: held-out and validation windows, generated text and
                        samples, and the training length (default: the model's seq_len; Llama
                        3.x's 131,072 would need a 64 GiB attention matrix per window)
  --length N            training sequence length (default: the context)
  --data-windows N      distinct generated training windows (default: steps*batch/2)
  --eval-windows N      held-out windows scored (default: all)
  --no-heldout          score only the validation stream (for recipe studies)
  --val-windows N       validation windows of teacher text, scored for every student
                        (default: 64)
  --val-seed N          seed of the validation text; must differ from --seed (default: 7)
  --lr X                peak AdamW learning rate; alone, it sets every method's rate
                        (default: 0.005, and --method-lr's rates)
@METHOD_LR@  --embed-lr-scale X    learning rate of the embedding and norm gains relative to --lr;
                        0 freezes them (default: 1)
  --lowrank-share X     LoSparse, losparse-elem, oats: share of the budget in U*V, in (0, 1)
                        (default: 0.5)
  --oats-iterations N   oats: alternations of the low-rank fit and the threshold (default: 5)
  --oats-fit KIND       oats: the low-rank fit, scaled (SVD of W*diag(input RMS), as OATS) or
                        whitened (under the calibration Gram matrix) (default: whitened)
  --oats-refit on|off   oats: S's values by least squares under the Gram matrix (default: on)
  --oats-allocation KIND  oats: how the budget is split between U*V and S: uniform (every
                        matrix --lowrank-share in U*V), sparse (S alone: data-aware
                        unstructured pruning), attention-lr (U*V alone for attention,
                        S alone for the MLP) or per-matrix (each matrix's budget and split
                        chosen from calibration: the least summed squared output error)
                        (default: sparse)
  --reconstruct KIND    lowrank, oats: none (each layer fitted to the teacher's W under the
                        teacher's inputs) or sequential (block by block, each layer fitted in
                        closed form to reproduce the teacher's outputs from the inputs the
                        compressed student gives it, on the calibration windows) (default: none)
  --temperature X       distillation temperature (default: 1)
  --kd-alpha X          distillation loss a*KL + (1-a)*CE, a in [0, 1]; below 1 the CE
                        part gives Taylor importance a signal near the teacher (default: 0.5)
  --recovery-kd-alpha X the same mix at steps where no mask can change: after --prune-end, and
                        at every step of methods that prune nothing (default: 1, KL alone)
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
  --threads N           cores to use per process (default: all, divided by the number of
                        processes under mpirun)
  --shards N            each batch is split into N shards, trained in parallel when a
                        student has several threads or processes; results depend on N, never
                        on --threads or the number of processes (default: 2, or the number
                        of processes when more; at most --batch; a multiple of the number of
                        processes)
  --reduce KIND         under mpirun: exact (each batch's shard gradients added in shard order:
                        a running sum passed from rank to rank, then broadcast; the single
                        process's bits) or mpi (MPI_Allreduce: MPI's own order, equal within
                        rounding, not bit-identical) (default: exact)
  --schedule KIND       auto (students side by side, one core each, while at least
                        --threads remain; the rest one at a time on all cores), students
                        (always side by side) or shards (always one at a time) (default: auto)
  --seed N              generation seed (default: 20231)
  --speed-tokens N      tokens generated per speed measurement; 0 skips it, and
                        then results.csv is byte-identical between runs (default: 256)
  --sample-tokens N     length of the greedy sample in the table (default: 40)
)";


double parse_double(const char* flag, const std::string& s) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !std::isfinite(v))
    fail<lmshrink::value_error>("lmshrink_compress", flag, " expects a number, got '", s, "'");
  return v;
}

long parse_int(const char* flag, const std::string& s, long lo, long hi) {
  return examples::parse_int("lmshrink_compress", flag, s, lo, hi);
}

// The value of the choice named `s`; the message lists every name ("a, b or c").
template <class T>
T parse_choice(const char* flag, const std::string& s,
               std::initializer_list<std::pair<const char*, T>> choices) {
  std::string names;
  std::size_t i = 0;
  for (const auto& [name, value] : choices) {
    if (s == name) return value;
    names += (i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ") + std::string(name);
    ++i;
  }
  fail<lmshrink::value_error>("lmshrink_compress", flag, " must be ", names, ", got '", s, "'");
}

// Wraps `text` into lines of at most 90 columns, each after `indent` spaces.
std::string wrapped(const std::string& text, std::size_t indent) {
  std::string out, line;
  std::istringstream words(text);
  std::string word;
  while (words >> word) {
    if (!line.empty() && indent + line.size() + 1 + word.size() > 90) {
      out += std::string(indent, ' ') + line + "\n";
      line.clear();
    }
    line += (line.empty() ? "" : " ") + word;
  }
  if (!line.empty()) out += std::string(indent, ' ') + line + "\n";
  return out;
}

void replace(std::string& text, const std::string& key, const std::string& by) {
  text.replace(text.find(key), key.size(), by);
}

// The usage text, its method and loss lists from the tables.
const std::string& usage() {
  static const std::string text = [] {
    std::string t = kUsageTemplate;
    std::string methods = "  --methods LIST        one or more of:\n";
    std::string defaults, rates, losses;
    for (const auto& m : kMethods) methods += wrapped(std::string(m.name) + ": " + m.help, 24);
    for (Method m : Options().methods) defaults += (defaults.empty() ? "" : ",") + std::string(name(m));
    methods += wrapped("(default: " + defaults + ")", 24);
    for (const auto& [m, lr] : default_method_lr()) {
      char r[64];
      std::snprintf(r, sizeof r, "%s=%g", name(m), lr);
      rates += (rates.empty() ? "" : ",") + std::string(r);
    }
    for (const auto& l : kLosses) losses += (losses.empty() ? "" : ", ") + std::string(l.name);
    replace(t, "@METHODS@", methods);
    replace(t, "@METHOD_LR@", "  --method-lr LIST      per-method peak learning rates overriding --lr\n" +
                                  wrapped("(default: " + rates + ")", 24));
    replace(t, "@TRUNC_LOSS@", "  --trunc-loss NAME     trunc-kd's loss (docs/study.md):\n" +
                                   wrapped(losses + " (default: recipe)", 24));
    return t;
  }();
  return text;
}

Method parse_method(const std::string& text) {
  if (const MethodInfo* m = find_method(text)) return m->method;
  fail<lmshrink::value_error>("lmshrink_compress", "unknown method '", text, "'; ", method_names(),
                              " was expected");
}

}  // namespace

Options parse(int argc, char** argv) {
  Options o;
  bool steps_given = false, tokens_given = false, lr_given = false, method_lr_given = false;
  bool methods_given = false, keep_given = false, trunc_loss_given = false;
  std::string preset;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf("%s", usage().c_str());
      std::exit(0);
    }
    if (a == "--no-heldout") {
      o.heldout = false;
      continue;
    }
    if (a == "--parse-special") {
      o.parse_special = true;
      continue;
    }
    if (i + 1 >= argc) fail<lmshrink::value_error>("lmshrink_compress", "unknown option or missing value: '", a, "'\n", usage());
    const std::string v = argv[++i];
    if (a == "--model") o.model = v;
    else if (a == "--tokenizer") o.tokenizer = v;
    else if (a == "--eval") o.eval = v;
    else if (a == "--out") o.out = v;
    else if (a == "--methods") {
      o.methods.clear();
      for (const auto& m : examples::split_list(v)) o.methods.push_back(parse_method(m));
      methods_given = true;
    } else if (a == "--trunc-loss") {
      o.trunc_loss = parse_loss(v);
      trunc_loss_given = true;
    } else if (a == "--preset") {
      if (v != "distilgpt2" && v != "distilgpt2-alternate")
        fail<lmshrink::value_error>("lmshrink_compress", "--preset must be distilgpt2 or distilgpt2-alternate, got '", v, "'");
      preset = v;
    }
    else if (a == "--ratios") {
      o.ratios.clear();
      for (const auto& r : examples::split_list(v)) o.ratios.push_back(parse_double("--ratios", r));
    } else if (a == "--keep") {
      keep_given = true;
      o.keep.clear();
      for (const auto& k : examples::split_list(v)) o.keep.push_back(int(parse_int("--keep", k, 0, 1 << 20)));
    } else if (a == "--steps") {
      o.steps = int(parse_int("--steps", v, 1, 1 << 24));
      steps_given = true;
    } else if (a == "--tokens") {
      o.tokens = parse_int("--tokens", v, 1, 1L << 40);
      tokens_given = true;
    }
    else if (a == "--batch") o.batch = int(parse_int("--batch", v, 1, 4096));
    else if (a == "--length") o.length = int(parse_int("--length", v, 2, 1 << 20));
    else if (a == "--context") o.context = int(parse_int("--context", v, 2, 1 << 20));
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
      for (const auto& item : examples::split_list(v)) {
        const auto eq = item.find('=');
        if (eq == std::string::npos)
          fail<lmshrink::value_error>("lmshrink_compress", "--method-lr expects method=rate items, got '", item, "'");
        const MethodInfo* m = find_method(item.substr(0, eq));
        if (m == nullptr)
          fail<lmshrink::value_error>("lmshrink_compress", "--method-lr names unknown method '",
                                      item.substr(0, eq), "'");
        o.method_lr.push_back({m->method, parse_double("--method-lr", item.substr(eq + 1))});
      }
    } else if (a == "--embed-lr-scale") o.embed_lr_scale = parse_double("--embed-lr-scale", v);
    else if (a == "--hidden-weight") o.hidden_weight = parse_double("--hidden-weight", v);
    else if (a == "--hidden-loss")
      o.hidden_loss = parse_choice<examples::HiddenLoss>(
          "--hidden-loss", v, {{"mse", examples::HiddenLoss::mse}, {"cosine", examples::HiddenLoss::cosine}});
    else if (a == "--init")
      o.whitened = parse_choice<bool>("--init", v, {{"plain", false}, {"whitened", true}});
    else if (a == "--calib-windows") o.calib_windows = int(parse_int("--calib-windows", v, 1, 1 << 20));
    else if (a == "--prune-start") o.prune_start = parse_double("--prune-start", v);
    else if (a == "--prune-end") o.prune_end = parse_double("--prune-end", v);
    else if (a == "--mask-mode")
      o.mask_mode = parse_choice<lmshrink::MaskMode>(
          "--mask-mode", v, {{"reference", lmshrink::MaskMode::reference},
                             {"persistent", lmshrink::MaskMode::persistent}});
    else if (a == "--allocation")
      o.allocation = parse_choice<lmshrink::ThresholdScope>(
          "--allocation", v, {{"global", lmshrink::ThresholdScope::global},
                              {"normalized", lmshrink::ThresholdScope::global_normalized},
                              {"per-layer", lmshrink::ThresholdScope::per_layer}});
    else if (a == "--min-layer-keep") o.min_layer_keep = parse_double("--min-layer-keep", v);
    else if (a == "--lowrank-share") o.lowrank_share = parse_double("--lowrank-share", v);
    else if (a == "--oats-iterations") o.oats_iterations = int(parse_int("--oats-iterations", v, 1, 1000));
    else if (a == "--oats-fit")
      o.oats_fit = parse_choice<lmshrink::LowRankFit>(
          "--oats-fit", v, {{"scaled", lmshrink::LowRankFit::scaled}, {"whitened", lmshrink::LowRankFit::whitened}});
    else if (a == "--oats-refit") o.oats_refit = parse_choice<bool>("--oats-refit", v, {{"on", true}, {"off", false}});
    else if (a == "--oats-allocation")
      o.oats_allocation = parse_choice<OatsAllocation>(
          "--oats-allocation", v, {{"uniform", OatsAllocation::uniform}, {"sparse", OatsAllocation::sparse},
                                   {"attention-lr", OatsAllocation::attention_lr},
                                   {"per-matrix", OatsAllocation::per_matrix}});
    else if (a == "--reconstruct")
      o.reconstruct = parse_choice<bool>("--reconstruct", v, {{"sequential", true}, {"none", false}});
    else if (a == "--reconstruct-damping") o.reconstruct_damping = parse_double("--reconstruct-damping", v);
    else if (a == "--temperature") o.temperature = parse_double("--temperature", v);
    else if (a == "--kd-alpha") o.kd_alpha = parse_double("--kd-alpha", v);
    else if (a == "--recovery-kd-alpha") o.recovery_kd_alpha = parse_double("--recovery-kd-alpha", v);
    else if (a == "--threads") o.threads = int(parse_int("--threads", v, 0, 1024));
    else if (a == "--shards") o.shards = int(parse_int("--shards", v, 1, 4096));
    else if (a == "--reduce")
      o.exact_sums = parse_choice<bool>("--reduce", v, {{"exact", true}, {"mpi", false}});
    else if (a == "--schedule")
      o.schedule = parse_choice<StudentSchedule>(
          "--schedule", v, {{"auto", StudentSchedule::automatic}, {"students", StudentSchedule::students},
                            {"shards", StudentSchedule::shards}});
    else if (a == "--speed-tokens") o.speed_tokens = int(parse_int("--speed-tokens", v, 0, 1 << 20));
    else if (a == "--sample-tokens") o.sample_tokens = int(parse_int("--sample-tokens", v, 1, 1 << 20));
    else if (a == "--seed") o.seed = std::uint64_t(parse_int("--seed", v, 0, (1L << 62)));
    else fail<lmshrink::value_error>("lmshrink_compress", "unknown option '", a, "'\n", usage());
  }
  for (double r : o.ratios)
    if (!(r > 0 && r < 1))
      fail<lmshrink::value_error>("lmshrink_compress", "ratio ", r,
                                  " is impossible: remaining ratios must be in (0, 1)");
  if (!(o.lr > 0 && o.lr < 1))
    fail<lmshrink::value_error>("lmshrink_compress", "--lr must be in (0, 1), got ", o.lr);
  for (const auto& [m, lr] : o.method_lr) {
    if (!(lr > 0 && lr < 1))
      fail<lmshrink::value_error>("lmshrink_compress", "--method-lr rate for ", name(m), " must be in (0, 1), got ", lr);
  }
  if (!(o.lowrank_share > 0 && o.lowrank_share < 1))
    fail<lmshrink::value_error>("lmshrink_compress", "--lowrank-share must be in (0, 1), got ", o.lowrank_share);
  if (!(o.kd_alpha >= 0 && o.kd_alpha <= 1))
    fail<lmshrink::value_error>("lmshrink_compress", "--kd-alpha must be in [0, 1], got ", o.kd_alpha);
  if (!(o.recovery_kd_alpha >= 0 && o.recovery_kd_alpha <= 1))
    fail<lmshrink::value_error>("lmshrink_compress", "--recovery-kd-alpha must be in [0, 1], got ", o.recovery_kd_alpha);
  if (!(o.temperature > 0))
    fail<lmshrink::value_error>("lmshrink_compress", "--temperature must be > 0, got ", o.temperature);
  if (!(o.reconstruct_damping >= 0) || !std::isfinite(o.reconstruct_damping))
    fail<lmshrink::value_error>("lmshrink_compress", "--reconstruct-damping must be a finite value >= 0, got ",
                                o.reconstruct_damping);
  if (!preset.empty()) {  // DistilGPT-2 (Sanh et al.): every other block of GPT-2, triple loss
    if (!methods_given) o.methods = {Method::trunc_kd};
    if (!keep_given) o.keep_rule = preset == "distilgpt2" ? "distilgpt2" : "every-other";
    if (!trunc_loss_given) o.trunc_loss = Loss::triple;
  }
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

int resolve_shards(const Options& o, int processes) {
  const int shards = o.shards > 0 ? o.shards : std::max(2, processes);
  if (processes == 1) return std::min(shards, o.batch);
  if (shards > o.batch)
    fail<lmshrink::value_error>("lmshrink_compress", "--batch ", o.batch, " cannot be split into ", shards,
                                " shards for ", processes, " processes; every shard needs a sequence");
  if (shards % processes != 0)
    fail<lmshrink::value_error>("lmshrink_compress", "--shards ", shards, " cannot be split evenly over ",
                                processes, " processes; use a multiple of ", processes);
  return shards;
}

}  // namespace compress
