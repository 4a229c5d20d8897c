#pragma once
// LowRankSparseLinear: W ≈ U·V + S, the layer of LoSparse (Li et al., "LoSparse: Structured
// Compression of Large Language Models based on Low-Rank and Sparse Approximation", ICML 2023).
//
// Shapes: U (out, r), V (r, in), S (out, in), bias (out); x (N, in) -> y (N, out).
//   y = (x·Vᵀ)·Uᵀ + x·(S∘M)ᵀ + b        U·V is never formed.
//
//   LowRankSparseLinear<float> layer(out, in, rank, /*bias=*/false);
//   auto grads = layer.make_gradients();
//   auto cache = layer.make_cache(max_tokens);
//   layer.forward(x, y, cache);
//   grads.set_zero();
//   layer.backward(x, dy, cache, dx, grads);   // accumulates into dx and grads
//
// Masks: M is a row mask (one flag per output row of S) times an optional element mask. Pruned
// entries of S are not parameters: setting a mask zeroes them, forward skips pruned rows and
// backward writes no gradient to pruned entries. Code that writes S directly should keep pruned
// entries at zero (or call apply_masks()).
//
// A layer whose every row of S is pruned (low-rank only) can free S: release_sparse() leaves S(),
// and the gradients and optimizer moments made after it, empty (0 x 0), so a low-rank student
// holds U and V alone. A mask that makes rows live again brings S back as zeros.
//
// Live rows of S that hold only zeros add nothing to y or dx, and forward skips them (backward
// still gives them their gradient: they are parameters). The reference pruning mode leaves such
// rows: it zeroes pruned rows on its mask steps but keeps them live, so that they may regrow.
//
// Two forms of the same products (equal within rounding), chosen per call by their
// multiply-adds unless set (set_product_form):
//   factored  x·Vᵀ·Uᵀ + x·S_Rᵀ over the live rows R: 3·N·(r·(out + in) + |R|·in) per call;
//   merged    W = U·V + S∘M formed once per forward into the cache, then y = x·Wᵀ,
//             dx += dy·W and G = dyᵀ·x, from which dU = G·Vᵀ, dV = Uᵀ·G, dS = G∘M:
//             3·N·out·in + 3·out·in·r. It wins when S is trained dense (every row live, as in
//             the reference pruning mode) and N > out·in / (out + in). W takes the place of
//             the factored form's two (N, r) buffers in the cache, so the automatic choice
//             merges only where it fits there (out·in ≤ 2·N·r) and never takes more memory.

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "config.hpp"
#include "errors.hpp"
#include "types.hpp"

LMSHRINK_NAMESPACE_BEGIN

/// How LowRankSparseLinear multiplies (see the header comment): whichever costs fewer
/// multiply-adds for the call (automatic), or one form always.
enum class ProductForm { automatic, factored, merged };

template <class Scalar_>
class LowRankSparseLinear {
 public:
  using Scalar = Scalar_;
  using Matrix = RowMatrix<Scalar>;
  using VectorType = Vector<Scalar>;

  static_assert(std::is_floating_point<Scalar>::value,
                "lmshrink::LowRankSparseLinear<Scalar>: Scalar must be float or double (float "
                "for training, double for gradient checks)");

  /// Gradients of every parameter, same shapes as the parameters. backward() accumulates.
  struct Gradients {
    Matrix U, V, S;
    VectorType bias;  // empty when the layer has no bias
    void set_zero() {
      U.setZero();
      V.setZero();
      S.setZero();
      bias.setZero();
    }
  };

  /// Per-call workspace: x·Vᵀ kept from forward for backward, and backward's (N, r) scratch;
  /// for live rows of S scattered in short runs, up to kGatherRows of them gathered (their S
  /// rows, and an (N, kGatherRows) product); the rows the last forward multiplied (live rows
  /// holding a non-zero), which backward's input gradient reads. The merged form keeps W in the
  /// (N, r) buffers' place. Sized for up to `capacity()` tokens; a larger batch or more gathered
  /// rows grow it (one allocation).
  class Cache {
   public:
    Cache() = default;
    Cache(Index max_tokens, Index rank) { reserve(max_tokens, rank); }
    void reserve(Index max_tokens, Index rank) {
      if (2 * max_tokens * rank > static_cast<Index>(work_.size()))
        work_.resize(static_cast<std::size_t>(2 * max_tokens * rank));
      capacity_ = rank > 0 ? static_cast<Index>(work_.size()) / (2 * rank) : max_tokens;
    }
    Index capacity() const { return capacity_; }
    Index tokens() const { return tokens_; }
    /// Whether the last forward multiplied by the merged weight (ProductForm::merged).
    bool merged() const { return merged_; }
    /// Bytes of its buffers.
    std::int64_t bytes() const {
      return std::int64_t((work_.size() + rows_.size() + cols_.size()) * sizeof(Scalar));
    }

   private:
    friend class LowRankSparseLinear;
    // x·Vᵀ and backward's dy·U, (N, r) each; or the merged form's W = U·V + S∘M from the
    // forward, which backward overwrites with dyᵀ·x once it has read it (weight_formed_ false: a
    // second backward forms W again).
    std::vector<Scalar> work_;
    bool merged_ = false, weight_formed_ = false;
    std::vector<Scalar> rows_, cols_;  // gathered rows of S (or of its gradient), (N, rows) products
    // The last forward's rows when some live rows of S were all zero (every_live_row_ false):
    // the live rows holding a non-zero, ascending, and their runs.
    std::vector<Index> nonzero_index_;
    std::vector<std::pair<Index, Index>> nonzero_runs_;
    bool every_live_row_ = true;
    Index capacity_ = 0;
    Index tokens_ = -1;  // tokens of the last forward, -1 before any
    Index rank_ = -1;
  };

  LowRankSparseLinear() = default;

  /// A zero-initialised layer; use svd_init() to start from a pretrained weight.
  LowRankSparseLinear(Index out_features, Index in_features, Index rank, bool with_bias = false) {
    resize(out_features, in_features, rank, with_bias);
  }

  /// Resets shapes; parameters become zero and every mask live.
  void resize(Index out_features, Index in_features, Index rank, bool with_bias) {
    static constexpr const char* where = "LowRankSparseLinear::resize";
    if (out_features <= 0 || in_features <= 0)
      detail::fail<value_error>(where, "features must be positive, got out_features=",
                                out_features, " in_features=", in_features);
    if (rank < 0 || rank > std::min(out_features, in_features))
      detail::fail<value_error>(where, "rank must be in [0, min(out, in)] = [0, ",
                                std::min(out_features, in_features), "], got ", rank);
    out_ = out_features;
    in_ = in_features;
    U_.setZero(out_features, rank);
    V_.setZero(rank, in_features);
    S_.setZero(out_features, in_features);
    if (with_bias) bias_.setZero(out_features);
    else bias_.resize(0);
    row_mask_.setOnes(out_features);
    element_mask_.resize(0, 0);
    rebuild_live_runs();
  }

  Index out_features() const { return out_; }
  Index in_features() const { return in_; }
  Index rank() const { return U_.cols(); }
  bool has_bias() const { return bias_.size() > 0; }

  /// How forward and backward multiply; automatic (the default) picks the form with fewer
  /// multiply-adds per call. Either form gives the same results within rounding.
  void set_product_form(ProductForm form) {
    if (form != ProductForm::automatic && form != ProductForm::factored && form != ProductForm::merged)
      detail::fail<value_error>("LowRankSparseLinear::set_product_form",
                                "form must be automatic, factored or merged (0, 1 or 2), got ", int(form));
    product_form_ = form;
  }
  ProductForm product_form() const { return product_form_; }
  /// Whether a forward of `tokens` tokens multiplies by the merged weight, when every live row
  /// of S holds a non-zero (live rows that are all zero make the factored form cheaper).
  bool merges(Index tokens) const { return merges(tokens, live_rows_); }

  Matrix& U() { return U_; }
  const Matrix& U() const { return U_; }
  Matrix& V() { return V_; }
  const Matrix& V() const { return V_; }
  Matrix& S() { return S_; }
  const Matrix& S() const { return S_; }
  VectorType& bias() { return bias_; }
  const VectorType& bias() const { return bias_; }

  /// Replaces U and V (and so the rank); S, bias and masks are kept.
  void set_low_rank(ConstMatrixRef<Scalar> U, ConstMatrixRef<Scalar> V) {
    static constexpr const char* where = "LowRankSparseLinear::set_low_rank";
    if (U.rows() != out_features())
      detail::fail<shape_error>(where, "U has ", U.rows(), " rows but out_features is ",
                                out_features());
    if (V.cols() != in_features())
      detail::fail<shape_error>(where, "V has ", V.cols(), " columns but in_features is ",
                                in_features());
    if (U.cols() != V.rows())
      detail::fail<shape_error>(where, "U has ", U.cols(), " columns (rank) but V has ",
                                V.rows(), " rows");
    if (U.cols() > std::min(out_features(), in_features()))
      detail::fail<value_error>(where, "rank must be at most min(out, in) = ",
                                std::min(out_features(), in_features()), ", got ", U.cols());
    U_ = U;
    V_ = V;
  }

  // ---- masks ---------------------------------------------------------------------------------

  const RowMask& row_mask() const { return row_mask_; }
  /// Empty when there is no element mask.
  const ElementMask& element_mask() const { return element_mask_; }
  bool has_element_mask() const { return element_mask_.size() > 0; }

  /// Sets the row mask (1 = live) and zeroes the pruned rows of S.
  void set_row_mask(const Eigen::Ref<const RowMask>& mask) {
    if (mask.size() != out_features())
      detail::fail<shape_error>("LowRankSparseLinear::set_row_mask", "mask has ", mask.size(),
                                " entries but out_features is ", out_features());
    for (Index i = 0; i < mask.size(); ++i)
      if (mask[i] > 1)
        detail::fail<value_error>("LowRankSparseLinear::set_row_mask", "mask entries must be 0 or 1, entry ", i, " is ", int(mask[i]));
    row_mask_ = mask;
    rebuild_live_runs();
    if (sparse_released() && live_rows_ > 0) S_.setZero(out_, in_);  // live rows again: zeros
    apply_masks();
  }

  /// Sets an element mask (out, in), 1 = live, and zeroes the pruned entries of S.
  void set_element_mask(const Eigen::Ref<const ElementMask>& mask) {
    detail::check_shape("LowRankSparseLinear::set_element_mask", "mask", mask, out_features(),
                        in_features());
    for (Index i = 0; i < mask.rows(); ++i)
      for (Index j = 0; j < mask.cols(); ++j)
        if (mask(i, j) > 1)
          detail::fail<value_error>("LowRankSparseLinear::set_element_mask",
                                    "mask entries must be 0 or 1, entry (", i, ", ", j, ") is ",
                                    int(mask(i, j)));
    element_mask_ = mask;
    if (sparse_released()) S_.setZero(out_, in_);
    apply_masks();
  }

  void clear_element_mask() { element_mask_.resize(0, 0); }

  /// Zeroes the entries of S that the masks prune.
  void apply_masks() { zero_masked(S_); }

  /// Zeroes the entries of `m` (shaped like S, or empty like a released S) that the masks prune:
  /// for gradients or an optimizer's moment buffers, so that nothing regrows.
  void zero_masked(MatrixRef<Scalar> m) const {
    if (m.size() == 0 && sparse_released()) return;
    detail::check_shape("LowRankSparseLinear::zero_masked", "matrix", m, out_features(),
                        in_features());
    for (Index i = 0; i < m.rows(); ++i)
      if (!row_mask_[i]) m.row(i).setZero();
    if (has_element_mask()) m.array() *= element_mask_.array().template cast<Scalar>();
  }

  /// Frees S when every row is pruned and there is no element mask (a low-rank-only layer): S()
  /// becomes 0 x 0, and so do the gradients and optimizer moments made from then on. Returns
  /// whether S is released.
  bool release_sparse() {
    if (live_rows_ == 0 && !has_element_mask()) S_.resize(0, 0);
    return sparse_released();
  }
  /// Whether S is freed (release_sparse): S() is empty and stands for zeros.
  bool sparse_released() const { return S_.size() == 0 && out_ > 0; }

  /// Runs of consecutive live rows of S as (first row, count).
  const std::vector<std::pair<Index, Index>>& live_row_runs() const { return live_runs_; }

  // ---- accounting ----------------------------------------------------------------------------

  /// Live entries of S.
  Index live_sparse_entries() const {
    if (!has_element_mask()) return live_rows_ * in_features();
    Index n = 0;
    for (Index i = 0; i < out_features(); ++i)
      if (row_mask_[i]) n += (element_mask_.row(i).array() != 0).count();
    return n;
  }
  Index live_rows() const { return live_rows_; }
  /// r·(out + in) + live S entries + bias.
  Index live_parameters() const {
    return rank() * (out_features() + in_features()) + live_sparse_entries() + bias_.size();
  }
  /// out·in + bias: the dense layer this one replaces.
  Index dense_parameters() const { return out_features() * in_features() + bias_.size(); }

  /// U·V + S∘M (+ nothing for bias): the weight this layer represents. Allocates; for checks.
  Matrix to_dense() const {
    Matrix w = sparse_released() ? Matrix(Matrix::Zero(out_, in_)) : Matrix(S_);
    zero_masked(w);
    w.noalias() += U_ * V_;
    return w;
  }

  // ---- buffers -------------------------------------------------------------------------------

  Gradients make_gradients() const {
    Gradients g;
    g.U.setZero(U_.rows(), U_.cols());
    g.V.setZero(V_.rows(), V_.cols());
    g.S.setZero(S_.rows(), S_.cols());
    g.bias.setZero(bias_.size());
    return g;
  }

  Cache make_cache(Index max_tokens) const {
    check_parameters("LowRankSparseLinear::make_cache");  // it reads S's rows
    Cache cache(max_tokens, rank());
    reserve_gather(cache, max_tokens, live_runs_, live_rows_);
    cache.nonzero_index_.reserve(std::size_t(out_));
    cache.nonzero_runs_.reserve(std::size_t(out_));
    find_nonzero_rows(cache);  // all-zero rows now: their gathers sized too
    if (!cache.every_live_row_)
      reserve_gather(cache, max_tokens, cache.nonzero_runs_, Index(cache.nonzero_index_.size()));
    if (merges(max_tokens)) reserve_weight(cache);  // only a set form grows it: fewer tokens merge less
    return cache;
  }

  // ---- forward / backward --------------------------------------------------------------------

  /// y (N, out) = (x·Vᵀ)·Uᵀ + x·(S∘M)ᵀ + b for x (N, in). Overwrites y; keeps x·Vᵀ in cache.
  void forward(ConstMatrixRef<Scalar> x, MatrixRef<Scalar> y, Cache& cache) const;

  /// Given dy = ∂L/∂y (N, out) for the x of the last forward with this cache, accumulates
  /// dx (N, in) += ∂L/∂x and grads += ∂L/∂(U, V, S, b). Pruned entries of S get no gradient.
  void backward(ConstMatrixRef<Scalar> x, ConstMatrixRef<Scalar> dy, Cache& cache,
                MatrixRef<Scalar> dx, Gradients& grads) const {
    detail::check_shape("LowRankSparseLinear::backward", "dx", dx, x.rows(), in_features());
    backward_impl(x, dy, cache, &dx, grads);
  }

  /// As backward(), without the input gradient (for a first layer).
  void backward(ConstMatrixRef<Scalar> x, ConstMatrixRef<Scalar> dy, Cache& cache,
                Gradients& grads) const {
    backward_impl(x, dy, cache, nullptr, grads);
  }

  // Raw pointer + leading dimension overloads (row-major; ld in elements). No copies.

  void forward(const Scalar* x, Index tokens, Index ldx, Scalar* y, Index ldy,
               Cache& cache) const {
    static constexpr const char* where = "LowRankSparseLinear::forward";
    forward(detail::map_rows(where, "x", x, tokens, in_features(), ldx),
            detail::map_rows_mut(where, "y", y, tokens, out_features(), ldy), cache);
  }

  /// dx may be nullptr to skip the input gradient.
  void backward(const Scalar* x, Index tokens, Index ldx, const Scalar* dy, Index lddy,
                Cache& cache, Scalar* dx, Index lddx, Gradients& grads) const {
    static constexpr const char* where = "LowRankSparseLinear::backward";
    auto xm = detail::map_rows(where, "x", x, tokens, in_features(), ldx);
    auto dym = detail::map_rows(where, "dy", dy, tokens, out_features(), lddy);
    if (dx == nullptr) {
      backward(xm, dym, cache, grads);
    } else {
      backward(xm, dym, cache, detail::map_rows_mut(where, "dx", dx, tokens, in_features(), lddx),
               grads);
    }
  }

 private:
  using CacheMap = Eigen::Map<Matrix>;

  // x·Vᵀ and dy·U in the cache's work buffer.
  CacheMap cached_xv(Cache& cache, Index n) const { return CacheMap(cache.work_.data(), n, rank()); }
  CacheMap cached_dxv(Cache& cache, Index n) const {
    return CacheMap(cache.work_.data() + n * rank(), n, rank());
  }
  void reserve_weight(Cache& cache) const {
    if (static_cast<Index>(cache.work_.size()) < out_ * in_) cache.work_.resize(std::size_t(out_ * in_));
  }

  // A cache may serve layers of different ranks (a decoder's one cache for every layer): it is
  // sized for this product, n·rank values, and grows only to the largest such product. (Asking
  // for the previous capacity at the new rank would grow it geometrically as ranks alternate.)
  void prepare_cache(Cache& cache, Index n) const {
    if (cache.capacity_ < n || cache.rank_ != rank() ||
        static_cast<Index>(cache.work_.size()) < 2 * n * rank())
      cache.reserve(n, rank());
    reserve_gather(cache, n, live_runs_, live_rows_);
  }

  using Runs = std::vector<std::pair<Index, Index>>;

  // Live rows in runs shorter than this on average are gathered, kGatherRows at a time, into one
  // product per group: a product per run of one or two rows ran at a fifth of a GEMM's rate.
  static constexpr Index kGatherBelowRunLength = 32;
  static constexpr Index kGatherRows = 64;
  static bool gathers(const Runs& runs, Index rows) {
    return runs.size() > 1 && rows < kGatherBelowRunLength * Index(runs.size());
  }
  static Index gather_rows(Index rows) { return std::min(kGatherRows, rows); }
  // f(first, count) for each group of up to kGatherRows of `rows` gathered rows.
  template <class F>
  static void for_each_group(Index rows, F&& f) {
    const Index g = gather_rows(rows);
    for (Index r0 = 0; r0 < rows; r0 += g) f(r0, std::min(g, rows - r0));
  }
  // The form for a call of n tokens when `nonzero_rows` live rows of S hold a non-zero. Automatic:
  // merged only if W fits in the cache's two (N, r) buffers (so it never takes more memory) and
  // its multiply-adds (the tokens' products on W; forming W, dU and dV once per call) are fewer
  // than the factored form's (U·V's, and the rows of S it reads: S's gradient reads every live row).
  bool merges(Index n, Index nonzero_rows) const {
    if (product_form_ != ProductForm::automatic) return product_form_ == ProductForm::merged;
    if (out_ * in_ > 2 * n * rank()) return false;
    const double r = double(rank()), out = double(out_), in = double(in_), tokens = double(n);
    const double factored = 3 * tokens * r * (out + in) + tokens * in * (2 * double(nonzero_rows) + double(live_rows_));
    const double merged = 3 * tokens * out * in + 3 * out * in * r + 2 * out * in;
    return merged < factored;
  }

  void reserve_gather(Cache& cache, Index n, const Runs& runs, Index rows) const {
    if (!gathers(runs, rows)) return;
    const Index g = gather_rows(rows);
    if (static_cast<Index>(cache.rows_.size()) < g * in_) cache.rows_.resize(std::size_t(g * in_));
    if (static_cast<Index>(cache.cols_.size()) < n * g) cache.cols_.resize(std::size_t(n * g));
  }

  // The live rows of S that hold a non-zero, into the cache, when some live row is all zero
  // (a row stops at its first non-zero, so a dense S costs one read per row).
  void find_nonzero_rows(Cache& cache) const {
    cache.every_live_row_ = true;
    if (live_rows_ == 0 || sparse_released()) return;
    const auto row_nonzero = [&](Index i) {
      const Scalar* r = S_.data() + i * in_;
      for (Index j = 0; j < in_; ++j)
        if (r[j] != Scalar(0)) return true;
      return false;
    };
    Index first_zero = -1;
    for (Index i : live_index_)
      if (!row_nonzero(i)) {
        first_zero = i;
        break;
      }
    if (first_zero < 0) return;
    cache.every_live_row_ = false;
    cache.nonzero_index_.clear();
    cache.nonzero_runs_.clear();
    for (Index i : live_index_) {
      if (i != first_zero && (i < first_zero || row_nonzero(i))) {
        if (!cache.nonzero_runs_.empty() && cache.nonzero_runs_.back().first + cache.nonzero_runs_.back().second == i)
          ++cache.nonzero_runs_.back().second;
        else
          cache.nonzero_runs_.emplace_back(i, 1);
        cache.nonzero_index_.push_back(i);
      }
    }
  }

  // y += x·S_Rᵀ over the rows R (ascending `index`, in `runs`): gathered kGatherRows at a time
  // when the runs are short, else one product per run.
  void add_rows_product(ConstMatrixRef<Scalar> x, MatrixRef<Scalar> y, Cache& cache,
                        const std::vector<Index>& index, const Runs& runs) const;
  // dx += dy_R·S_R over the rows R, as above.
  void add_rows_input_gradient(ConstMatrixRef<Scalar> dy, MatrixRef<Scalar> dx, Cache& cache,
                               const std::vector<Index>& index, const Runs& runs) const;

  void backward_impl(ConstMatrixRef<Scalar> x, ConstMatrixRef<Scalar> dy, Cache& cache,
                     MatrixRef<Scalar>* dx, Gradients& grads) const;
  // W = U·V + S∘M into the cache (the merged form).
  Eigen::Map<Matrix> form_weight(Cache& cache) const;
  void merged_backward(ConstMatrixRef<Scalar> x, ConstMatrixRef<Scalar> dy, Cache& cache,
                       MatrixRef<Scalar>* dx, Gradients& grads) const;

  // U, V, S and bias are writable through their accessors: a product checks they still have the
  // layer's shapes (S may be 0 x 0 only as release_sparse leaves it: no live row, no element
  // mask) before it reads them.
  void check_parameters(const char* where) const {
    detail::check_shape(where, "U", U_, out_, U_.cols());
    detail::check_shape(where, "V", V_, U_.cols(), in_);
    if (!(sparse_released() && live_rows_ == 0 && !has_element_mask()))
      detail::check_shape(where, "S", S_, out_, in_);
    if (bias_.size() != 0 && bias_.size() != out_)
      detail::fail<shape_error>(where, "bias has ", bias_.size(), " entries but ", out_,
                                " (or none) were expected");
  }

  void rebuild_live_runs() {
    live_runs_.clear();
    live_index_.clear();
    live_rows_ = 0;
    for (Index i = 0; i < row_mask_.size();) {
      if (!row_mask_[i]) {
        ++i;
        continue;
      }
      Index j = i;
      while (j < row_mask_.size() && row_mask_[j]) ++j;
      live_runs_.emplace_back(i, j - i);
      for (Index k = i; k < j; ++k) live_index_.push_back(k);
      live_rows_ += j - i;
      i = j;
    }
  }

  Index out_ = 0, in_ = 0;
  Matrix U_, V_, S_;  // S_ is (out, in), or 0 x 0 once released
  VectorType bias_;
  RowMask row_mask_;
  ElementMask element_mask_;
  std::vector<std::pair<Index, Index>> live_runs_;
  std::vector<Index> live_index_;  // the live rows, ascending
  Index live_rows_ = 0;
  ProductForm product_form_ = ProductForm::automatic;
};

// The products, out of the class so that an explicit instantiation declaration covers them
// (members defined in the class are inline, and compilers instantiate those anyway).
template <class Scalar_>
void LowRankSparseLinear<Scalar_>::forward(ConstMatrixRef<Scalar> x, MatrixRef<Scalar> y,
                                          Cache& cache) const {
  static constexpr const char* where = "LowRankSparseLinear::forward";
  detail::check_input_width(where, x, in_features());
  detail::check_shape(where, "y", y, x.rows(), out_features());
  check_parameters(where);
  const Index n = x.rows();
  prepare_cache(cache, n);
  cache.tokens_ = n;
  cache.rank_ = rank();
  cache.merged_ = false;
  if (n == 0) return;  // y is empty (and its data may be null: no blocks of it)
  find_nonzero_rows(cache);
  if (merges(n, cache.every_live_row_ ? live_rows_ : Index(cache.nonzero_index_.size()))) {
    cache.merged_ = true;
    y.noalias() = x * form_weight(cache).transpose();
  } else {
    auto xv = cached_xv(cache, n);
    xv.noalias() = x * V_.transpose();
    y.noalias() = xv * U_.transpose();
    if (cache.every_live_row_) add_rows_product(x, y, cache, live_index_, live_runs_);
    else add_rows_product(x, y, cache, cache.nonzero_index_, cache.nonzero_runs_);
  }
  if (has_bias()) y.rowwise() += bias_.transpose();
}

template <class Scalar_>
Eigen::Map<typename LowRankSparseLinear<Scalar_>::Matrix> LowRankSparseLinear<Scalar_>::form_weight(
    Cache& cache) const {
  reserve_weight(cache);
  Eigen::Map<Matrix> w(cache.work_.data(), out_, in_);
  if (sparse_released()) w.noalias() = U_ * V_;
  else {
    w = S_;  // its pruned entries are zero
    w.noalias() += U_ * V_;
  }
  cache.weight_formed_ = true;
  return w;
}

template <class Scalar_>
void LowRankSparseLinear<Scalar_>::add_rows_product(ConstMatrixRef<Scalar> x, MatrixRef<Scalar> y,
                                                   Cache& cache, const std::vector<Index>& index,
                                                   const Runs& runs) const {
  const Index n = x.rows(), rows = Index(index.size());
  if (gathers(runs, rows)) {
    reserve_gather(cache, n, runs, rows);
    for_each_group(rows, [&](Index r0, Index m) {
      Eigen::Map<Matrix> s(cache.rows_.data(), m, in_);
      Eigen::Map<Matrix> t(cache.cols_.data(), n, m);
      for (Index j = 0; j < m; ++j) s.row(j) = S_.row(index[std::size_t(r0 + j)]);
      t.noalias() = x * s.transpose();
      for (Index j = 0; j < m; ++j) y.col(index[std::size_t(r0 + j)]) += t.col(j);
    });
  } else {
    for (const auto& run : runs)
      y.middleCols(run.first, run.second).noalias() +=
          x * S_.middleRows(run.first, run.second).transpose();
  }
}

template <class Scalar_>
void LowRankSparseLinear<Scalar_>::add_rows_input_gradient(ConstMatrixRef<Scalar> dy,
                                                          MatrixRef<Scalar> dx, Cache& cache,
                                                          const std::vector<Index>& index,
                                                          const Runs& runs) const {
  const Index n = dy.rows(), rows = Index(index.size());
  if (gathers(runs, rows)) {
    reserve_gather(cache, n, runs, rows);
    for_each_group(rows, [&](Index r0, Index m) {
      Eigen::Map<Matrix> s(cache.rows_.data(), m, in_);
      Eigen::Map<Matrix> dys(cache.cols_.data(), n, m);
      for (Index j = 0; j < m; ++j) {
        dys.col(j) = dy.col(index[std::size_t(r0 + j)]);
        s.row(j) = S_.row(index[std::size_t(r0 + j)]);
      }
      dx.noalias() += dys * s;
    });
  } else {
    for (const auto& run : runs)
      dx.noalias() += dy.middleCols(run.first, run.second) * S_.middleRows(run.first, run.second);
  }
}

template <class Scalar_>
void LowRankSparseLinear<Scalar_>::backward_impl(ConstMatrixRef<Scalar> x,
                                                 ConstMatrixRef<Scalar> dy, Cache& cache,
                                                 MatrixRef<Scalar>* dx,
                                                 Gradients& grads) const {
  static constexpr const char* where = "LowRankSparseLinear::backward";
  detail::check_input_width(where, x, in_features());
  detail::check_shape(where, "dy", dy, x.rows(), out_features());
  check_parameters(where);
  if (cache.tokens_ != x.rows() || cache.rank_ != rank())
    detail::fail<state_error>(where, "the cache holds a forward of ", cache.tokens_,
                              " tokens at rank ", cache.rank_, " but x has ", x.rows(),
                              " tokens at rank ", rank(), "; call forward with this cache first");
  detail::check_shape(where, "grads.U", grads.U, U_.rows(), U_.cols());
  detail::check_shape(where, "grads.V", grads.V, V_.rows(), V_.cols());
  detail::check_shape(where, "grads.S", grads.S, S_.rows(), S_.cols());
  if (grads.bias.size() != bias_.size())
    detail::fail<shape_error>(where, "grads.bias has ", grads.bias.size(), " entries but ",
                              bias_.size(), " were expected");
  const Index n = x.rows();
  if (n == 0) return;  // no tokens: nothing to add
  if (cache.merged_) {
    merged_backward(x, dy, cache, dx, grads);
    return;
  }
  auto xv = cached_xv(cache, n);
  auto dxv = cached_dxv(cache, n);
  grads.U.noalias() += dy.transpose() * xv;
  dxv.noalias() = dy * U_;
  grads.V.noalias() += dxv.transpose() * x;
  if (dx != nullptr) dx->noalias() += dxv * V_;
  // The forward skipped live rows of S that were all zero: their input gradient is zero too, but
  // they get their own gradient below.
  MatrixRef<Scalar>* dx_with_grads = cache.every_live_row_ ? dx : nullptr;
  if (dx != nullptr && !cache.every_live_row_)
    add_rows_input_gradient(dy, *dx, cache, cache.nonzero_index_, cache.nonzero_runs_);
  if (gathers(live_runs_, live_rows_)) {
    reserve_gather(cache, n, live_runs_, live_rows_);  // the mask may have changed since the forward
    for_each_group(live_rows_, [&](Index r0, Index m) {
      Eigen::Map<Matrix> s(cache.rows_.data(), m, in_);
      Eigen::Map<Matrix> dys(cache.cols_.data(), n, m);
      for (Index j = 0; j < m; ++j) dys.col(j) = dy.col(live_index_[std::size_t(r0 + j)]);
      if (dx_with_grads != nullptr) {
        for (Index j = 0; j < m; ++j) s.row(j) = S_.row(live_index_[std::size_t(r0 + j)]);
        dx_with_grads->noalias() += dys * s;
      }
      s.noalias() = dys.transpose() * x;  // the gathered rows' gradient
      for (Index j = 0; j < m; ++j) grads.S.row(live_index_[std::size_t(r0 + j)]) += s.row(j);
    });
  } else {
    for (const auto& run : live_runs_) {
      grads.S.middleRows(run.first, run.second).noalias() +=
          dy.middleCols(run.first, run.second).transpose() * x;
      if (dx_with_grads != nullptr)
        dx_with_grads->noalias() += dy.middleCols(run.first, run.second) * S_.middleRows(run.first, run.second);
    }
  }
  if (has_element_mask()) grads.S.array() *= element_mask_.array().template cast<Scalar>();
  if (has_bias()) grads.bias.noalias() += dy.colwise().sum().transpose();
}

template <class Scalar_>
void LowRankSparseLinear<Scalar_>::merged_backward(ConstMatrixRef<Scalar> x,
                                                   ConstMatrixRef<Scalar> dy, Cache& cache,
                                                   MatrixRef<Scalar>* dx, Gradients& grads) const {
  Eigen::Map<Matrix> w(cache.work_.data(), out_, in_);
  if (dx != nullptr) {
    if (!cache.weight_formed_) form_weight(cache);
    dx->noalias() += dy * w;
  }
  auto& g = w;  // W is read: dyᵀ·x takes its place
  g.noalias() = dy.transpose() * x;
  cache.weight_formed_ = false;
  grads.U.noalias() += g * V_.transpose();
  grads.V.noalias() += U_.transpose() * g;
  if (!sparse_released()) {
    if (live_rows_ == out_) grads.S += g;
    else
      for (const auto& run : live_runs_)
        grads.S.middleRows(run.first, run.second) += g.middleRows(run.first, run.second);
    if (has_element_mask()) grads.S.array() *= element_mask_.array().template cast<Scalar>();
  }
  if (has_bias()) grads.bias.noalias() += dy.colwise().sum().transpose();
}

/// A rank-0 LowRankSparseLinear holding W in S: the dense layer of the ITP baseline (the pruner
/// on a plain dense weight), or any unpruned dense layer.
template <class Scalar>
LowRankSparseLinear<Scalar> make_dense_layer(detail::non_deduced_t<ConstMatrixRef<Scalar>> w,
                                             bool with_bias = false) {
  LowRankSparseLinear<Scalar> layer(w.rows(), w.cols(), 0, with_bias);
  detail::check_finite("make_dense_layer", "W", w);
  layer.S() = w;
  return layer;
}

/// Prunes every row of S and frees it: the low-rank-only baseline (call after svd_init).
template <class Scalar>
void make_low_rank_only(LowRankSparseLinear<Scalar>& layer) {
  layer.clear_element_mask();
  layer.set_row_mask(RowMask::Zero(layer.out_features()));
  layer.release_sparse();
}

// Explicit instantiation (docs/build.md): with LMSHRINK_EXTERN_TEMPLATES defined, the float and
// double layers are compiled once, by src/instances/ (the target lmshrink::instances).
#define LMSHRINK_LOW_RANK_SPARSE_LINEAR_INSTANCES(prefix) \
  prefix template class LowRankSparseLinear<float>;      \
  prefix template class LowRankSparseLinear<double>;
#ifdef LMSHRINK_EXTERN_TEMPLATES
LMSHRINK_LOW_RANK_SPARSE_LINEAR_INSTANCES(extern)
#endif

LMSHRINK_NAMESPACE_END
