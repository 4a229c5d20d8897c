#pragma once
// Truncated-SVD initialization of a LowRankSparseLinear from a dense weight W (out, in):
//   W = P·diag(σ)·Qᵀ,  U = P_r·diag(√σ_r),  V = diag(√σ_r)·Q_rᵀ,  S = W − U·V (the SVD tail).
//
//   lmshrink::LowRankSparseLinear<float> layer;
//   lmshrink::SvdInitOptions opt;
//   opt.ratio = 0.25;                         // or opt.rank = 16, or opt.energy = 0.9
//   auto result = lmshrink::svd_init(W, layer, opt);
//   // result.relative_error = ‖W − U·V‖_F / ‖W‖_F
//
// Exact path: Eigen's BDCSVD (in double for float weights unless told otherwise). Randomized path: a
// Gaussian range finder with oversampling and power iterations (Halko, Martinsson, Tropp 2011),
// seeded and deterministic.

#include <Eigen/Core>
#include <Eigen/Cholesky>
#include <Eigen/Eigenvalues>
#include <Eigen/QR>
#include <Eigen/SVD>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "calibration.hpp"
#include "config.hpp"
#include "random.hpp"
#include "errors.hpp"
#include "low_rank_sparse_linear.hpp"
#include "types.hpp"

LMSHRINK_NAMESPACE_BEGIN

enum class SvdMethod { exact, randomized };

/// Exactly one of ratio, rank and energy must be set (> 0).
struct SvdInitOptions {
  /// Parameter ratio ρ in (0, 1]: r = ceil(ρ·out·in/(out + in)), as the LoSparse reference.
  double ratio = 0.0;
  /// Explicit rank in [1, min(out, in)].
  Index rank = 0;
  /// Energy target in (0, 1]: the smallest r with Σ_{i≤r} σ_i² ≥ energy·‖W‖_F² (exact only).
  double energy = 0.0;

  SvdMethod method = SvdMethod::exact;
  /// Exact path: decompose in double even for float weights (the SVD's accuracy, not speed).
  bool exact_in_double = true;
  /// Randomized path: work in double even for float weights. Off by default: at 768x3072, rank
  /// 256, float gives the same relative error at half the time (see docs/svd_init.md).
  bool randomized_in_double = false;
  /// Randomized path: extra sketch columns beyond r, and power (subspace) iterations. Four
  /// iterations keep flat spectra (real LM weights) within 0.5 % of the exact error.
  Index oversampling = 10;
  Index power_iterations = 4;
  std::uint64_t seed = 0x6c6d736872696e6bull;
  /// Whitened path (svd_init with calibration statistics): λ = damping · mean(diag Ḡ) is added
  /// to Ḡ before its Cholesky factorisation. Must be >= 0.
  double damping = 1e-3;
};

/// How the whitened path factored Ḡ + λI.
enum class Whitening { none, cholesky, eigen_fallback };

/// What svd_init produced; a status for the caller to judge, not an error.
struct SvdInitResult {
  Index rank = 0;
  /// ‖W − U·V‖_F / ‖W‖_F (0 for a zero W).
  double relative_error = 0.0;
  /// Σ_{i≤r} σ_i² / ‖W‖_F².
  double energy_kept = 0.0;
  /// Singular values in decreasing order: all min(out, in) on the exact path, the r + oversampling
  /// estimated ones on the randomized path. On the whitened path: those of W·L.
  Eigen::VectorXd singular_values;
  /// With calibration statistics: ‖X(W − U·V)ᵀ‖_F / ‖X·Wᵀ‖_F under the undamped Ḡ (NaN without).
  double relative_output_error = std::numeric_limits<double>::quiet_NaN();
  Whitening whitening = Whitening::none;
};

/// r = ceil(ρ·out·in/(out + in)), at least 1. Throws value_error unless ρ ∈ (0, 1].
inline Index rank_from_ratio(double ratio, Index out_features, Index in_features) {
  static constexpr const char* where = "rank_from_ratio";
  if (!(ratio > 0.0 && ratio <= 1.0))
    detail::fail<value_error>(where, "ratio must be in (0, 1], got ", ratio);
  if (out_features <= 0 || in_features <= 0)
    detail::fail<value_error>(where, "features must be positive, got ", out_features, "x",
                              in_features);
  const double r = std::ceil(ratio * static_cast<double>(out_features) *
                             static_cast<double>(in_features) /
                             static_cast<double>(out_features + in_features));
  return std::max<Index>(1, std::min<Index>(static_cast<Index>(r),
                                            std::min(out_features, in_features)));
}

/// The smallest r with Σ_{i≤r} σ_i² ≥ energy·Σ σ_i². σ in decreasing order, energy ∈ (0, 1].
inline Index rank_from_energy(const Eigen::Ref<const Eigen::VectorXd>& singular_values,
                              double energy) {
  static constexpr const char* where = "rank_from_energy";
  if (!(energy > 0.0 && energy <= 1.0))
    detail::fail<value_error>(where, "energy must be in (0, 1], got ", energy);
  if (singular_values.size() == 0)
    detail::fail<value_error>(where, "no singular values were given");
  const double total = singular_values.squaredNorm();
  if (total == 0.0) return 1;
  double acc = 0.0;
  for (Index i = 0; i < singular_values.size(); ++i) {
    acc += singular_values[i] * singular_values[i];
    // A relative slack of a few ulps so that energy = 1 is reached despite rounding.
    if (acc >= energy * total * (1.0 - 4 * std::numeric_limits<double>::epsilon())) return i + 1;
  }
  return singular_values.size();
}

namespace detail {

template <class T>
using ColMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;

/// Orthonormal basis of the columns of y (m, l), l ≤ m, by Householder QR.
template <class T>
ColMatrix<T> orthonormal_columns(const ColMatrix<T>& y) {
  Eigen::HouseholderQR<ColMatrix<T>> qr(y);
  return qr.householderQ() * ColMatrix<T>::Identity(y.rows(), y.cols());
}

/// Leading singular triplets of a (m, n) by a Gaussian range finder with power iterations.
/// Works on the shorter side: for m <= n it orthonormalises only (m, l) blocks, and the final
/// small SVD comes from the (l, l) Gram matrix of B = Qᵀ·A, formed in double. U·V as built by
/// svd_init (Q·P_r·P_rᵀ·B) never divides by a singular value, so tiny ones are harmless.
template <class T>
void randomized_svd(const ColMatrix<T>& a_in, Index rank, const SvdInitOptions& opt,
                    ColMatrix<T>& left, Eigen::Matrix<T, Eigen::Dynamic, 1>& sigma,
                    ColMatrix<T>& right) {
  const bool transposed = a_in.rows() > a_in.cols();
  ColMatrix<T> a_t;
  if (transposed) a_t = a_in.transpose();
  const ColMatrix<T>& a = transposed ? a_t : a_in;  // (m, n), m <= n
  const Index m = a.rows(), n = a.cols();
  const Index l = std::min<Index>(rank + opt.oversampling, m);
  SplitMix64 rng(opt.seed);
  ColMatrix<T> omega(n, l);
  for (Index j = 0; j < l; ++j)
    for (Index i = 0; i < n; ++i) omega(i, j) = static_cast<T>(rng.normal());
  ColMatrix<T> q = orthonormal_columns<T>(a * omega);
  ColMatrix<T> z(n, l);
  for (Index it = 0; it < opt.power_iterations; ++it) {
    z.noalias() = a.transpose() * q;
    q = orthonormal_columns<T>(a * z);  // one QR per (A·Aᵀ) step keeps rounding in check
  }
  const ColMatrix<T> b = q.transpose() * a;  // (l, n)
  const Eigen::MatrixXd gram = (b.template cast<double>() * b.template cast<double>().transpose());
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(gram);
  // Eigenvalues come in increasing order; reverse to decreasing.
  const Eigen::MatrixXd p = eig.eigenvectors().rowwise().reverse();
  const Eigen::VectorXd lambda = eig.eigenvalues().reverse();
  sigma = lambda.cwiseMax(0.0).cwiseSqrt().template cast<T>();
  const ColMatrix<T> p_t = p.template cast<T>();
  ColMatrix<T> u = q * p_t;                     // (m, l)
  ColMatrix<T> v = b.transpose() * p_t;         // (n, l), columns scaled by σ
  const T tiny = std::numeric_limits<T>::min() / std::numeric_limits<T>::epsilon();
  for (Index k = 0; k < l; ++k) v.col(k) /= std::max(sigma[k], tiny);
  if (transposed) {
    left = std::move(v);
    right = std::move(u);
  } else {
    left = std::move(u);
    right = std::move(v);
  }
}

/// Every singular triplet of a (m, n), thin: left (m, k), sigma (k), right (n, k), k = min(m, n).
template <class T>
void exact_svd(const ColMatrix<T>& a, ColMatrix<T>& left, Eigen::Matrix<T, Eigen::Dynamic, 1>& sigma,
               ColMatrix<T>& right) {
  Eigen::BDCSVD<ColMatrix<T>> svd(a, Eigen::ComputeThinU | Eigen::ComputeThinV);
  if (svd.info() != Eigen::Success)
    fail<numeric_error>("svd_init", "the SVD did not converge for a ", a.rows(), "x", a.cols(),
                        " matrix");
  left = svd.matrixU();
  sigma = svd.singularValues();
  right = svd.matrixV();
}

/// The rank-r factors of a (out, in): u (out, r) and vt (r, in) carry √σ each.
template <class T>
void truncated_factors(const ColMatrix<T>& a, Index& rank, const SvdInitOptions& opt,
                       ColMatrix<T>& u, ColMatrix<T>& vt, Eigen::VectorXd& sigma_out) {
  ColMatrix<T> left, right;
  Eigen::Matrix<T, Eigen::Dynamic, 1> sigma;
  if (opt.method == SvdMethod::exact) {
    exact_svd<T>(a, left, sigma, right);
    if (opt.energy > 0) rank = rank_from_energy(sigma.template cast<double>(), opt.energy);
  } else {
    randomized_svd<T>(a, rank, opt, left, sigma, right);
  }
  u = left.leftCols(rank);
  vt = right.leftCols(rank).transpose();
  for (Index k = 0; k < rank; ++k) {
    const T s = std::sqrt(std::max<T>(sigma[k], T(0)));
    u.col(k) *= s;
    vt.row(k) *= s;
  }
  sigma_out = sigma.template cast<double>();
}

inline Index requested_rank(const SvdInitOptions& opt, Index out, Index in) {
  if (opt.ratio > 0) return rank_from_ratio(opt.ratio, out, in);
  return opt.rank;  // 0 with an energy target: set by truncated_factors
}

/// Writes U, V and S = W − U·V into the layer, keeping its bias.
template <class T, class Scalar>
void store_factors(LowRankSparseLinear<Scalar>& layer, Index rank, const ColMatrix<T>& u,
                   const ColMatrix<T>& vt, const ColMatrix<T>& tail) {
  const Index out = tail.rows(), in = tail.cols();
  const bool bias = layer.has_bias() && layer.out_features() == out;
  Vector<Scalar> saved_bias;
  if (bias) saved_bias = layer.bias();
  layer.resize(out, in, rank, bias);
  if (bias) layer.bias() = saved_bias;
  layer.U() = u.template cast<Scalar>();
  layer.V() = vt.template cast<Scalar>();
  layer.S() = tail.template cast<Scalar>();
}

template <class T, class Scalar>
SvdInitResult svd_init_in(ConstMatrixRef<Scalar> w, LowRankSparseLinear<Scalar>& layer,
                          const SvdInitOptions& opt) {
  const ColMatrix<T> a = w.template cast<T>();
  Index rank = requested_rank(opt, w.rows(), w.cols());
  ColMatrix<T> u, vt;
  SvdInitResult result;
  truncated_factors<T>(a, rank, opt, u, vt, result.singular_values);
  ColMatrix<T> tail = a;
  tail.noalias() -= u * vt;
  store_factors<T, Scalar>(layer, rank, u, vt, tail);

  result.rank = rank;
  const double total = a.template cast<double>().squaredNorm();
  result.relative_error = total > 0 ? std::sqrt(tail.template cast<double>().squaredNorm() / total) : 0.0;
  result.energy_kept =
      total > 0 ? result.singular_values.head(rank).squaredNorm() / total : 1.0;
  return result;
}

/// The map of a fit into whitened space and back, applied without forming L⁻¹ (whose explicit
/// inverse was an in³ solve): W·L and X·L⁻¹ for L lower triangular (the Cholesky factor of
/// Ḡ + λI), for L = Q·diag(d) (the eigen fallback), or for L = diag(d) (kind none: OATS's
/// input-RMS scaling). Member templates: only files that whiten compile the products.
struct Whitener {
  Whitening kind = Whitening::none;
  Eigen::MatrixXd factor;  ///< cholesky: L; eigen_fallback: Q; none: empty
  Eigen::VectorXd scale;   ///< eigen_fallback and none: d

  /// w·L (rows, in).
  template <class M>
  M whiten(const M& w) const {
    M a(w.rows(), w.cols());
    if (kind == Whitening::cholesky) a.noalias() = w * factor.template triangularView<Eigen::Lower>();
    else if (kind == Whitening::eigen_fallback) a.noalias() = (w * factor) * scale.asDiagonal();
    else a.noalias() = w * scale.asDiagonal();
    return a;
  }
  /// x ← x·L⁻¹, x (rows, in).
  template <class M>
  void unwhiten(M& x) const {
    if (kind == Whitening::cholesky) {
      factor.template triangularView<Eigen::Lower>().template solveInPlace<Eigen::OnTheRight>(x);
    } else if (kind == Whitening::eigen_fallback) {
      const M scaled = x * scale.cwiseInverse().asDiagonal();
      x.noalias() = scaled * factor.transpose();
    } else {
      x = x * scale.cwiseInverse().asDiagonal();
    }
  }
};

/// L with L·Lᵀ = g + λI: Cholesky, or, when g + λI is not positive definite in floating point
/// (singular g with λ = 0, or rounding), a symmetric square root with eigenvalues raised to
/// max(λ, 1e-10·mean diag), which is still a valid weight.
/// A template (Gram = Eigen::MatrixXd): only files that whiten compile the eigensolver.
template <class Gram>
Whitener whitening_factor(const char* where, const Gram& g, double lambda) {
  const Index in = g.cols();
  Eigen::MatrixXd damped = g;
  damped.diagonal().array() += lambda;
  Whitener white;
  Eigen::LLT<Eigen::MatrixXd> llt(damped);
  if (llt.info() == Eigen::Success) {
    white.kind = Whitening::cholesky;
    white.factor = llt.matrixL();
    return white;
  }
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(damped);
  if (eig.info() != Eigen::Success)
    fail<numeric_error>(where, "the eigen-decomposition of the ", in, "x", in,
                        " calibration Gram matrix did not converge");
  const double floor = std::max(lambda, 1e-10 * g.diagonal().mean());
  white.kind = Whitening::eigen_fallback;
  white.factor = eig.eigenvectors();
  white.scale = eig.eigenvalues().cwiseMax(floor).cwiseSqrt();
  return white;
}

/// Whitened path, in double: L·Lᵀ = Ḡ + λI, factor W·L, map back with L⁻¹.
template <class Scalar>
SvdInitResult svd_init_whitened(ConstMatrixRef<Scalar> w, LowRankSparseLinear<Scalar>& layer,
                                const SvdInitOptions& opt, const Eigen::MatrixXd& g) {
  static constexpr const char* where = "svd_init";
  const Index in = w.cols();
  const double mean_diag = g.diagonal().mean();
  if (!(mean_diag > 0))
    fail<value_error>(where, "the calibration inputs are all zero (mean diagonal of the Gram "
                             "matrix is ", mean_diag, "); they cannot weight the output error");
  const double lambda = opt.damping * mean_diag;
  SvdInitResult result;
  const Whitener white = whitening_factor(where, g, lambda);
  result.whitening = white.kind;
  const ColMatrix<double> wd = w.template cast<double>();
  const ColMatrix<double> a = white.whiten(wd);
  Index rank = requested_rank(opt, w.rows(), in);
  ColMatrix<double> u, vt;
  truncated_factors<double>(a, rank, opt, u, vt, result.singular_values);
  ColMatrix<double> white_tail = a;  // (W − U·V)·L, before V leaves the whitened space
  white_tail.noalias() -= u * vt;
  white.unwhiten(vt);
  ColMatrix<double> tail = wd;
  tail.noalias() -= u * vt;
  store_factors<double, Scalar>(layer, rank, u, vt, tail);

  result.rank = rank;
  const double total = wd.squaredNorm();
  result.relative_error = total > 0 ? std::sqrt(tail.squaredNorm() / total) : 0.0;
  // ‖W·L‖², not Σσ²: the randomized path estimates only r + oversampling singular values.
  const double white_total = a.squaredNorm();
  result.energy_kept =
      white_total > 0 ? result.singular_values.head(rank).squaredNorm() / white_total : 1.0;
  // tr(E·Ḡ·Eᵀ) = ‖E·L‖² − λ‖E‖² when L·Lᵀ = Ḡ + λI (Cholesky): no (in, in) product. The
  // fallback's clamped L is not exact, so it weighs by Ḡ itself.
  double out_total = 0, out_tail = 0;
  if (white.kind == Whitening::cholesky) {
    out_total = white_total - lambda * total;
    out_tail = white_tail.squaredNorm() - lambda * tail.squaredNorm();
  } else {
    out_total = ((wd * g).array() * wd.array()).sum();
    out_tail = ((tail * g).array() * tail.array()).sum();
  }
  result.relative_output_error =
      out_total > 0 ? std::sqrt(std::max(0.0, out_tail) / out_total) : 0.0;
  return result;
}

}  // namespace detail

namespace detail {

inline void check_svd_options(const char* where, const SvdInitOptions& options, Index rows,
                              Index cols) {
  if (rows <= 0 || cols <= 0)
    fail<shape_error>(where, "W is ", rows, "x", cols, "; a non-empty matrix was expected");
  const int rules = (options.ratio != 0) + (options.rank != 0) + (options.energy != 0);
  if (rules != 1)
    fail<value_error>(where, "exactly one of ratio, rank and energy must be set, got ", rules,
                      " (ratio=", options.ratio, ", rank=", options.rank,
                      ", energy=", options.energy, ")");
  const Index max_rank = std::min(rows, cols);
  if (options.ratio != 0 && !(options.ratio > 0 && options.ratio <= 1))
    fail<value_error>(where, "ratio must be in (0, 1], got ", options.ratio);
  if (options.rank != 0 && (options.rank < 1 || options.rank > max_rank))
    fail<value_error>(where, "rank must be in [1, min(out, in)] = [1, ", max_rank, "], got ",
                      options.rank);
  if (options.energy != 0 && !(options.energy > 0 && options.energy <= 1))
    fail<value_error>(where, "energy must be in (0, 1], got ", options.energy);
  if (options.energy != 0 && options.method == SvdMethod::randomized)
    fail<value_error>(where, "an energy target needs the whole spectrum: use "
                             "SvdMethod::exact, or give a rank or ratio");
  if (options.oversampling < 0 || options.power_iterations < 0)
    fail<value_error>(where, "oversampling and power_iterations must be >= 0, got ",
                      options.oversampling, " and ", options.power_iterations);
  if (!(options.damping >= 0) || !std::isfinite(options.damping))
    fail<value_error>(where, "damping must be a finite value >= 0, got ", options.damping);
}

}  // namespace detail

/// Initializes `layer` from W (out, in): resizes it to (out, in, r), sets U, V and S = W − U·V,
/// resets its masks and keeps its bias if the layer already had one of size out.
/// The singular values of w, largest first, by svd_init's exact path (a divide-and-conquer SVD
/// in double, whatever Scalar is): for looking at a weight's spectrum before choosing a rank.
template <class Scalar>
Eigen::VectorXd singular_values(detail::non_deduced_t<ConstMatrixRef<Scalar>> w) {
  detail::check_finite("singular_values", "w", w);
  const detail::ColMatrix<double> a = w.template cast<double>();
  detail::ColMatrix<double> left, right;
  Eigen::VectorXd sigma;
  detail::exact_svd<double>(a, left, sigma, right);
  return sigma;
}

template <class Scalar>
SvdInitResult svd_init(detail::non_deduced_t<ConstMatrixRef<Scalar>> w,
                       LowRankSparseLinear<Scalar>& layer, const SvdInitOptions& options = {}) {
  static constexpr const char* where = "svd_init";
  detail::check_svd_options(where, options, w.rows(), w.cols());
  detail::check_finite(where, "W", w);
  const bool in_double = options.method == SvdMethod::exact ? options.exact_in_double
                                                             : options.randomized_in_double;
  if (in_double || std::is_same<Scalar, double>::value)
    return detail::svd_init_in<double, Scalar>(w, layer, options);
  return detail::svd_init_in<Scalar, Scalar>(w, layer, options);
}

/// Data-aware initialisation: U·V minimises the output error ‖X(W − U·V)ᵀ‖_F over the
/// calibration inputs X summarised by `stats` (the whitened truncated SVD of SVD-LLM), and
/// S = W − U·V. Computed in double. Ḡ + λI is factored by Cholesky; if that fails, by a clamped
/// eigen-decomposition (result.whitening says which). A ratio or rank is taken as given; an
/// energy target applies to the spectrum of W·L. Reports both the weight and the output error.
template <class Scalar>
SvdInitResult svd_init(detail::non_deduced_t<ConstMatrixRef<Scalar>> w,
                       LowRankSparseLinear<Scalar>& layer, const SvdInitOptions& options,
                       const GramAccumulator& stats) {
  static constexpr const char* where = "svd_init";
  detail::check_svd_options(where, options, w.rows(), w.cols());
  detail::check_finite(where, "W", w);
  const Eigen::MatrixXd g = detail::checked_mean_gram(where, stats, w.cols());
  return detail::svd_init_whitened<Scalar>(w, layer, options, g);
}

/// Raw pointer overload: W is (out, in) row-major with leading dimension ld.
template <class Scalar>
SvdInitResult svd_init(const Scalar* w, Index out_features, Index in_features, Index ld,
                       LowRankSparseLinear<Scalar>& layer, const SvdInitOptions& options = {}) {
  return svd_init<Scalar>(detail::map_rows("svd_init", "W", w, out_features, in_features, ld),
                          layer, options);
}

// Explicit instantiation (docs/build.md). With LMSHRINK_EXTERN_TEMPLATES defined, the float and
// double instances of the SVD's heavy parts are not compiled in every file that calls svd_init:
// each is compiled once, by its own file of src/instances/ (the target lmshrink::instances).
#define LMSHRINK_SVD_EXACT_INSTANCE(prefix, T)                                         \
  prefix template void detail::exact_svd<T>(const detail::ColMatrix<T>&,               \
                                            detail::ColMatrix<T>&,                      \
                                            Eigen::Matrix<T, Eigen::Dynamic, 1>&,       \
                                            detail::ColMatrix<T>&);
#define LMSHRINK_SVD_RANDOMIZED_INSTANCE(prefix, T)                                    \
  prefix template void detail::randomized_svd<T>(const detail::ColMatrix<T>&, Index,   \
                                                 const SvdInitOptions&,                 \
                                                 detail::ColMatrix<T>&,                 \
                                                 Eigen::Matrix<T, Eigen::Dynamic, 1>&,  \
                                                 detail::ColMatrix<T>&);
#define LMSHRINK_SVD_INIT_INSTANCE(prefix, T, Scalar)                                        \
  prefix template SvdInitResult detail::svd_init_in<T, Scalar>(ConstMatrixRef<Scalar>,       \
                                                               LowRankSparseLinear<Scalar>&, \
                                                               const SvdInitOptions&);
#define LMSHRINK_SVD_WHITENED_INSTANCE(prefix, Scalar)                                  \
  prefix template SvdInitResult detail::svd_init_whitened<Scalar>(                      \
      ConstMatrixRef<Scalar>, LowRankSparseLinear<Scalar>&, const SvdInitOptions&,      \
      const Eigen::MatrixXd&);
#define LMSHRINK_WHITENING_INSTANCE(prefix)                                              \
  prefix template detail::Whitener detail::whitening_factor<Eigen::MatrixXd>(const char*, \
                                                                             const Eigen::MatrixXd&, double);
#define LMSHRINK_SVD_INSTANCES(prefix)              \
  LMSHRINK_SVD_EXACT_INSTANCE(prefix, float)        \
  LMSHRINK_SVD_EXACT_INSTANCE(prefix, double)       \
  LMSHRINK_SVD_RANDOMIZED_INSTANCE(prefix, float)   \
  LMSHRINK_SVD_RANDOMIZED_INSTANCE(prefix, double)  \
  LMSHRINK_SVD_INIT_INSTANCE(prefix, float, float)  \
  LMSHRINK_SVD_INIT_INSTANCE(prefix, double, float) \
  LMSHRINK_SVD_INIT_INSTANCE(prefix, double, double) \
  LMSHRINK_SVD_WHITENED_INSTANCE(prefix, float)     \
  LMSHRINK_SVD_WHITENED_INSTANCE(prefix, double)    \
  LMSHRINK_WHITENING_INSTANCE(prefix)
#ifdef LMSHRINK_EXTERN_TEMPLATES
LMSHRINK_SVD_INSTANCES(extern)
#endif

LMSHRINK_NAMESPACE_END
