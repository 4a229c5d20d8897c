#pragma once
// The main job's compression methods and training losses as tables: every name, its usage text,
// default learning rate, plot colour and what it does live here once. Options are decoded into
// Method and Loss values when parsed (options.cpp); the trainer reads a method's properties,
// never its name.

#include <lmshrink/errors.hpp>
#include <lmshrink/pruner.hpp>
#include <string>
#include <utility>
#include <vector>

namespace compress {

enum class Method { losparse, lowrank, itp, trunc_kd, trunc_lm, dense, losparse_elem, oats, scratch };

/// Where a method's student starts.
enum class StudentStart {
  teacher,    ///< a copy of the teacher
  truncated,  ///< the teacher's blocks --keep
  scratch,    ///< a dense model of the ratio's size, random weights
};

/// How a method's linear layers are initialised before training.
enum class LayerInit {
  none,                  ///< as they start (the teacher's, or random)
  svd_then_prune_s,      ///< U·V by (whitened) SVD at --lowrank-share of the budget; S pruned to the rest
  svd_low_rank_only,     ///< U·V alone by (whitened) SVD, the whole budget; S removed
  sparse_plus_low_rank,  ///< data-aware S (+ U·V), split by --oats-allocation, S's mask fixed
  prune_all,             ///< nothing moved: S (the whole weight) pruned to the budget
};

struct MethodInfo {
  Method method;
  const char* name;
  const char* help;  ///< for the usage text
  StudentStart start;
  LayerInit init;
  lmshrink::Granularity granularity;  ///< of S's mask (pruned or fixed)
  bool has_ratio;      ///< one student per --ratios entry; else one per run
  bool reconstructs;   ///< --reconstruct sequential applies
  double lr;           ///< default peak learning rate (--method-lr); 0: --lr
  const char* color;   ///< its series in perplexity_vs_parameters.svg
};

// In the plot's order.
inline constexpr MethodInfo kMethods[] = {
    {Method::losparse, "losparse", "U*V + S, S's rows pruned during training (LoSparse)",
     StudentStart::teacher, LayerInit::svd_then_prune_s, lmshrink::Granularity::rows, true, false,
     5e-3, "#d62728"},
    {Method::lowrank, "lowrank", "U*V alone, from the (whitened) SVD", StudentStart::teacher,
     LayerInit::svd_low_rank_only, lmshrink::Granularity::rows, true, true, 1e-2, "#1f77b4"},
    {Method::itp, "itp", "the weights' rows pruned during training (ITP)", StudentStart::teacher,
     LayerInit::prune_all, lmshrink::Granularity::rows, true, false, 1e-2, "#2ca02c"},
    {Method::trunc_kd, "trunc-kd", "the blocks --keep, distilled with --trunc-loss",
     StudentStart::truncated, LayerInit::none, lmshrink::Granularity::rows, false, false, 0, "#9467bd"},
    {Method::trunc_lm, "trunc-lm", "the blocks --keep, trained on the text alone",
     StudentStart::truncated, LayerInit::none, lmshrink::Granularity::rows, false, false, 0, "#8c564b"},
    {Method::dense, "dense",
     "the teacher fine-tuned with the same recipe and nothing removed (what fine-tuning alone costs)",
     StudentStart::teacher, LayerInit::none, lmshrink::Granularity::rows, false, false, 0, "#7f7f7f"},
    {Method::losparse_elem, "losparse-elem", "LoSparse with S pruned entry by entry",
     StudentStart::teacher, LayerInit::svd_then_prune_s, lmshrink::Granularity::elements, true, false,
     1e-2, "#ff7f0e"},
    {Method::oats, "oats",
     "data-aware S (+ L) fixed at initialisation, split by --oats-allocation (S alone by default), "
     "its values trained",
     StudentStart::teacher, LayerInit::sparse_plus_low_rank, lmshrink::Granularity::elements, true,
     true, 5e-3, "#e377c2"},
    {Method::scratch, "scratch",
     "a dense model of the ratio's size (FFN narrowed) trained by the same distillation from "
     "random weights (the floor)",
     StudentStart::scratch, LayerInit::none, lmshrink::Granularity::rows, true, false, 1e-2, "#17becf"},
};

/// Every method with a rate of its own, in table order: Options::method_lr's default.
inline std::vector<std::pair<Method, double>> default_method_lr() {
  std::vector<std::pair<Method, double>> rates;
  for (const auto& i : kMethods)
    if (i.lr > 0) rates.push_back({i.method, i.lr});
  return rates;
}

inline const MethodInfo& info(Method m) {
  for (const auto& i : kMethods)
    if (i.method == m) return i;
  lmshrink::fail<lmshrink::state_error>("compress::info", "a Method outside kMethods");
}
inline const char* name(Method m) { return info(m).name; }

/// The names of every method, "a, b or c", for messages.
inline std::string method_names() {
  std::string all;
  const std::size_t n = sizeof kMethods / sizeof kMethods[0];
  for (std::size_t i = 0; i < n; ++i)
    all += std::string(i == 0 ? "" : i + 1 == n ? " or " : ", ") + kMethods[i].name;
  return all;
}

/// The method called `text`, or null.
inline const MethodInfo* find_method(const std::string& text) {
  for (const auto& i : kMethods)
    if (text == i.name) return &i;
  return nullptr;
}

/// The training losses (docs/study.md): "recipe" is the main job's α·KL + (1 − α)·CE plus the
/// layer-wise hidden-state loss; the others are the distillation study's arms.
enum class Loss { recipe, lm, kl, kl_ce, triple, layerwise, annealing, reverse_kl, jsd };

struct LossInfo {
  Loss loss;
  const char* name;
  bool teacher;       ///< reads the teacher's logits
  bool block_hidden;  ///< adds the layer-wise loss on every block's output
};

inline constexpr LossInfo kLosses[] = {
    {Loss::recipe, "recipe", true, true},   {Loss::lm, "lm", false, false},
    {Loss::kl, "kl", true, false},          {Loss::kl_ce, "kl-ce", true, false},
    {Loss::triple, "triple", true, false},  {Loss::layerwise, "layerwise", true, true},
    {Loss::annealing, "annealing", true, false}, {Loss::reverse_kl, "reverse-kl", true, false},
    {Loss::jsd, "jsd", true, false},
};

inline const LossInfo& info(Loss l) {
  for (const auto& i : kLosses)
    if (i.loss == l) return i;
  lmshrink::fail<lmshrink::state_error>("compress::info", "a Loss outside kLosses");
}
inline const char* name(Loss l) { return info(l).name; }

inline std::string loss_names() {
  std::string all;
  for (const auto& l : kLosses) all += (all.empty() ? "" : ", ") + std::string(l.name);
  return all;
}

inline Loss parse_loss(const std::string& text) {
  for (const auto& i : kLosses)
    if (text == i.name) return i.loss;
  lmshrink::fail<lmshrink::value_error>("lmshrink_compress", "unknown loss '", text, "' (one of ",
                                        loss_names(), ")");
}

/// --svd: the truncated SVD of the initialisation's low-rank fits.
enum class SvdChoice {
  automatic,   ///< randomized where a layer's smaller side is >= kRandomizedSvdFrom, else exact
  exact,       ///< Eigen's divide-and-conquer SVD
  randomized,  ///< a range finder with 4 power iterations (lmshrink::SvdMethod::randomized)
};

/// --svd auto's threshold: below it the exact SVD costs little (docs/compress.md).
constexpr long kRandomizedSvdFrom = 1024;

/// How --oats-allocation splits an oats student's budget between U·V and S.
enum class OatsAllocation {
  uniform,       ///< every matrix --lowrank-share in U·V
  sparse,        ///< S alone: data-aware unstructured pruning
  attention_lr,  ///< U·V alone for attention, S alone for the MLP
  per_matrix,    ///< each matrix's budget and split from calibration
};

inline const char* name(OatsAllocation a) {
  switch (a) {
    case OatsAllocation::uniform: return "uniform";
    case OatsAllocation::sparse: return "sparse";
    case OatsAllocation::attention_lr: return "attention-lr";
    case OatsAllocation::per_matrix: return "per-matrix";
  }
  return "?";
}

/// --schedule: how students share the cores.
enum class StudentSchedule { automatic, students, shards };

/// --recompute: whether students keep every block's activations for the backward or run each
/// block's forward again in it (NetMode::recompute).
enum class Recompute { automatic, always, never };

}  // namespace compress
