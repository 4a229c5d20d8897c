#pragma once
// Data-aware sparse + low-rank initialisation: W (out, in) ≈ U·V + S with S holding exactly k
// live entries (an element mask), fitted to the output error ‖X(W − U·V − S)ᵀ‖_F over
// calibration inputs X summarised by their Gram matrix Ḡ = XᵀX / tokens.
//
//   lmshrink::GramAccumulator stats(in);  stats.add<float>(x);   // the layer's inputs
//   lmshrink::SparsePlusLowRankOptions opt;
//   opt.rank = 8;  opt.sparse_entries = 512;  opt.iterations = 5;
//   auto r = lmshrink::sparse_plus_low_rank_init<float>(W, layer, opt, stats);
//   // r.relative_output_error[t]: after iteration t + 1; r.low_rank_only_error: S = 0
//
// The alternation is that of OATS (Zhang & Papyan, 2024): with D = diag(input RMS),
// repeat { L = rank-r truncated SVD of (W − S)·D;  S = the k largest entries of (W − L)·D },
// both mapped back by D⁻¹. Options change the two steps:
// - LowRankFit::whitened fits L to the output error under the full Ḡ (the whitened SVD of
//   svd_init) instead of its diagonal; LowRankFit::scaled is OATS.
// - refit_values: after S's entries are chosen, their values minimise the output error row by
//   row under the full Ḡ (a small least-squares solve per row) instead of copying W − L.
// With a diagonal Ḡ and λ = 0 every step minimises the same objective, so the error never
// increases; otherwise it may, and the layer receives the iteration with the smallest error.

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

#include "calibration.hpp"
#include "config.hpp"
#include "errors.hpp"
#include "low_rank_sparse_linear.hpp"
#include "svd_init.hpp"
#include "types.hpp"

LMSHRINK_NAMESPACE_BEGIN

/// How the low-rank step of sparse_plus_low_rank_init fits L = U·V to W − S.
enum class LowRankFit {
  scaled,   ///< SVD of (W − S)·D, D = diag(input RMS): OATS
  whitened  ///< SVD of (W − S)·L_G with L_G·L_Gᵀ = Ḡ + λI: the output error under the full Ḡ
};

struct SparsePlusLowRankOptions {
  /// Rank of U·V, in [0, min(out, in)] (0: S alone, data-aware magnitude pruning).
  Index rank = 0;
  /// Live entries of S, in [0, out·in].
  Index sparse_entries = 0;
  /// Alternations of the low-rank and the sparse step, >= 1 (one when rank is 0).
  int iterations = 5;
  LowRankFit low_rank = LowRankFit::whitened;
  /// The low-rank step's truncated SVD: exact, or randomized with SvdInitOptions' oversampling,
  /// power iterations and seed (docs/calibration.md gives its accuracy).
  SvdMethod svd_method = SvdMethod::exact;
  /// Choose S's values by least squares under the full Ḡ (see the header comment).
  bool refit_values = true;
  /// λ = damping · mean(diag Ḡ) is added to Ḡ's diagonal where Ḡ is factored or solved. >= 0.
  double damping = 1e-3;
};

struct SparsePlusLowRankResult {
  Index rank = 0;
  Index sparse_entries = 0;
  /// ‖X(W − U·V − S)ᵀ‖_F / ‖X·Wᵀ‖_F under the undamped Ḡ, after each iteration. Rank 0
  /// runs one iteration whatever `iterations` says: with no U·V there is nothing to alternate.
  std::vector<double> relative_output_error;
  /// The iteration whose factors the layer received (the smallest error; ties: the first).
  int best_iteration = 0;
  /// The same for the first low-rank fit alone (S = 0): what S adds is the difference.
  double low_rank_only_error = 0.0;
  /// ‖W − U·V − S‖_F / ‖W‖_F at the end.
  double relative_error = 0.0;
};

namespace detail {

/// tr(E·Ḡ·Eᵀ), clamped at 0 (Ḡ is PSD; negatives are rounding).
inline double output_error_energy(const Eigen::MatrixXd& e, const Eigen::MatrixXd& g) {
  return std::max(0.0, ((e * g).array() * e.array()).sum());
}

/// Mask of the k entries of largest |r(i, j)|·d(j); ties go to the lower flat index.
inline ElementMask largest_scaled_entries(const Eigen::MatrixXd& r, const Eigen::VectorXd& d,
                                          Index k) {
  const Index rows = r.rows(), cols = r.cols(), n = rows * cols;
  ElementMask mask = ElementMask::Zero(rows, cols);
  if (k == 0) return mask;
  std::vector<std::pair<double, Index>> score(static_cast<std::size_t>(n));
  for (Index i = 0; i < rows; ++i)
    for (Index j = 0; j < cols; ++j)
      score[std::size_t(i * cols + j)] = {std::abs(r(i, j)) * d[j], i * cols + j};
  const auto larger = [](const std::pair<double, Index>& a, const std::pair<double, Index>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  if (k < n) std::nth_element(score.begin(), score.begin() + (k - 1), score.end(), larger);
  for (Index t = 0; t < k; ++t) {
    const Index flat = score[std::size_t(t)].second;
    mask(flat / cols, flat % cols) = 1;
  }
  return mask;
}

/// The values of S on `mask` that minimise (r − s)·Ḡ·(r − s)ᵀ row by row, r = W − U·V:
/// Ḡ_JJ·s_J = (Ḡ·rᵀ)_J on each row's live columns J (λ on the diagonal for safety).
/// A template (Dense = Eigen::MatrixXd): only the file that compiles the fit compiles the solvers.
template <class Dense>
Eigen::MatrixXd refit_sparse_values(const Dense& r, const ElementMask& mask, const Dense& g, double lambda) {
  const Index rows = r.rows(), cols = r.cols();
  Eigen::MatrixXd s = Eigen::MatrixXd::Zero(rows, cols);
  const Eigen::MatrixXd rg = r * g;  // row i: (Ḡ·r_iᵀ)ᵀ
  std::vector<Index> live;
  for (Index i = 0; i < rows; ++i) {
    live.clear();
    for (Index j = 0; j < cols; ++j)
      if (mask(i, j)) live.push_back(j);
    const Index m = Index(live.size());
    if (m == 0) continue;
    Eigen::MatrixXd a(m, m);
    Eigen::VectorXd b(m);
    // The lower triangle (all that LLT and LDLT read), column by column as both are stored.
    for (Index q = 0; q < m; ++q) {
      b[q] = rg(i, live[std::size_t(q)]);
      const Index c = live[std::size_t(q)];
      for (Index p = q; p < m; ++p) a(p, q) = g(live[std::size_t(p)], c);
      a(q, q) += lambda;
    }
    // Cholesky (blocked: 6x faster than LDLᵀ at 1536 kept entries); a block that is not
    // positive definite (a dead input with λ = 0) tries LDLᵀ, then keeps the residual's values.
    Eigen::VectorXd x;
    bool ok = false;
    {
      const Eigen::LLT<Eigen::MatrixXd> llt(a);
      if (llt.info() == Eigen::Success) {
        x = llt.solve(b);
        ok = x.allFinite();
      }
    }
    if (!ok) {
      const Eigen::LDLT<Eigen::MatrixXd> ldlt(a);
      x = ldlt.solve(b);
      ok = ldlt.info() == Eigen::Success && x.allFinite();
    }
    for (Index p = 0; p < m; ++p)
      s(i, live[std::size_t(p)]) = ok ? x[p] : r(i, live[std::size_t(p)]);
  }
  return s;
}

}  // namespace detail

/// Initialises `layer` to (out, in, rank) with U·V + S ≈ W, S's element mask holding exactly
/// options.sparse_entries live entries. Keeps the layer's bias if it has one of size out.
/// Computed in double. Throws shape_error when stats do not fit W, value_error for options out
/// of range or all-zero calibration inputs.
template <class Scalar>
SparsePlusLowRankResult sparse_plus_low_rank_init(detail::non_deduced_t<ConstMatrixRef<Scalar>> w,
                                                  LowRankSparseLinear<Scalar>& layer,
                                                  const SparsePlusLowRankOptions& options,
                                                  const GramAccumulator& stats) {
  static constexpr const char* where = "sparse_plus_low_rank_init";
  const Index out = w.rows(), in = w.cols();
  if (out <= 0 || in <= 0)
    detail::fail<shape_error>(where, "W is ", out, "x", in, "; a non-empty matrix was expected");
  if (options.rank < 0 || options.rank > std::min(out, in))
    detail::fail<value_error>(where, "rank must be in [0, min(out, in)] = [0, ", std::min(out, in),
                              "], got ", options.rank);
  if (options.sparse_entries < 0 || options.sparse_entries > out * in)
    detail::fail<value_error>(where, "sparse_entries must be in [0, out*in] = [0, ", out * in,
                              "], got ", options.sparse_entries);
  if (options.iterations < 1)
    detail::fail<value_error>(where, "iterations must be >= 1, got ", options.iterations);
  if (!(options.damping >= 0) || !std::isfinite(options.damping))
    detail::fail<value_error>(where, "damping must be a finite value >= 0, got ", options.damping);
  detail::check_finite(where, "W", w);
  const Eigen::MatrixXd g = detail::checked_mean_gram(where, stats, in);
  const double mean_diag = g.diagonal().mean();
  if (!(mean_diag > 0))
    detail::fail<value_error>(where, "the calibration inputs are all zero (mean diagonal of the "
                                     "Gram matrix is ", mean_diag, "); they cannot weight the output error");
  const double lambda = options.damping * mean_diag;

  // D = input RMS, floored so that a dead input keeps its entries rankable by magnitude.
  const Eigen::VectorXd d = g.diagonal().cwiseMax(1e-12 * mean_diag).cwiseSqrt();
  // The map of the low-rank step into its fitting space and back.
  detail::Whitener fit_space;
  if (options.low_rank == LowRankFit::whitened) {
    fit_space = detail::whitening_factor(where, g, lambda);
  } else {
    fit_space.scale = d;  // diag(input RMS)
  }

  const Eigen::MatrixXd wd = w.template cast<double>();
  const double total = detail::output_error_energy(wd, g);
  const auto relative = [&](const Eigen::MatrixXd& e) {
    return total > 0 ? std::sqrt(detail::output_error_energy(e, g) / total) : 0.0;
  };
  SparsePlusLowRankResult result;
  result.rank = options.rank;
  result.sparse_entries = options.sparse_entries;
  Eigen::MatrixXd lr = Eigen::MatrixXd::Zero(out, in), s = Eigen::MatrixXd::Zero(out, in);
  detail::ColMatrix<double> u(out, 0), vt(0, in);
  ElementMask mask, best_mask;
  detail::ColMatrix<double> best_u, best_vt;
  Eigen::MatrixXd best_s;
  double best_error = 0;
  SvdInitOptions svd;
  svd.rank = std::max<Index>(1, options.rank);
  svd.method = options.svd_method;
  Eigen::VectorXd sigma;
  for (int it = 0; it < options.iterations; ++it) {
    if (options.rank > 0) {
      Index rank = options.rank;
      const detail::ColMatrix<double> a = fit_space.whiten(detail::ColMatrix<double>(wd - s));
      detail::truncated_factors<double>(a, rank, svd, u, vt, sigma);
      fit_space.unwhiten(vt);
      lr.noalias() = u * vt;
    }
    if (it == 0) result.low_rank_only_error = relative(wd - lr);
    const Eigen::MatrixXd residual = wd - lr;
    mask = detail::largest_scaled_entries(residual, d, options.sparse_entries);
    s = options.refit_values ? detail::refit_sparse_values(residual, mask, g, lambda)
                             : Eigen::MatrixXd(residual.array() * mask.cast<double>().array());
    result.relative_output_error.push_back(relative(residual - s));
    if (it == 0 || result.relative_output_error.back() < best_error) {
      best_error = result.relative_output_error.back();
      result.best_iteration = it;
      best_u = u, best_vt = vt, best_s = s, best_mask = mask;
    }
    if (options.rank == 0) break;  // no low-rank step: every further iteration repeats this one
  }

  const bool bias = layer.has_bias() && layer.out_features() == out;
  Vector<Scalar> saved_bias;
  if (bias) saved_bias = layer.bias();
  layer.resize(out, in, options.rank, bias);
  if (bias) layer.bias() = saved_bias;
  layer.U() = best_u.template cast<Scalar>();
  layer.V() = best_vt.template cast<Scalar>();
  layer.S() = best_s.template cast<Scalar>();
  layer.set_element_mask(best_mask);
  const double wn = wd.squaredNorm();
  result.relative_error = wn > 0 ? std::sqrt((wd - best_u * best_vt - best_s).squaredNorm() / wn) : 0.0;
  return result;
}

// Explicit instantiation (docs/build.md): with LMSHRINK_EXTERN_TEMPLATES defined, the float and
// double fits are compiled once, by src/instances/sparse_plus_low_rank.cpp (and the whitening
// they share with svd_init by src/instances/svd_init.cpp), not by every file that fits a layer.
#define LMSHRINK_SPARSE_PLUS_LOW_RANK_INSTANCE(prefix, Scalar)                                      \
  prefix template SparsePlusLowRankResult sparse_plus_low_rank_init<Scalar>(                        \
      detail::non_deduced_t<ConstMatrixRef<Scalar>>, LowRankSparseLinear<Scalar>&,                  \
      const SparsePlusLowRankOptions&, const GramAccumulator&);
#ifdef LMSHRINK_EXTERN_TEMPLATES
LMSHRINK_SPARSE_PLUS_LOW_RANK_INSTANCE(extern, float)
LMSHRINK_SPARSE_PLUS_LOW_RANK_INSTANCE(extern, double)
#endif

LMSHRINK_NAMESPACE_END
