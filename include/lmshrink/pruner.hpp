#pragma once
// The sparse-mask pruner of LoSparse over many layers: Taylor importance with windowed moving
// averages, the cubic schedule and one global threshold, deciding exactly as the reference does;
// plus per-layer thresholds, input-column and element granularity, and persistent masks.
//
//   lmshrink::PrunerOptions opt;
//   opt.schedule = {/*T=*/1000, /*t_i=*/100, /*t_f=*/200, /*p_final=*/0.1, /*ΔT=*/10};
//   lmshrink::Pruner<float> pruner(opt);
//   pruner.add("layers.0.wq", layer, grads);           // every layer whose S is pruned
//   for (g = 0; g < T; ++g) {
//     forward; grads.set_zero(); backward; optimizer.step(layer, grads);
//     pruner.after_optimizer_step(g);                  // after the step, before zeroing grads
//   }
//
// Only S is scored and pruned. The baselines use the same API: ITP is the pruner on a rank-0
// layer (S = W, make_dense_layer in low_rank_sparse_linear.hpp), low-rank only is a layer whose
// rows of S are all pruned (make_low_rank_only).

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "config.hpp"
#pragma push_macro("LMSHRINK_INSIDE_LIBRARY")
#define LMSHRINK_INSIDE_LIBRARY
#include "detail/read_file.hpp"
#pragma pop_macro("LMSHRINK_INSIDE_LIBRARY")
#include "errors.hpp"
#include "importance.hpp"
#include "io/safetensors.hpp"
#include "low_rank_sparse_linear.hpp"
#include "schedule.hpp"
#include "threshold.hpp"
#include "types.hpp"

LMSHRINK_NAMESPACE_BEGIN

enum class Granularity { rows, columns, elements };
/// global: one threshold over every layer's raw scores (the reference). per_layer: each layer
/// keeps the schedule's share. global_normalized: one threshold over scores divided by their
/// layer's weighted mean, so a layer's budget follows its relative, not absolute, importance.
enum class ThresholdScope { global, per_layer, global_normalized };
/// Which scores ranked the groups at a mask step.
enum class ScoreSource { importance, prior };
/// reference: masks zero S on mask steps only; pruned entries get gradients and may regrow in
/// between, as the LoSparse code does. persistent: masks are set on the layers, so gradients and
/// (with lmshrink's optimizers or LowRankSparseLinear::zero_masked) moments of pruned entries are
/// zero and masks only ever shrink.
enum class MaskMode { reference, persistent };

struct PrunerOptions {
  /// schedule.mask_interval is the reference's ΔT: the mask interval and the importance window.
  CubicSchedule schedule;
  /// importance.window must be 0 (the default here: take ΔT from the schedule) or equal to
  /// schedule.mask_interval; the pruner refuses two different ΔT.
  ImportanceOptions importance = {ImportanceKind::taylor, 0.85, 1.0, 0};
  Granularity granularity = Granularity::rows;
  ThresholdScope scope = ThresholdScope::global;
  MaskMode mode = MaskMode::reference;
  /// Every layer keeps at least this share of its S entries (its best groups), in [0, 1]; the
  /// rest of the budget is thresholded as usual, so the total kept is unchanged.
  double min_layer_keep = 0.0;
};

/// What one call to after_optimizer_step did.
struct PruneStep {
  Index step = 0;
  double keep = 1.0;    // the schedule's fraction of S entries to keep
  bool masked = false;  // whether masks were (re)computed at this step
  double threshold = -std::numeric_limits<double>::infinity();  // global scope only
  Index live_entries = 0;  // live S entries over all layers after this step
  Index entries = 0;       // all S entries
  /// prior when the importance scores could not rank the groups (all equal, e.g. all zero
  /// while a student still equals its teacher) and the layers' priors decided instead.
  ScoreSource source = ScoreSource::importance;
};

struct LayerAccount {
  std::string name;
  Index dense = 0;        // out·in
  Index low_rank = 0;     // r·(out + in)
  Index live_sparse = 0;  // S entries the masks keep
  /// Non-zero S entries now. In reference mode pruned entries get gradients and regrow between
  /// mask steps, so S can hold more than the masks keep until the next mask step zeroes them;
  /// right after a mask step (and always in persistent mode) held_sparse <= live_sparse.
  Index held_sparse = 0;
  Index live() const { return low_rank + live_sparse; }
};

/// Remaining weights, as in the paper: (low-rank + live S) over the dense weights; biases and
/// row indices not counted.
struct Accounting {
  std::vector<LayerAccount> layers;
  Index dense = 0, live = 0;
  Index held = 0;              // low-rank + non-zero S entries now (see LayerAccount::held_sparse)
  double achieved_ratio = 0;   // live / dense
  double low_rank_ratio = 0;   // Σ r·(out+in) / dense (≈ ρ; above it by the rank's ceil)
  double nominal_ratio = 0;    // ρ + p_final (ρ as given, or low_rank_ratio)
};

template <class Scalar_>
class Pruner {
 public:
  using Scalar = Scalar_;
  using Layer = LowRankSparseLinear<Scalar>;
  using Gradients = typename Layer::Gradients;
  using Matrix = RowMatrix<Scalar>;

  /// The largest optimizer step the pruner accepts (2^62): steps and their successors stay far
  /// from integer overflow.
  static constexpr Index kMaxStep = Index(1) << 62;

  explicit Pruner(const PrunerOptions& options) : options_(options) {
    validate(options_.schedule);
    if (options_.importance.window == 0) {
      options_.importance.window = options_.schedule.mask_interval;
    } else if (options_.importance.window != options_.schedule.mask_interval) {
      detail::fail<value_error>(
          "Pruner", "importance.window (", options_.importance.window,
          ") and schedule.mask_interval (", options_.schedule.mask_interval,
          ") are both the reference's ΔT and must agree; set importance.window = 0 to take it "
          "from the schedule");
    }
    validate(options_.importance);
    if (!(options_.min_layer_keep >= 0.0 && options_.min_layer_keep <= 1.0))
      detail::fail<value_error>("Pruner", "min_layer_keep must be in [0, 1], got ",
                                options_.min_layer_keep);
    if (options_.min_layer_keep > options_.schedule.final_keep)
      detail::fail<value_error>("Pruner", "min_layer_keep ", options_.min_layer_keep,
                                " exceeds the final share to keep ", options_.schedule.final_keep,
                                ": every layer cannot keep more than the whole budget");
  }

  const PrunerOptions& options() const { return options_; }

  /// Registers a layer whose S is pruned and the gradients the trainer's backward fills. Both must
  /// outlive the pruner. Call before the first after_optimizer_step.
  void add(const std::string& name, Layer& layer, const Gradients& grads) {
    static constexpr const char* where = "Pruner::add";
    if (last_step_ >= 0)
      detail::fail<state_error>(where, "layer '", name, "' added after step ", last_step_,
                                "; register every layer before the first step");
    for (const auto& e : entries_)
      if (e.name == name) detail::fail<value_error>(where, "a layer named '", name, "' was already added");
    if (layer.sparse_released())
      detail::fail<state_error>(where, "layer '", name, "' has released its S (release_sparse: every row "
                                "pruned); there is nothing left to prune");
    detail::check_shape(where, "grads.S", grads.S, layer.out_features(), layer.in_features());
    Entry e;
    e.name = name;
    e.layer = &layer;
    e.grads = &grads;
    e.tracker = ImportanceTracker<Scalar>(layer.out_features(), layer.in_features(),
                                          options_.importance);
    e.rows = layer.row_mask();
    e.element_masks = options_.granularity != Granularity::rows || layer.has_element_mask();
    e.elements = layer.has_element_mask()
                     ? layer.element_mask()
                     : ElementMask::Ones(layer.out_features(), layer.in_features());
    entries_.push_back(std::move(e));
  }

  /// A secondary score per group of layer i (rows: out values; columns: in; elements: out·in,
  /// row-major), finite and >= 0, e.g. row_output_energy(S, stats). It breaks ties of the
  /// importance scores, and ranks the groups alone when the importance scores are all equal
  /// (before any gradient, or with a zero gradient). Without priors such a tie throws.
  void set_prior(Index i, const Eigen::VectorXd& scores) {
    static constexpr const char* where = "Pruner::set_prior";
    Entry& e = entry_mut(i);
    const Index groups = group_count(e);
    if (scores.size() != groups)
      detail::fail<shape_error>(where, "layer '", e.name, "' has ", groups,
                                " groups but the prior has ", scores.size(), " values");
    for (Index g = 0; g < groups; ++g)
      if (!std::isfinite(scores[g]) || scores[g] < 0)
        detail::fail<value_error>(where, "prior value ", g, " of layer '", e.name, "' is ",
                                  scores[g], "; finite values >= 0 were expected");
    e.prior = scores;
  }

  /// Computes masks now for keeping a share `keep` of the S entries, from the current scores
  /// (or the priors, see set_prior): one-shot pruning before training, or a manual step.
  PruneStep mask(double keep) {
    static constexpr const char* where = "Pruner::mask";
    if (entries_.empty()) detail::fail<state_error>(where, "no layer was added");
    if (!(keep >= 0.0 && keep <= 1.0))
      detail::fail<value_error>(where, "keep must be in [0, 1], got ", keep);
    if (options_.min_layer_keep > keep)
      detail::fail<value_error>(where, "min_layer_keep ", options_.min_layer_keep,
                                " exceeds the share to keep ", keep, "; the budget cannot be met");
    PruneStep report;
    report.step = last_step_;
    report.keep = keep;
    report.masked = true;
    compute_masks(keep, report);
    count(report);
    return report;
  }

  Index layers() const { return static_cast<Index>(entries_.size()); }
  const std::string& name(Index i) const { return entry(i).name; }
  /// The pruner's row mask of layer i (rows granularity; all ones otherwise).
  const RowMask& row_mask(Index i) const { return entry(i).rows; }
  /// The pruner's element mask of layer i (columns and elements granularity; ones otherwise).
  const ElementMask& element_mask(Index i) const { return entry(i).elements; }
  const ImportanceTracker<Scalar>& importance(Index i) const { return entry(i).tracker; }
  Index last_step() const { return last_step_; }

  /// Scores after the optimizer step `step`, then masks if the schedule says so.
  PruneStep after_optimizer_step(Index step) {
    static constexpr const char* where = "Pruner::after_optimizer_step";
    if (entries_.empty()) detail::fail<state_error>(where, "no layer was added");
    if (step < 0 || step > kMaxStep)
      detail::fail<value_error>(where, "step must be in [0, 2^62], got ", step);
    if (last_step_ >= 0 && step != last_step_ + 1)
      detail::fail<state_error>(where, "step ", step, " follows step ", last_step_,
                                "; call once per optimizer step with consecutive steps");
    // An all-zero gradient is not rejected: it is legitimate (a student that starts equal to
    // its teacher has zero loss). Zeroing gradients before this call cannot be told apart from it;
    // the call order is documented instead.
    for (auto& e : entries_) {
      detail::check_shape(where, "S", e.layer->S(), e.tracker.rows(), e.tracker.cols());
      detail::check_shape(where, "grads.S", e.grads->S, e.tracker.rows(), e.tracker.cols());
    }
    for (auto& e : entries_) e.tracker.update(e.layer->S(), e.grads->S, step);
    last_step_ = step;

    const ScheduleStep s = cubic_schedule(options_.schedule, step);
    PruneStep report;
    report.step = step;
    report.keep = s.keep;
    report.masked = s.mask;
    if (s.mask) compute_masks(s.keep, report);
    count(report);
    return report;
  }

  /// Live parameters per layer and overall; rho is the nominal low-rank ratio (NaN: use the
  /// realised one).
  Accounting accounting(double rho = std::numeric_limits<double>::quiet_NaN()) const {
    Accounting a;
    Index low = 0;
    for (const auto& e : entries_) {
      LayerAccount l;
      l.name = e.name;
      l.dense = e.layer->out_features() * e.layer->in_features();
      l.low_rank = e.layer->rank() * (e.layer->out_features() + e.layer->in_features());
      l.live_sparse = e.live_entries();
      l.held_sparse = (e.layer->S().array() != Scalar(0)).count();
      a.dense += l.dense;
      a.live += l.live();
      a.held += l.low_rank + l.held_sparse;
      low += l.low_rank;
      a.layers.push_back(l);
    }
    if (a.dense > 0) {
      a.achieved_ratio = static_cast<double>(a.live) / static_cast<double>(a.dense);
      a.low_rank_ratio = static_cast<double>(low) / static_cast<double>(a.dense);
    }
    a.nominal_ratio = (std::isnan(rho) ? a.low_rank_ratio : rho) + options_.schedule.final_keep;
    return a;
  }

  /// Saves step, moving averages, window accumulators and masks, atomically, as safetensors:
  /// metadata "lmshrink.pruner_state: 1", the step, the scalar size and the layers' names in
  /// order; per layer "<name>.ema", ".window_mean", ".uncertainty" (when on), as the pruner's
  /// scalar, and ".rows", ".elements" as U8 masks.
  void save(const std::string& path) const {
    SafeTensors st;
    st.metadata["lmshrink.pruner_state"] = "1";
    st.metadata["lmshrink.scalar_bytes"] = std::to_string(sizeof(Scalar));
    st.metadata["lmshrink.step"] = std::to_string(last_step_);
    st.metadata["lmshrink.layers"] = std::to_string(entries_.size());
    const Dtype scalar = sizeof(Scalar) == 4 ? Dtype::f32 : Dtype::f64;
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      const Entry& e = entries_[i];
      st.metadata["lmshrink.layer." + std::to_string(i)] = e.name;
      const std::vector<std::int64_t> shape{e.tracker.rows(), e.tracker.cols()};
      st.put(e.name + ".ema", scalar, shape, e.tracker.ema().data());
      st.put(e.name + ".window_mean", scalar, shape, e.tracker.window_mean().data());
      if (e.tracker.uses_uncertainty()) st.put(e.name + ".uncertainty", scalar, shape, e.tracker.uncertainty().data());
      st.put(e.name + ".rows", Dtype::u8, {e.rows.size()}, e.rows.data());
      st.put(e.name + ".elements", Dtype::u8, shape, e.elements.data());
    }
    write_safetensors(st, path);
  }

  /// Restores a state saved by save() into a pruner with the same layers (names and shapes) and
  /// options; in persistent mode the masks are set on the layers again. The file may be no larger
  /// than the state of these layers; every field is checked before anything changes.
  void load(const std::string& path) {
    const std::vector<char> bytes = detail::read_file_bytes(
        "Pruner::load", path, 8, "an 8-byte header length", state_size_bound(),
        "larger than the state of the layers added");
    parse_state(bytes.data(), bytes.size(), path);
  }

  /// load() from a state held in memory; `source` names it in messages.
  void parse_state(const char* data, std::size_t size, const std::string& source = "<memory>") {
    static constexpr const char* where = "Pruner::load";
    const std::string& path = source;
    SafeTensors st;
    try {
      st = parse_safetensors(data, size, source);
    } catch (const format_error& e) {
      detail::fail<format_error>(where, "'", path, "' is not an lmshrink pruner state: ", e.what());
    }
    const auto meta = [&](const std::string& key) -> const std::string& {
      const auto it = st.metadata.find(key);
      if (it == st.metadata.end())
        detail::fail<format_error>(where, "'", path, "' has no metadata '", key, "'");
      return it->second;
    };
    // An integer metadata value, read whole; out-of-range values are the caller's to refuse.
    const auto integer = [&](const std::string& key) {
      const std::string& text = meta(key);
      std::int64_t v = 0;
      const auto [end, status] = std::from_chars(text.data(), text.data() + text.size(), v, 10);
      if (text.empty() || status != std::errc() || end != text.data() + text.size())
        detail::fail<format_error>(where, "'", path, "' has the metadata '", key, ": ", text,
                                   "'; an integer was expected");
      return v;
    };
    if (st.metadata.count("lmshrink.pruner_state") == 0 || st.metadata.at("lmshrink.pruner_state") != "1")
      detail::fail<format_error>(where, "'", path, "' is not an lmshrink pruner state (no "
                                 "'lmshrink.pruner_state: 1' metadata)");
    const std::int64_t scalar_size = integer("lmshrink.scalar_bytes");
    if (scalar_size != static_cast<std::int64_t>(sizeof(Scalar)))
      detail::fail<format_error>(where, "'", path, "' holds ", scalar_size,
                                 "-byte scalars but this pruner uses ", sizeof(Scalar));
    const std::int64_t step = integer("lmshrink.step");
    if (step < -1 || step > kMaxStep)
      detail::fail<format_error>(where, "'", path, "' has step ", step,
                                 "; -1 (no step yet) or a step in [0, 2^62] was expected");
    const std::int64_t count = integer("lmshrink.layers");
    if (count != static_cast<std::int64_t>(entries_.size()))
      detail::fail<format_error>(where, "'", path, "' holds ", count, " layers but ",
                                 entries_.size(), " were added");
    const Dtype scalar = sizeof(Scalar) == 4 ? Dtype::f32 : Dtype::f64;
    // The tensor `name` exactly as save() writes it: its dtype and shape, else a format_error.
    const auto stored = [&](const std::string& name, Dtype dtype,
                            const std::vector<std::int64_t>& shape) -> const StoredTensor& {
      const auto it = st.tensors.find(name);
      if (it == st.tensors.end())
        detail::fail<format_error>(where, "'", path, "' has no tensor '", name, "'");
      if (it->second.dtype != dtype || it->second.shape != shape)
        detail::fail<format_error>(where, "'", path, "': tensor '", name, "' is ",
                                   dtype_name(it->second.dtype), " ", detail::shape_text(it->second.shape),
                                   " but ", dtype_name(dtype), " ", detail::shape_text(shape),
                                   " was expected");
      return it->second;
    };
    struct Loaded {
      Matrix ema, wm, unc;
      RowMask rows;
      ElementMask elements;
    };
    std::vector<Loaded> loaded(entries_.size());
    std::size_t tensors = 0;
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      const auto& e = entries_[i];
      const std::string& name = meta("lmshrink.layer." + std::to_string(i));
      if (name != e.name)
        detail::fail<format_error>(where, "layer ", i, " is '", name, "' in '", path,
                                   "' but '", e.name, "' here");
      const std::int64_t rows = e.tracker.rows(), cols = e.tracker.cols();
      const bool unc = e.tracker.uses_uncertainty();
      if ((st.tensors.count(name + ".uncertainty") != 0) != unc)
        detail::fail<format_error>(where, "'", path, "' and this pruner disagree on uncertainty");
      Loaded& l = loaded[i];
      const auto get_m = [&](Matrix& m, const char* suffix, const char* what) {
        const StoredTensor& t = stored(name + suffix, scalar, {rows, cols});
        m.resize(rows, cols);
        if (m.size()) std::memcpy(m.data(), t.bytes.data(), t.bytes.size());
        for (Index k = 0; k < m.size(); ++k)
          if (!std::isfinite(m.data()[k]))
            detail::fail<format_error>(where, "'", path, "' has a non-finite ", what,
                                       " value in layer '", name, "'");
        ++tensors;
      };
      get_m(l.ema, ".ema", "ema");
      get_m(l.wm, ".window_mean", "window mean");
      if (unc) get_m(l.unc, ".uncertainty", "uncertainty");
      // Taylor and magnitude sensitivities are >= 0, and so are their averages; movement may
      // be negative. Uncertainty is a mean of absolute values. Before any step all are zero.
      const bool signed_scores = options_.importance.kind == ImportanceKind::movement;
      if (!signed_scores && ((l.ema.array() < 0).any() || (l.wm.array() < 0).any()))
        detail::fail<format_error>(where, "'", path, "' has negative importance in layer '", name,
                                   "', which Taylor and magnitude scores cannot produce");
      if (unc && (l.unc.array() < 0).any())
        detail::fail<format_error>(where, "'", path, "' has negative uncertainty in layer '", name, "'");
      if (step < 0 && ((l.ema.array() != 0).any() || (l.wm.array() != 0).any() ||
                       (unc && (l.unc.array() != 0).any())))
        detail::fail<format_error>(where, "'", path, "' has step -1 (no step yet) but non-zero "
                                   "importance in layer '", name, "'");
      const StoredTensor& row_mask = stored(name + ".rows", Dtype::u8, {rows});
      const StoredTensor& element_mask = stored(name + ".elements", Dtype::u8, {rows, cols});
      tensors += 2;
      l.rows.resize(rows);
      if (rows) std::memcpy(l.rows.data(), row_mask.bytes.data(), row_mask.bytes.size());
      l.elements.resize(rows, cols);
      if (l.elements.size()) std::memcpy(l.elements.data(), element_mask.bytes.data(), element_mask.bytes.size());
      if ((l.rows.array() > 1).any() || (l.elements.array() > 1).any())
        detail::fail<format_error>(where, "'", path, "' has mask values other than 0 and 1");
      if (!e.element_masks && (l.elements.array() != 1).any())
        detail::fail<format_error>(where, "'", path, "' has element masks in layer '", name,
                                   "', which a rows-granularity pruner without element masks "
                                   "never makes");
    }
    if (st.tensors.size() != tensors)
      for (const auto& [name, t] : st.tensors) {
        bool ours = false;
        for (const auto& e : entries_)
          for (const char* suffix : {".ema", ".window_mean", ".uncertainty", ".rows", ".elements"})
            ours = ours || name == e.name + suffix;
        if (!ours)
          detail::fail<format_error>(where, "'", path, "' holds the tensor '", name,
                                     "', which no layer of this pruner has");
      }
    // save() writes nothing after the tensors: bytes beyond them are not a state's.
    std::uint64_t header = 0;
    for (int i = 7; i >= 0; --i) header = (header << 8) | static_cast<unsigned char>(data[i]);
    std::uint64_t used = 8 + header;
    for (const auto& [name, t] : st.tensors) used += t.bytes.size();
    if (used != size)
      detail::fail<format_error>(where, "'", path, "' has ", size - used, " trailing bytes");
    // Everything checked: now change state.
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      auto& e = entries_[i];
      e.tracker.restore(loaded[i].ema, loaded[i].wm, loaded[i].unc, step);
      e.rows = loaded[i].rows;
      e.elements = loaded[i].elements;
      if (options_.mode == MaskMode::persistent) push_masks(e);
    }
    last_step_ = step;
  }

 private:
  /// The largest state of the layers added, with names of any length load() reads, so a state
  /// whose names differ is still read and reported by name: the data, and a JSON header of at
  /// most 64 KiB plus 16 KiB per layer (its name in the metadata and in five tensor entries).
  std::int64_t state_size_bound() const {
    std::int64_t n = 8 + (std::int64_t(64) << 10);
    for (const auto& e : entries_) {
      const std::int64_t entries = e.tracker.rows() * e.tracker.cols();
      n += (std::int64_t(16) << 10) + entries * std::int64_t(sizeof(Scalar)) * 3 + e.tracker.rows() + entries;
    }
    return n;
  }

  struct Entry {
    std::string name;
    Layer* layer = nullptr;
    const Gradients* grads = nullptr;
    ImportanceTracker<Scalar> tracker;
    RowMask rows;
    ElementMask elements;
    Matrix score;  // ema ∘ uncertainty, when uncertainty is on
    std::vector<WeightedScore> group_scores;  // from the last mask step
    std::vector<char> reserved;  // groups kept by min_layer_keep at the last mask step
    Eigen::VectorXd prior;       // set_prior's scores, or empty
    bool element_masks = false;  // false: rows granularity, every element of a live row is live
    Index live_entries() const {
      if (!element_masks) return (rows.array() != 0).count() * elements.cols();
      Index n = 0;
      for (Index i = 0; i < rows.size(); ++i)
        if (rows[i]) n += (elements.row(i).array() != 0).count();
      return n;
    }
  };

  const Entry& entry(Index i) const {
    if (i < 0 || i >= layers())
      detail::fail<value_error>("Pruner", "layer index ", i, " is outside [0, ", layers(), ")");
    return entries_[static_cast<std::size_t>(i)];
  }
  Entry& entry_mut(Index i) { return const_cast<Entry&>(entry(i)); }

  Index group_count(const Entry& e) const {
    switch (options_.granularity) {
      case Granularity::rows: return e.tracker.rows();
      case Granularity::columns: return e.tracker.cols();
      case Granularity::elements: return e.tracker.rows() * e.tracker.cols();
    }
    return 0;
  }

  void count(PruneStep& report) const {
    for (const auto& e : entries_) {
      report.live_entries += e.live_entries();
      report.entries += e.tracker.rows() * e.tracker.cols();
    }
  }

  /// One threshold per pool (all layers, or each layer), with the fallback to priors, the
  /// per-layer normalisation and the per-layer minimum.
  void compute_masks(double keep, PruneStep& report) {
    std::vector<std::vector<Entry*>> pools;
    if (options_.scope == ThresholdScope::per_layer) {
      for (auto& e : entries_) pools.push_back({&e});
    } else {
      pools.emplace_back();
      for (auto& e : entries_) pools.back().push_back(&e);
    }
    for (auto& members : pools) {
      for (Entry* e : members) pool_groups(*e);
      if (all_tied(members)) {
        const Index entries = pool_entries(members);
        const auto k = static_cast<Index>(std::floor(static_cast<double>(entries) * (1.0 - keep)));
        if (k > 0) use_priors(members, report);
      }
      if (options_.scope == ThresholdScope::global_normalized)
        for (Entry* e : members) normalise(*e);
      Index entries = 0;
      std::vector<WeightedScore> candidates;
      for (Entry* e : members) {
        reserve(*e);
        entries += e->tracker.rows() * e->tracker.cols();
        for (std::size_t g = 0; g < e->group_scores.size(); ++g)
          if (!e->reserved[g]) candidates.push_back(e->group_scores[g]);
      }
      const auto k = static_cast<Index>(std::floor(static_cast<double>(entries) * (1.0 - keep)));
      const Threshold t = select_threshold_count(std::move(candidates), k);
      if (options_.scope != ThresholdScope::per_layer) report.threshold = t.value;
      for (Entry* e : members) apply(*e, t);
    }
  }

  static Index pool_entries(const std::vector<Entry*>& members) {
    Index n = 0;
    for (const Entry* e : members) n += e->tracker.rows() * e->tracker.cols();
    return n;
  }

  static bool all_tied(const std::vector<Entry*>& members) {
    bool first = true;
    double value = 0;
    for (const Entry* e : members)
      for (const auto& g : e->group_scores) {
        if (first) value = g.score, first = false;
        else if (g.score != value) return false;
      }
    return true;
  }

  void use_priors(const std::vector<Entry*>& members, PruneStep& report) {
    for (const Entry* e : members)
      if (e->prior.size() == 0)
        detail::fail<state_error>(
            "Pruner", "the importance scores cannot rank the groups (all are equal, e.g. zero "
            "gradients while a student still equals its teacher) and layer '", e->name,
            "' has no prior; call set_prior (e.g. row_output_energy of S) or train with a loss "
            "whose gradient is not zero before pruning");
    for (Entry* e : members)
      for (std::size_t g = 0; g < e->group_scores.size(); ++g) {
        e->group_scores[g].score = e->prior[static_cast<Index>(g)];
        e->group_scores[g].secondary = 0;
      }
    report.source = ScoreSource::prior;
  }

  /// Divides the layer's scores by their weighted mean (when positive).
  static void normalise(Entry& e) {
    double sum = 0, sec = 0;
    Index weight = 0;
    for (const auto& g : e.group_scores) {
      sum += g.score * static_cast<double>(g.weight);
      sec += g.secondary * static_cast<double>(g.weight);
      weight += g.weight;
    }
    if (weight == 0) return;
    const double mean = sum / static_cast<double>(weight), mean_sec = sec / static_cast<double>(weight);
    for (auto& g : e.group_scores) {
      if (mean > 0) g.score /= mean;
      if (mean_sec > 0) g.secondary /= mean_sec;
    }
  }

  /// Marks the best groups holding at least min_layer_keep of the layer's entries.
  void reserve(Entry& e) const {
    e.reserved.assign(e.group_scores.size(), 0);
    if (options_.min_layer_keep <= 0) return;
    const auto need = static_cast<Index>(std::ceil(options_.min_layer_keep *
                                                   static_cast<double>(e.tracker.rows() * e.tracker.cols())));
    std::vector<std::size_t> order(e.group_scores.size());
    for (std::size_t g = 0; g < order.size(); ++g) order[g] = g;
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      const auto& x = e.group_scores[a];
      const auto& y = e.group_scores[b];
      return x.score > y.score || (x.score == y.score && x.secondary > y.secondary);
    });
    Index kept = 0;
    for (std::size_t g : order) {
      if (kept >= need) break;
      e.reserved[g] = 1;
      kept += e.group_scores[g].weight;
    }
  }

  /// The entry's score matrix: the ema itself, or ema ∘ uncertainty in scratch.
  const Matrix& scores(Entry& e) {
    if (!e.tracker.uses_uncertainty()) return e.tracker.ema();
    e.score.resize(e.tracker.rows(), e.tracker.cols());
    e.tracker.score(e.score);
    return e.score;
  }

  /// The entry's group scores (rows, columns or elements), with its prior as the tie-breaker.
  void pool_groups(Entry& e) {
    const Matrix& sc = scores(e);
    e.group_scores.clear();
    switch (options_.granularity) {
      case Granularity::rows: row_means<Scalar>(sc, e.group_scores); break;
      case Granularity::columns: column_means<Scalar>(sc, e.group_scores); break;
      case Granularity::elements: element_scores<Scalar>(sc, e.group_scores); break;
    }
    if (e.prior.size() != 0)
      for (std::size_t g = 0; g < e.group_scores.size(); ++g)
        e.group_scores[g].secondary = e.prior[static_cast<Index>(g)];
  }

  /// Masks the groups the threshold prunes, except reserved ones (scores from pool_groups()).
  void apply(Entry& e, const Threshold& t) {
    const bool keep_old = options_.mode == MaskMode::persistent;
    const Index rows = e.tracker.rows(), cols = e.tracker.cols();
    const auto live = [&](Index group) {
      const auto g = static_cast<std::size_t>(group);
      return e.reserved[g] || !t.prunes(e.group_scores[g]);
    };
    switch (options_.granularity) {
      case Granularity::rows:
        for (Index i = 0; i < rows; ++i) e.rows[i] = (live(i) && (!keep_old || e.rows[i])) ? 1 : 0;
        break;
      case Granularity::columns:
        for (Index j = 0; j < cols; ++j) {
          const bool l = live(j);
          for (Index i = 0; i < rows; ++i)
            e.elements(i, j) = (l && (!keep_old || e.elements(i, j))) ? 1 : 0;
        }
        break;
      case Granularity::elements:
        for (Index i = 0; i < rows; ++i)
          for (Index j = 0; j < cols; ++j)
            e.elements(i, j) = (live(i * cols + j) && (!keep_old || e.elements(i, j))) ? 1 : 0;
        break;
    }
    if (options_.mode == MaskMode::persistent) {
      push_masks(e);
    } else {
      // The reference: zero the pruned entries of S now; they may regrow before the next mask.
      Matrix& s = e.layer->S();
      for (Index i = 0; i < rows; ++i) {
        if (!e.rows[i]) s.row(i).setZero();
        else if (e.element_masks)
          for (Index j = 0; j < cols; ++j)
            if (!e.elements(i, j)) s(i, j) = 0;
      }
    }
  }

  void push_masks(Entry& e) {
    e.layer->set_row_mask(e.rows);
    if (options_.granularity != Granularity::rows) e.layer->set_element_mask(e.elements);
  }

  PrunerOptions options_;
  std::vector<Entry> entries_;
  Index last_step_ = -1;
};

LMSHRINK_NAMESPACE_END
