#pragma once
// CompactLinear: the inference form of a trained LowRankSparseLinear.
//
//   auto compact = CompactLinear<float>::pack(layer);      // once, after pruning
//   auto ws = compact.make_workspace(max_tokens);
//   compact.forward(x, y, ws);                             // y = (x·Vᵀ)·Uᵀ + x·Sᵀ + b
//
// Storage: U and V, and the sparse part either as the kept rows of S stored contiguously with
// their row indices (structured pruning) or as compressed sparse rows (an element mask). Every
// method of the pruner has a form here: LoSparse (rank > 0, kept rows), low-rank only (no kept
// rows), ITP (rank 0, kept rows or CSR) and an unpruned dense layer (rank 0, all rows).
//
// The fused forward computes, per block of tokens, one product of x with V and the kept rows of
// S packed together ([t, s] = x·[V; S_kept]ᵀ: small ranks and few kept rows share panels instead
// of padding two), then y = t·Uᵀ + b written straight into y, then adds each kept row's s into
// its output column: no zero buffer, no dense S, and no allocation once the workspace is large
// enough. Without a low-rank part (rank 0, or an external GEMM) the kept rows' products go
// straight from the micro-kernel's registers into their columns. Weights are packed once into
// the panels the micro-kernel streams.
// forward_reference() is the naive loop the fast path is tested against. PackOptions::form picks
// what is stored: the trained form, the form of least modelled cost at an expected batch
// (PackForm::fastest) or of least time on this machine (PackForm::timed), or dense.
//
// Everything that selects code is a value, never a macro of the including file: the
// micro-kernels (PackOptions::kernel, chosen for the CPU at run time), an external GEMM for the
// low-rank products (PackOptions::low_rank_sgemm; lmshrink/onednn.hpp gives oneDNN's) and the
// threads (CompactForwardOptions::team; lmshrink/openmp.hpp gives OpenMP's). Translation units
// built with different flags therefore share one definition of every function here.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "config.hpp"
#pragma push_macro("LMSHRINK_INSIDE_LIBRARY")
#define LMSHRINK_INSIDE_LIBRARY
#include "detail/csr_kernel.hpp"
#include "detail/packed_gemm.hpp"
#pragma pop_macro("LMSHRINK_INSIDE_LIBRARY")
#include "errors.hpp"
#include "low_rank_sparse_linear.hpp"
#include "types.hpp"

LMSHRINK_NAMESPACE_BEGIN

/// How the sparse part of a compact layer is stored.
enum class SparseFormat {
  automatic,  ///< rows without an element mask, CSR with one
  rows,       ///< kept rows of S, contiguous, with their row indices
  csr,        ///< compressed sparse rows: the live entries of S only
};

/// Which micro-kernels compute a compact layer's float products (double layers always use the
/// portable ones). The SIMD kernels are compiled into every build on x86 with GCC or Clang and
/// run when the CPU has the instructions; no -m flag is needed.
enum class CompactKernel {
  automatic,  ///< the fastest this CPU runs: best_compact_kernel()
  portable,   ///< plain loops (the compiler vectorizes what its flags allow)
  avx2,       ///< AVX2 + FMA
  avx512,     ///< AVX-512F + FMA
};

inline const char* compact_kernel_name(CompactKernel kernel) {
  switch (kernel) {
    case CompactKernel::automatic: return "automatic";
    case CompactKernel::portable: return "portable";
    case CompactKernel::avx2: return "avx2";
    case CompactKernel::avx512: return "avx512";
  }
  return "unknown";
}

/// Whether this machine can run `kernel` (automatic and portable: always).
inline bool compact_kernel_supported(CompactKernel kernel) {
  switch (kernel) {
    case CompactKernel::avx2: return detail::cpu_supports(detail::Isa::avx2);
    case CompactKernel::avx512: return detail::cpu_supports(detail::Isa::avx512);
    default: return true;
  }
}

/// The fastest float kernel this machine runs.
inline CompactKernel best_compact_kernel() {
  if (compact_kernel_supported(CompactKernel::avx512)) return CompactKernel::avx512;
  if (compact_kernel_supported(CompactKernel::avx2)) return CompactKernel::avx2;
  return CompactKernel::portable;
}

/// An external single-precision GEMM for the low-rank products, row-major:
/// C (m×n, leading dimension ldc) = A (m×k, lda) · Bᵀ (B is n×k, ldb) + beta·C.
/// lmshrink/onednn.hpp provides oneDNN's (`lmshrink::onednn_sgemm`).
using LowRankSgemm = void (*)(Index m, Index n, Index k, const float* a, Index lda,
                              const float* b, Index ldb, float beta, float* c, Index ldc);

/// What CompactLinear::pack stores.
enum class PackForm {
  as_trained,  ///< U, V and the sparse part as the layer holds them, in PackOptions::format
  fastest,     ///< the least modelled cost at PackOptions::batch (compact_form_cost): as
               ///< trained, in rows or CSR, or dense
  dense,       ///< U·V + S as one matrix (rank 0, every row kept): to reproduce a stated choice
  timed,       ///< the least measured time at PackOptions::batch on this machine, among the
               ///< trained form in rows, in CSR (element masks) and dense (pack_fastest_of)
};

namespace detail {
// Rows the packed kernels compute for n rows: panels of 32, the last one 16 wide when 16 or
// fewer of its rows are real (detail/packed_gemm.hpp).
constexpr Index padded_panel_rows(Index n) {
  return n <= 0 ? 0 : 32 * (n / 32) + (n % 32 == 0 ? 0 : n % 32 <= 16 ? 16 : 32);
}
}  // namespace detail

/// compact_form_cost's units are packed multiply-adds per token, one per value a panel kernel
/// streams. Beside them: a forward call's fixed cost and each further product's, shared by the
/// call's tokens, and a CSR product's cost per live entry and per row for every block of
/// detail::kCsrTokenBlock tokens (a partial block costs as much as a full one). Fitted to
/// single-thread timings of every form at stories260K's and GPT-2 small's shapes, batch 1 to 512
/// (bench/bench_pack_forms.cpp, docs/compact.md): about 30 ns a call and 10 ns each further
/// product at one token, 15–26 packed values a CSR entry, and 40 a CSR row (30 to 60 fit the
/// small shapes' timings equally; CSR at 3 % density is slower than dense there at one token).
constexpr double kForwardCallCost = 1500.0;
constexpr double kProductCallCost = 500.0;
constexpr double kCsrEntryCost = 20.0;
constexpr double kCsrRowCost = 40.0;

/// The modelled cost of one token through a compact layer at `batch` tokens per forward call:
/// the rows of V and the kept rows of S are one product with x (panels of padded rows), U
/// another, CSR a third. A dense layer of the same shape is compact_form_cost(0, out, in, out,
/// 0, batch).
inline double compact_form_cost(Index rank, Index out, Index in, Index kept_rows,
                                Index csr_entries, Index batch = 1) {
  const double tokens = double(std::max<Index>(batch, 1));
  double values = 0, products = 0;
  if (rank + kept_rows > 0) {
    values += double(detail::padded_panel_rows(rank + kept_rows)) * double(in);
    products += 1;
  }
  if (rank > 0) {
    values += double(detail::padded_panel_rows(out)) * double(rank);
    products += 1;
  }
  if (csr_entries > 0) {
    const double blocks = std::ceil(tokens / double(detail::kCsrTokenBlock));
    // One token runs its own path: an entry costs kCsrEntryCost, not a block's share.
    const double entry_blocks = batch <= 1 ? 1.0 : blocks * double(detail::kCsrTokenBlock) / tokens;
    values += kCsrEntryCost * entry_blocks * double(csr_entries) + kCsrRowCost * double(out) * blocks / tokens;
    products += 1;
  }
  return values + (kForwardCallCost + kProductCallCost * std::max(products - 1, 0.0)) / tokens;
}

/// The form of a packed layer, by what it stores.
enum class CompactForm { dense, low_rank, low_rank_sparse, sparse };

inline const char* compact_form_name(CompactForm form) {
  switch (form) {
    case CompactForm::dense: return "dense";
    case CompactForm::low_rank: return "low-rank";
    case CompactForm::low_rank_sparse: return "low-rank + sparse";
    case CompactForm::sparse: return "sparse";
  }
  return "unknown";
}

struct PackOptions {
  SparseFormat format = SparseFormat::automatic;  ///< with PackForm::fastest: automatic only
  CompactKernel kernel = CompactKernel::automatic;
  /// Null: lmshrink's kernels compute x·Vᵀ and t·Uᵀ. Else this GEMM does, on row-major U and V
  /// (float layers only); the kept rows of S still use lmshrink's kernels.
  LowRankSgemm low_rank_sgemm = nullptr;
  PackForm form = PackForm::as_trained;
  /// With PackForm::fastest or timed: the tokens per forward call the form is chosen for (1:
  /// generation token by token; the full-sequence scoring of a window runs at its length).
  Index batch = 1;
  /// With PackForm::timed: timed rounds per candidate form (the median decides), each at least
  /// kTimedRoundSeconds of forward calls on one thread.
  int timing_repeats = 5;
};

/// The least time one round of PackForm::timed runs a candidate for (calls are repeated to fill
/// it, so that a call of a microsecond is not timed alone).
constexpr double kTimedRoundSeconds = 1e-3;
/// How much faster than dense a trained form must time for PackForm::timed to keep it: within
/// 3 % the two are inside one run's noise, and dense is never the slower choice.
constexpr double kTimedMargin = 0.03;

/// PackOptions for PackForm::fastest: how the model families pack a student.
inline PackOptions fastest_pack() {
  PackOptions o;
  o.form = PackForm::fastest;
  return o;
}

/// What PackForm::fastest stores for a layer at `batch` tokens per call: the form
/// (CompactLinear::form() of the result), the sparse format, whether U·V + S goes in as one
/// dense matrix, and the modelled costs of that choice and of the dense form.
struct PackChoice {
  CompactForm form = CompactForm::dense;
  SparseFormat format = SparseFormat::rows;
  bool densified = false;
  double cost = 0, dense_cost = 0;
  /// PackForm::timed: the chosen form's and the dense form's median seconds per call (0 when
  /// not timed: a layer that is dense as trained has nothing to time).
  double seconds = 0, dense_seconds = 0;
};

namespace detail {
// The form of the trained layer packed in `format` (rank r, `kept` rows or `entries` live
// entries of S).
inline CompactForm trained_form(Index r, Index out, bool csr, Index kept, Index entries) {
  const bool sparse_part = csr ? entries > 0 : kept > 0;
  if (r > 0) return sparse_part ? CompactForm::low_rank_sparse : CompactForm::low_rank;
  return !csr && kept == out ? CompactForm::dense : CompactForm::sparse;
}

// Kept rows (with a live entry) and live entries of a layer's S.
template <class Scalar>
void count_live(const LowRankSparseLinear<Scalar>& layer, Index& kept, Index& entries) {
  const auto& rm = layer.row_mask();
  const bool em = layer.has_element_mask();
  kept = 0;
  entries = 0;
  for (Index i = 0; i < layer.out_features(); ++i) {
    if (!rm[i]) continue;
    const Index live = em ? Index((layer.element_mask().row(i).array() != 0).count()) : layer.in_features();
    kept += live > 0;
    entries += live;
  }
}
}  // namespace detail

/// The choice of PackForm::fastest, without packing: the trained form in rows or CSR format,
/// whichever models cheaper, unless the dense form models cheaper still (the trained form wins
/// a tie: it stores fewer values). A function of the shapes, the rank, the masks and `batch`.
template <class Scalar>
PackChoice pack_choice(const LowRankSparseLinear<Scalar>& layer, Index batch = 1) {
  if (batch < 1)
    detail::fail<value_error>("lmshrink::pack_choice", "batch must be at least 1 token per call, got ", batch);
  const Index out = layer.out_features(), in = layer.in_features(), r = layer.rank();
  const bool em = layer.has_element_mask();
  Index kept = 0, entries = 0;
  detail::count_live(layer, kept, entries);
  PackChoice c;
  c.dense_cost = compact_form_cost(0, out, in, out, 0, batch);
  const double rows_cost = compact_form_cost(r, out, in, kept, 0, batch);
  const double csr_cost = compact_form_cost(r, out, in, 0, entries, batch);
  const bool csr = em && csr_cost < rows_cost;
  c.cost = csr ? csr_cost : rows_cost;
  if (c.cost > c.dense_cost) {
    c.densified = true;
    c.cost = c.dense_cost;
    return c;  // dense, in rows
  }
  c.format = csr ? SparseFormat::csr : SparseFormat::rows;
  c.form = detail::trained_form(r, out, csr, kept, entries);
  return c;
}

/// Threads for the parts of a forward: run(threads, body, context) calls body(context, t,
/// count) once on each of `count` ≤ threads threads (t = 0 .. count-1) and returns when all have
/// returned; barrier(), called by every one of them, returns when all have reached it.
/// lmshrink/openmp.hpp provides OpenMP's (`lmshrink::openmp_team()`).
struct ThreadTeam {
  void (*run)(int threads, void (*body)(void* context, int thread, int count), void* context) = nullptr;
  void (*barrier)() = nullptr;
};

struct CompactForwardOptions {
  /// Threads for one forward call. 1 (the default) runs on the calling thread; more needs a team.
  int threads = 1;
  ThreadTeam team;

  CompactForwardOptions(int threads_ = 1, ThreadTeam team_ = {})  // NOLINT: {threads} reads well
      : threads(threads_), team(team_) {}
};

template <class Scalar_>
class CompactLinear;
template <class Scalar>
std::vector<double> time_compact_forms(const std::vector<const CompactLinear<Scalar>*>& layers, Index batch,
                                       int repeats);
template <class Scalar, class SecondsOf>
CompactLinear<Scalar> pack_fastest_of(const LowRankSparseLinear<Scalar>& layer, const PackOptions& options,
                                      SecondsOf&& seconds_of, PackChoice* choice = nullptr);

template <class Scalar_>
class CompactLinear {
 public:
  using Scalar = Scalar_;
  using Matrix = RowMatrix<Scalar>;
  using VectorType = Vector<Scalar>;
  static_assert(std::is_floating_point<Scalar>::value,
                "lmshrink::CompactLinear<Scalar>: Scalar must be float or double");

  /// Scratch for forward(): x·Vᵀ for a block of tokens and, for CSR, a transposed input block.
  class Workspace {
   public:
    Workspace() = default;
    Index capacity_tokens() const { return capacity_tokens_; }

   private:
    friend class CompactLinear;
    detail::AlignedVector<Scalar> t_, xt_;
    Index capacity_tokens_ = 0;
  };

  CompactLinear() = default;

  /// Packs a trained layer. Rows of S pruned by the row mask are dropped; with
  /// SparseFormat::rows an element mask's pruned entries inside kept rows are stored as zeros,
  /// with SparseFormat::csr only live entries are stored.
  static CompactLinear pack(const LowRankSparseLinear<Scalar>& layer,
                            const PackOptions& options = {});

  // ---- description ---------------------------------------------------------------------------

  /// Dense (rank 0, every row stored in full), low-rank (no sparse part), low-rank + sparse, or
  /// sparse (rank 0, some rows or entries).
  CompactForm form() const {
    const bool sparse_part = format_ == SparseFormat::rows ? !kept_.empty() : !col_.empty();
    if (rank_ > 0) return sparse_part ? CompactForm::low_rank_sparse : CompactForm::low_rank;
    if (format_ == SparseFormat::rows && Index(kept_.size()) == out_) return CompactForm::dense;
    return CompactForm::sparse;
  }

  Index out_features() const { return out_; }
  Index in_features() const { return in_; }
  Index rank() const { return rank_; }
  bool has_bias() const { return bias_.size() > 0; }
  SparseFormat format() const { return format_; }
  /// The micro-kernels this layer runs (never automatic: resolved when packed).
  CompactKernel kernel() const { return kernel_; }
  /// True when an external GEMM computes the low-rank products (PackOptions::low_rank_sgemm).
  bool external_low_rank() const { return sgemm_ != nullptr; }
  /// Output rows with a stored sparse row (rows format), or with at least one entry (CSR).
  Index kept_rows() const {
    if (format_ == SparseFormat::rows) return static_cast<Index>(kept_.size());
    Index n = 0;
    for (Index i = 0; i < out_; ++i) n += row_ptr_[std::size_t(i + 1)] != row_ptr_[std::size_t(i)];
    return n;
  }
  /// Stored values of the sparse part (rows format: kept rows × in; CSR: live entries).
  Index sparse_values() const {
    return format_ == SparseFormat::rows ? static_cast<Index>(kept_.size()) * in_
                                         : static_cast<Index>(val_.size());
  }
  /// r·(out + in) + sparse values + bias.
  Index parameters() const { return rank_ * (out_ + in_) + sparse_values() + bias_.size(); }
  /// Bytes a forward pass reads for the weights: U, V, the sparse values, their indices and the
  /// bias (padding of the packed panels excluded).
  Index weight_bytes() const { return parameters() * Index(sizeof(Scalar)) + index_bytes(); }
  /// The part of weight_bytes() that is indices, not values: int32 row indices of the kept rows
  /// (rows format), or CSR's column indices and row pointers.
  Index index_bytes() const {
    const Index indices = format_ == SparseFormat::rows
                              ? static_cast<Index>(kept_.size())
                              : static_cast<Index>(col_.size() + row_ptr_.size());
    return indices * Index(sizeof(std::int32_t));
  }
  /// Output row of each stored sparse row (rows format; empty for CSR).
  const std::vector<std::int32_t>& kept_row_indices() const { return kept_; }

  /// U·V + S (the represented weight). Allocates; for checks.
  Matrix to_dense() const;

  // ---- forward -------------------------------------------------------------------------------

  /// A workspace for batches of up to max_tokens (forward grows a smaller one, once).
  Workspace make_workspace(Index max_tokens) const {
    Workspace ws;
    reserve(ws, max_tokens);
    return ws;
  }

  /// y (N, out) = (x·Vᵀ)·Uᵀ + x·Sᵀ + b for x (N, in). Overwrites y; y must not overlap x.
  void forward(ConstMatrixRef<Scalar> x, MatrixRef<Scalar> y, Workspace& ws,
               const CompactForwardOptions& options = {}) const {
    check_forward_args("CompactLinear::forward", x, y, options);
    run(x.rows(), x.data(), x.outerStride(), y.data(), y.outerStride(), ws, options);
  }

  /// Raw row-major buffers with leading dimensions (elements between rows).
  void forward(const Scalar* x, Index n, Index ldx, Scalar* y, Index ldy, Workspace& ws,
               const CompactForwardOptions& options = {}) const {
    static constexpr const char* where = "CompactLinear::forward";
    auto xm = detail::map_rows<Scalar>(where, "x", x, n, in_, ldx);
    auto ym = detail::map_rows_mut<Scalar>(where, "y", y, n, out_, ldy);
    check_forward_args(where, xm, ym, options);
    run(n, x, ldx, y, ldy, ws, options);
  }

  /// The naive loop the fused kernel is checked against: same result, accumulated in double.
  void forward_reference(ConstMatrixRef<Scalar> x, MatrixRef<Scalar> y) const;

 private:
  // PackForm::fastest (pack_choice) and PackForm::dense: the trained layer in the chosen format,
  // or U·V + S as one matrix.
  static CompactLinear pack_chosen(const LowRankSparseLinear<Scalar>& layer,
                                   const PackOptions& options);

  Scalar u_at(Index i, Index k) const {
    return sgemm_ != nullptr ? u_rows_[std::size_t(i * rank_ + k)] : u_.at(i, k);
  }
  Scalar v_at(Index k, Index j) const {
    return sgemm_ != nullptr ? v_rows_[std::size_t(k * in_ + j)]
                                              : x_panels_.at(k, j);
  }
  // Kept row j of S (rows format), column k.
  Scalar s_at(Index j, Index k) const { return x_panels_.at(v_rows_in_x_panels_ + j, k); }

  // Tokens per block. x·[V; S_kept]ᵀ runs over kTokenBlock tokens, so that each weight panel
  // read from L3 serves more tokens; t·Uᵀ and the kept rows then run over output_block() tokens
  // at a time, whose rows of y (about kOutputBytes) stay in L2 next to U. Chosen by A/B runs at
  // batch 512 on GPT-2 shapes (docs/performance.md).
  static constexpr Index kTokenBlock = 192;
  static constexpr Index kOutputBlock = 48;
  static constexpr Index kOutputBytes = 96 * 1024;

  // Columns of the workspace's t per token: [x·Vᵀ, x·S_keptᵀ] (no external GEMM, a rank), or
  // x·Vᵀ (external GEMM).
  Index t_width() const {
    if (sgemm_ != nullptr) return rank_;
    return rank_ > 0 ? x_panels_.rows : 0;
  }

  void reserve(Workspace& ws, Index tokens) const {
    const Index block = std::min(std::max<Index>(tokens, 1), kTokenBlock);
    const Index width = t_width();
    if (width > 0 && ws.t_.size() < std::size_t(block * width))
      ws.t_.resize(std::size_t(block * width));
    if (format_ == SparseFormat::csr && tokens > 1 &&
        ws.xt_.size() < std::size_t(in_ * detail::kCsrTokenBlock))
      ws.xt_.resize(std::size_t(in_ * detail::kCsrTokenBlock));
    ws.capacity_tokens_ = std::max(ws.capacity_tokens_, tokens);
  }

  template <class X, class Y>
  void check_forward_args(const char* where, const X& x, const Y& y,
                          const CompactForwardOptions& options) const {
    detail::check_input_width(where, x, in_);
    detail::check_shape(where, "y", y, x.rows(), out_);
    if (options.threads < 1)
      detail::fail<value_error>(where, "threads must be at least 1, got ", options.threads);
    if (options.threads > 1 && (options.team.run == nullptr || options.team.barrier == nullptr))
      detail::fail<state_error>(where, "threads = ", options.threads,
                                " needs a ThreadTeam with run and barrier in "
                                "CompactForwardOptions::team (OpenMP's: lmshrink/openmp.hpp, "
                                "lmshrink::openmp_team()), or threads = 1");
    if (x.rows() > 0) {
      const Scalar* x0 = x.data();
      const Scalar* x1 = x0 + (x.rows() - 1) * x.outerStride() + in_;
      const Scalar* y0 = y.data();
      const Scalar* y1 = y0 + (y.rows() - 1) * y.outerStride() + out_;
      if (x0 < y1 && y0 < x1)
        detail::fail<value_error>(where, "y overlaps x in memory; separate buffers were expected");
    }
  }

  void add_sparse_to(Matrix& w) const {
    if (format_ == SparseFormat::rows) {
      for (Index j = 0; j < Index(kept_.size()); ++j)
        for (Index k = 0; k < in_; ++k) w(kept_[std::size_t(j)], k) += s_at(j, k);
    } else {
      for (Index i = 0; i < out_; ++i)
        for (auto e = row_ptr_[std::size_t(i)]; e < row_ptr_[std::size_t(i + 1)]; ++e)
          w(i, col_[std::size_t(e)]) += val_[std::size_t(e)];
    }
  }

  // Splits [0, count) evenly over the team; returns this thread's part.
  static std::pair<Index, Index> share(Index count, int thread, int threads) {
    const Index per = count / threads, extra = count % threads;
    const Index begin = thread * per + std::min<Index>(thread, extra);
    return {begin, begin + per + (thread < extra ? 1 : 0)};
  }

  // One thread's part of the forward. Every phase splits its output panels (or rows) over the
  // team, so that no two threads write the same output; barriers separate the phases.
  // With low_rank_done, y already holds t·Uᵀ + b (the external GEMM) and only S is added.
  void run_part(Index n, const Scalar* x, Index ldx, Scalar* y, Index ldy, Workspace& ws,
                int thread, int threads, void (*team_barrier)(), bool low_rank_done) const;

  // Tokens per t·Uᵀ step: at most kOutputBlock, fewer for wide layers so that their rows of y
  // (kOutputBytes) stay in L2 next to U; a multiple of the micro-tile height.
  Index output_block() const {
    const Index tile = detail::max_tile_rows(isa());
    const Index fit = kOutputBytes / std::max<Index>(1, out_ * Index(sizeof(Scalar)));
    return std::max<Index>(tile, std::min<Index>(kOutputBlock, fit / tile * tile));
  }

  // Index of the first kept row whose output row is at least `row` (kept_.size() if none).
  Index first_kept_at_or_after(Index row) const {
    return static_cast<Index>(std::lower_bound(kept_.begin(), kept_.end(), row) - kept_.begin());
  }

  detail::Isa isa() const {
    return kernel_ == CompactKernel::avx512 ? detail::Isa::avx512
                                            : (kernel_ == CompactKernel::avx2 ? detail::Isa::avx2
                                                                              : detail::Isa::portable);
  }

  // y (m, out) = (x·Vᵀ)·Uᵀ + b with the external GEMM, for one block of tokens (float only).
  void external_low_rank(Index m, const Scalar* x, Index ldx, Scalar* y, Index ldy,
                         Workspace& ws) const {
    if constexpr (std::is_same<Scalar, float>::value) {
      float beta = 0.f;
      if (has_bias()) {
        for (Index i = 0; i < m; ++i)
          std::copy(bias_.data(), bias_.data() + out_, y + i * ldy);
        beta = 1.f;
      }
      if (rank_ == 0) {
        if (!has_bias())
          for (Index i = 0; i < m; ++i) std::fill(y + i * ldy, y + i * ldy + out_, 0.f);
        return;
      }
      float* t = ws.t_.data();
      sgemm_(m, rank_, in_, x, ldx, v_rows_.data(), in_, 0.f, t, rank_);
      sgemm_(m, out_, rank_, t, rank_, u_rows_.data(), rank_, beta, y, ldy);
    } else {
      (void)m, (void)x, (void)ldx, (void)y, (void)ldy, (void)ws;
    }
  }

  // What one forward's threads share; passed to the team as its context.
  struct Job {
    const CompactLinear* layer;
    Index n;
    const Scalar* x;
    Index ldx;
    Scalar* y;
    Index ldy;
    Workspace* ws;
    void (*barrier)();
    bool low_rank_done;
  };

  static void run_job_part(void* context, int thread, int threads) {
    const Job& job = *static_cast<const Job*>(context);
    job.layer->run_part(job.n, job.x, job.ldx, job.y, job.ldy, *job.ws, thread, threads,
                        job.barrier, job.low_rank_done);
  }

  void run_parts(Index n, const Scalar* x, Index ldx, Scalar* y, Index ldy, Workspace& ws,
                 const CompactForwardOptions& options, bool low_rank_done) const {
    if (options.threads > 1) {
      Job job{this, n, x, ldx, y, ldy, &ws, options.team.barrier, low_rank_done};
      options.team.run(options.threads, &CompactLinear::run_job_part, &job);
      return;
    }
    run_part(n, x, ldx, y, ldy, ws, 0, 1, nullptr, low_rank_done);
  }

  void run(Index n, const Scalar* x, Index ldx, Scalar* y, Index ldy, Workspace& ws,
           const CompactForwardOptions& options) const;

  Index out_ = 0, in_ = 0, rank_ = 0;
  SparseFormat format_ = SparseFormat::rows;
  CompactKernel kernel_ = CompactKernel::portable;
  LowRankSgemm sgemm_ = nullptr;
  // x_panels_: V's rows (no external GEMM: v_rows_in_x_panels_ = rank) then the kept rows of S
  // (rows format); u_: U's rows (no external GEMM).
  detail::PackedPanels<Scalar> x_panels_, u_;
  Index v_rows_in_x_panels_ = 0;
  detail::AlignedVector<Scalar> u_rows_, v_rows_;  // row-major U and V for the external GEMM
  std::vector<std::int32_t> kept_;
  std::vector<std::int32_t> row_ptr_, col_;
  detail::AlignedVector<Scalar> val_;
  VectorType bias_;
};

/// Median seconds per forward call of each layer at `batch` tokens on the calling thread:
/// `repeats` rounds with the layers interleaved in each (so that all see the same machine), a
/// layer's timed calls in a round filling at least kTimedRoundSeconds after one untimed call
/// that brings its weights back into cache (as bench_pack_forms times a form: back to back, so
/// a large layer is not charged for the other candidates' evictions). The input is a fixed
/// pattern.
/// The layers must share their input width. Allocates; for choosing a form, not for hot paths.
template <class Scalar>
std::vector<double> time_compact_forms(const std::vector<const CompactLinear<Scalar>*>& layers, Index batch,
                                       int repeats) {
  static constexpr const char* where = "lmshrink::time_compact_forms";
  if (batch < 1) detail::fail<value_error>(where, "batch must be at least 1 token per call, got ", batch);
  if (repeats < 1) detail::fail<value_error>(where, "repeats must be at least 1, got ", repeats);
  if (layers.empty()) return {};
  for (const auto* layer : layers)
    if (layer == nullptr) detail::fail<value_error>(where, "a layer to time is null");
  const Index in = layers[0]->in_features();
  for (const auto* layer : layers)
    if (layer->in_features() != in)
      detail::fail<value_error>(where, "the layers to time must share their input width: ", in, " and ",
                                layer->in_features());
  using Clock = std::chrono::steady_clock;
  RowMatrix<Scalar> x(batch, in);
  for (Index i = 0; i < batch; ++i)
    for (Index j = 0; j < in; ++j) x(i, j) = Scalar(double((i * 131 + j * 31) % 17 - 8) / 8.0);
  const std::size_t n = layers.size();
  std::vector<RowMatrix<Scalar>> y(n);
  std::vector<typename CompactLinear<Scalar>::Workspace> ws(n);
  std::vector<long> calls(n);
  for (std::size_t c = 0; c < n; ++c) {
    y[c].resize(batch, layers[c]->out_features());
    ws[c] = layers[c]->make_workspace(batch);
    layers[c]->forward(x, y[c], ws[c]);  // warm: caches, pages, the workspace
    const auto t0 = Clock::now();
    layers[c]->forward(x, y[c], ws[c]);
    const double once = std::chrono::duration<double>(Clock::now() - t0).count();
    calls[c] = long(std::min(1e6, std::ceil(kTimedRoundSeconds / std::max(once, 1e-9))));
  }
  std::vector<std::vector<double>> rounds(n);
  for (int r = 0; r < repeats; ++r)
    for (std::size_t c = 0; c < n; ++c) {
      layers[c]->forward(x, y[c], ws[c]);
      const auto t0 = Clock::now();
      for (long k = 0; k < calls[c]; ++k) layers[c]->forward(x, y[c], ws[c]);
      rounds[c].push_back(std::chrono::duration<double>(Clock::now() - t0).count() / double(calls[c]));
    }
  std::vector<double> median(n);
  for (std::size_t c = 0; c < n; ++c) {
    auto& t = rounds[c];
    std::sort(t.begin(), t.end());
    median[c] = t.size() % 2 ? t[t.size() / 2] : 0.5 * (t[t.size() / 2 - 1] + t[t.size() / 2]);
  }
  return median;
}

/// PackForm::timed with the timing given: `seconds_of(candidates, batch)` returns each candidate's
/// seconds per call at options.batch tokens (time_compact_forms; a fixed table in tests). The
/// candidates are the dense form (first), the trained form in rows unless that streams what dense
/// does (rank 0, every row kept), and the trained form in CSR when the layer has an element mask.
/// The first of least time wins, a trained form only when it times kTimedMargin faster than dense. A layer dense as trained is packed
/// without timing. `choice`, when given, receives the choice with the modelled costs and the
/// measured seconds.
template <class Scalar, class SecondsOf>
CompactLinear<Scalar> pack_fastest_of(const LowRankSparseLinear<Scalar>& layer, const PackOptions& options,
                                      SecondsOf&& seconds_of, PackChoice* choice) {
  static constexpr const char* where = "CompactLinear::pack";
  if (options.format != SparseFormat::automatic)
    detail::fail<value_error>(where, "PackForm::timed chooses the sparse format itself; "
                                     "PackOptions::format must be automatic");
  if (options.batch < 1)
    detail::fail<value_error>(where, "PackOptions::batch must be at least 1 token per call, got ", options.batch);
  if (options.timing_repeats < 1)
    detail::fail<value_error>(where, "PackOptions::timing_repeats must be at least 1, got ", options.timing_repeats);
  const Index out = layer.out_features(), in = layer.in_features(), r = layer.rank();
  Index kept = 0, entries = 0;
  detail::count_live(layer, kept, entries);
  const bool em = layer.has_element_mask();
  // Rank 0 with every row kept: the rows format streams out × in values, as dense does (an
  // element mask's pruned entries stored as zeros), so only CSR is a different candidate.
  const bool rows_is_dense = r == 0 && kept == out;

  PackOptions plain = options;
  plain.form = PackForm::dense;
  plain.format = SparseFormat::rows;
  std::vector<CompactLinear<Scalar>> forms;
  forms.push_back(CompactLinear<Scalar>::pack(layer, plain));
  std::vector<SparseFormat> formats{SparseFormat::rows};
  plain.form = PackForm::as_trained;
  if (!rows_is_dense) {
    forms.push_back(CompactLinear<Scalar>::pack(layer, plain));
    formats.push_back(SparseFormat::rows);
  }
  if (em) {
    plain.format = SparseFormat::csr;
    forms.push_back(CompactLinear<Scalar>::pack(layer, plain));
    formats.push_back(SparseFormat::csr);
  }

  PackChoice c;
  c.dense_cost = compact_form_cost(0, out, in, out, 0, options.batch);
  std::size_t best = 0;
  if (forms.size() > 1) {
    std::vector<const CompactLinear<Scalar>*> candidates;
    for (const auto& f : forms) candidates.push_back(&f);
    const std::vector<double> seconds = seconds_of(candidates, options.batch);
    if (seconds.size() != forms.size())
      detail::fail<state_error>(where, "PackForm::timed's timing returned ", seconds.size(), " times for ",
                                forms.size(), " candidate forms");
    for (std::size_t i = 0; i < seconds.size(); ++i)
      if (!(std::isfinite(seconds[i]) && seconds[i] >= 0))
        detail::fail<value_error>(where, "PackForm::timed's timing of candidate ", i, " is ", seconds[i],
                                  "; finite seconds ≥ 0 were expected");
    for (std::size_t i = 1; i < seconds.size(); ++i)
      if (seconds[i] < seconds[best] && seconds[i] < (1 - kTimedMargin) * seconds[0]) best = i;
    c.seconds = seconds[best];
    c.dense_seconds = seconds[0];
  }
  const bool csr = formats[best] == SparseFormat::csr;
  c.format = formats[best];
  c.densified = best == 0 && !(rows_is_dense && !em);
  c.form = best == 0 ? CompactForm::dense : detail::trained_form(r, out, csr, kept, entries);
  c.cost = best == 0 ? c.dense_cost : compact_form_cost(r, out, in, csr ? 0 : kept, csr ? entries : 0, options.batch);
  if (choice != nullptr) *choice = c;
  return std::move(forms[best]);
}

// CompactLinear's members defined outside the class, so that an explicit instantiation
// declaration suppresses them (docs/build.md): packing, the forward's kernels and the checks'
// references compile once, in src/instances/compact.cpp, for every file that links the instances.

template <class Scalar_>
CompactLinear<Scalar_> CompactLinear<Scalar_>::pack(const LowRankSparseLinear<Scalar>& layer,
                                                    const PackOptions& options) {
  static constexpr const char* where = "CompactLinear::pack";
  detail::check_finite(where, "U", layer.U());
  detail::check_finite(where, "V", layer.V());
  detail::check_finite(where, "S", layer.S());
  if (layer.has_bias()) detail::check_finite(where, "bias", layer.bias().transpose());
  const Index out = layer.out_features(), in = layer.in_features(), r = layer.rank();
  if (out > std::numeric_limits<std::int32_t>::max() ||
      in > std::numeric_limits<std::int32_t>::max())
    detail::fail<value_error>(where, "layer is ", out, "x", in,
                              " but 32-bit row and column indices were expected");

  if (options.form != PackForm::as_trained) return pack_chosen(layer, options);

  CompactLinear c;
  c.out_ = out;
  c.in_ = in;
  c.rank_ = r;
  c.bias_ = layer.bias();
  c.format_ = options.format;
  if (c.format_ == SparseFormat::automatic)
    c.format_ = layer.has_element_mask() ? SparseFormat::csr : SparseFormat::rows;

  c.kernel_ = options.kernel;
  if (c.kernel_ == CompactKernel::automatic)
    c.kernel_ = std::is_same<Scalar, float>::value ? best_compact_kernel() : CompactKernel::portable;
  if (c.kernel_ != CompactKernel::portable && !std::is_same<Scalar, float>::value)
    detail::fail<value_error>(where, "kernel ", compact_kernel_name(c.kernel_),
                              " is for float layers; a double layer uses the portable kernel "
                              "(CompactKernel::portable or automatic)");
  if (!compact_kernel_supported(c.kernel_))
    detail::fail<state_error>(where, "kernel ", compact_kernel_name(c.kernel_),
                              " needs instructions this CPU lacks; it runs ",
                              compact_kernel_name(best_compact_kernel()), " at best");

  const auto& V = layer.V();
  const auto& U = layer.U();
  c.sgemm_ = options.low_rank_sgemm;
  if (c.sgemm_ != nullptr) {
    if (!std::is_same<Scalar, float>::value)
      detail::fail<value_error>(where, "low_rank_sgemm is for float layers, got a double layer");
    c.u_rows_.assign(U.data(), U.data() + U.size());
    c.v_rows_.assign(V.data(), V.data() + V.size());
  } else {
    c.u_ = detail::PackedPanels<Scalar>::pack(U.data(), r, out, r, [](Index j) { return j; });
    c.v_rows_in_x_panels_ = r;
  }

  const auto& rm = layer.row_mask();
  const bool em = layer.has_element_mask();
  const Matrix& S = layer.S();
  if (c.format_ == SparseFormat::rows) {
    for (Index i = 0; i < out; ++i) {
      if (!rm[i]) continue;
      if (em && (layer.element_mask().row(i).array() == 0).all()) continue;
      c.kept_.push_back(static_cast<std::int32_t>(i));
    }
  }
  // V's rows (no external GEMM) then the kept rows of S: one product with x for both.
  const Index vr = c.v_rows_in_x_panels_, kept = static_cast<Index>(c.kept_.size());
  c.x_panels_ = detail::PackedPanels<Scalar>::pack_rows(vr + kept, in, [&](Index j) {
    return j < vr ? V.data() + j * in : S.data() + Index(c.kept_[std::size_t(j - vr)]) * in;
  });
  if (c.format_ == SparseFormat::csr) {
    c.row_ptr_.assign(static_cast<std::size_t>(out + 1), 0);
    for (Index i = 0; i < out; ++i) {
      if (rm[i]) {
        for (Index j = 0; j < in; ++j) {
          if (em && !layer.element_mask()(i, j)) continue;
          if (c.col_.size() >= std::size_t(std::numeric_limits<std::int32_t>::max()))
            detail::fail<value_error>(where, "S has more live entries than 32-bit CSR "
                                             "offsets can address");
          c.col_.push_back(static_cast<std::int32_t>(j));
          c.val_.push_back(S(i, j));
        }
      }
      c.row_ptr_[static_cast<std::size_t>(i + 1)] = static_cast<std::int32_t>(c.col_.size());
    }
  }
  return c;
}

template <class Scalar_>
auto CompactLinear<Scalar_>::to_dense() const -> Matrix {
  Matrix w = Matrix::Zero(out_, in_);
  for (Index i = 0; i < out_; ++i)
    for (Index j = 0; j < in_; ++j) {
      Scalar s = 0;
      for (Index k = 0; k < rank_; ++k) s += u_at(i, k) * v_at(k, j);
      w(i, j) = s;
    }
  add_sparse_to(w);
  return w;
}

template <class Scalar_>
void CompactLinear<Scalar_>::forward_reference(ConstMatrixRef<Scalar> x, MatrixRef<Scalar> y) const {
  static constexpr const char* where = "CompactLinear::forward_reference";
  detail::check_input_width(where, x, in_);
  detail::check_shape(where, "y", y, x.rows(), out_);
  std::vector<double> t(static_cast<std::size_t>(rank_));
  for (Index n = 0; n < x.rows(); ++n) {
    for (Index k = 0; k < rank_; ++k) {
      double s = 0;
      for (Index j = 0; j < in_; ++j) s += double(v_at(k, j)) * double(x(n, j));
      t[std::size_t(k)] = s;
    }
    for (Index i = 0; i < out_; ++i) {
      double s = has_bias() ? double(bias_[i]) : 0.0;
      for (Index k = 0; k < rank_; ++k) s += double(u_at(i, k)) * t[std::size_t(k)];
      y(n, i) = Scalar(s);
    }
    if (format_ == SparseFormat::rows) {
      for (Index j = 0; j < Index(kept_.size()); ++j) {
        double s = 0;
        for (Index k = 0; k < in_; ++k) s += double(s_at(j, k)) * double(x(n, k));
        y(n, kept_[std::size_t(j)]) = Scalar(double(y(n, kept_[std::size_t(j)])) + s);
      }
    } else {
      for (Index i = 0; i < out_; ++i) {
        double s = 0;
        for (auto e = row_ptr_[std::size_t(i)]; e < row_ptr_[std::size_t(i + 1)]; ++e)
          s += double(val_[std::size_t(e)]) * double(x(n, col_[std::size_t(e)]));
        y(n, i) = Scalar(double(y(n, i)) + s);
      }
    }
  }
}

template <class Scalar_>
CompactLinear<Scalar_> CompactLinear<Scalar_>::pack_chosen(const LowRankSparseLinear<Scalar>& layer,
                                                           const PackOptions& options) {
  static constexpr const char* where = "CompactLinear::pack";
  if (options.form == PackForm::timed) {
    const int repeats = options.timing_repeats;
    return pack_fastest_of(layer, options, [repeats](const std::vector<const CompactLinear*>& forms, Index batch) {
      return time_compact_forms(forms, batch, repeats);
    });
  }
  const bool fastest = options.form == PackForm::fastest;
  if (fastest && options.format != SparseFormat::automatic)
    detail::fail<value_error>(where, "PackForm::fastest chooses the sparse format itself; "
                                     "PackOptions::format must be automatic");
  if (!fastest && options.format == SparseFormat::csr)
    detail::fail<value_error>(where, "PackForm::dense stores every row; PackOptions::format "
                                     "must be automatic or rows, got csr");
  if (options.batch < 1)
    detail::fail<value_error>(where, "PackOptions::batch must be at least 1 token per call, got ",
                              options.batch);
  PackOptions plain = options;
  plain.form = PackForm::as_trained;
  if (fastest) {
    const PackChoice choice = pack_choice(layer, options.batch);
    if (!choice.densified) {
      plain.format = choice.format;
      return pack(layer, plain);
    }
  }
  auto dense = make_dense_layer<Scalar>(layer.to_dense(), layer.has_bias());
  if (layer.has_bias()) dense.bias() = layer.bias();
  plain.format = SparseFormat::rows;
  return pack(dense, plain);
}

template <class Scalar_>
void CompactLinear<Scalar_>::run_part(Index n, const Scalar* x, Index ldx, Scalar* y, Index ldy,
                                      Workspace& ws, int thread, int threads,
                                      void (*team_barrier)(), bool low_rank_done) const {
  const auto barrier = [threads, team_barrier] {
    if (threads > 1) team_barrier();
  };
  const detail::Isa isa = this->isa();
  const Scalar* bias = has_bias() ? bias_.data() : nullptr;
  detail::CsrView<Scalar> csr{row_ptr_.data(), col_.data(), val_.data()};
  const Index vr = v_rows_in_x_panels_, width = t_width();
  const bool fused = vr > 0 && !low_rank_done;  // [t, s] = x·[V; S_kept]ᵀ in one product
  const Index block = fused || low_rank_done ? kTokenBlock : kOutputBlock;
  // This thread's output panels of t·Uᵀ, and the kept rows whose outputs lie in them (kept_ is
  // ascending): the thread adds those, so no other thread writes its columns and no barrier is
  // needed between the product and the adds.
  const auto pu = share(u_.panels(), thread, threads);
  const bool row_format = format_ == SparseFormat::rows;
  const Index k0 = row_format ? first_kept_at_or_after(pu.first * detail::kPanelWidth) : 0;
  const Index k1 = row_format ? first_kept_at_or_after(pu.second * detail::kPanelWidth) : 0;
  const Index out_block = output_block();
  for (Index i0 = 0; i0 < n; i0 += block) {
    const Index m = std::min(block, n - i0);
    const Scalar* xb = x + i0 * ldx;
    Scalar* yb = y + i0 * ldy;
    if (fused) {
      Scalar* t = ws.t_.data();
      auto px = share(x_panels_.panels(), thread, threads);
      detail::gemm_panels(isa, m, xb, ldx, x_panels_, px.first, px.second,
                          detail::TileOutput<Scalar>{t, width, nullptr, nullptr});
      barrier();
      for (Index s0 = 0; s0 < m; s0 += out_block) {
        const Index ms = std::min(out_block, m - s0);
        const Scalar* ts = t + s0 * width;
        Scalar* ys = yb + s0 * ldy;
        detail::gemm_panels(isa, ms, ts, width, u_, pu.first, pu.second,
                            detail::TileOutput<Scalar>{ys, ldy, bias, nullptr});
        for (Index i = 0; i < ms; ++i)
          for (Index j = k0; j < k1; ++j)
            ys[i * ldy + kept_[std::size_t(j)]] += ts[i * width + vr + j];
      }
    } else if (!low_rank_done) {
      // y was not written by a GEMM: start from the bias
      auto cols = share(out_, thread, threads);
      for (Index i = 0; i < m; ++i)
        for (Index j = cols.first; j < cols.second; ++j)
          yb[i * ldy + j] = bias != nullptr ? bias[j] : Scalar(0);
    }
    if (row_format && fused) {
      barrier();  // the next block rewrites t
      continue;
    }
    barrier();
    if (row_format) {
      auto ps = share(x_panels_.panels(), thread, threads);
      detail::gemm_panels(isa, m, xb, ldx, x_panels_, ps.first, ps.second,
                          detail::TileOutput<Scalar>{yb, ldy, nullptr, kept_.data()});
    } else {
      auto rows = share(out_, thread, threads);
      if (m == 1) {
        detail::csr_rows_one_token(csr, rows.first, rows.second, xb, yb);
      } else {
        for (Index t0 = 0; t0 < m; t0 += detail::kCsrTokenBlock) {
          const Index tb = std::min(detail::kCsrTokenBlock, m - t0);
          if (thread == 0) detail::csr_transpose_block(tb, in_, xb + t0 * ldx, ldx, ws.xt_.data());
          barrier();
          detail::csr_rows_token_block(csr, rows.first, rows.second,
                                       static_cast<const Scalar*>(ws.xt_.data()), tb,
                                       yb + t0 * ldy, ldy);
          barrier();
        }
      }
    }
    barrier();  // the next block reuses t
  }
}

template <class Scalar_>
void CompactLinear<Scalar_>::run(Index n, const Scalar* x, Index ldx, Scalar* y, Index ldy,
                                 Workspace& ws, const CompactForwardOptions& options) const {
  if (n == 0) return;
  reserve(ws, n);
  if (sgemm_ != nullptr) {
    // The external GEMM threads itself (oneDNN: OpenMP's settings); the kept rows use the team.
    for (Index i0 = 0; i0 < n; i0 += kTokenBlock) {
      const Index m = std::min(kTokenBlock, n - i0);
      external_low_rank(m, x + i0 * ldx, ldx, y + i0 * ldy, ldy, ws);
      run_parts(m, x + i0 * ldx, ldx, y + i0 * ldy, ldy, ws, options, true);
    }
    return;
  }
  run_parts(n, x, ldx, y, ldy, ws, options, false);
}

// Explicit instantiation (docs/build.md): with LMSHRINK_EXTERN_TEMPLATES defined, the float and
// double forms are compiled once, by src/instances/ (the target lmshrink::instances).
#define LMSHRINK_COMPACT_LINEAR_INSTANCES(prefix) \
  prefix template class CompactLinear<float>;    \
  prefix template class CompactLinear<double>;
#ifdef LMSHRINK_EXTERN_TEMPLATES
LMSHRINK_COMPACT_LINEAR_INSTANCES(extern)
#endif

LMSHRINK_NAMESPACE_END
