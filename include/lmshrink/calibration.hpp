#pragma once
// Calibration statistics of a linear layer's inputs, for data-aware initialisation and scores.
//
//   lmshrink::GramAccumulator stats(in_features);
//   for (each calibration batch) stats.add<float>(x);        // x (tokens, in), the layer's input
//   lmshrink::SvdInitOptions opt;  opt.ratio = 0.25;
//   auto r = lmshrink::svd_init<float>(W, layer, opt, stats);  // whitened: min ‖X(W − U·V)ᵀ‖_F
//   Eigen::VectorXd energy = lmshrink::row_output_energy<float>(layer.S(), stats);
//
// G = XᵀX is accumulated in double. The whitened SVD (SVD-LLM's truncation-aware whitening) and
// the row output energies r·Ḡ·rᵀ with Ḡ = G / tokens live in svd_init.hpp and here.

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "config.hpp"
#include "errors.hpp"
#include "types.hpp"

LMSHRINK_NAMESPACE_BEGIN

/// Accumulates G = Σ xᵀx over the rows x of a layer's inputs (float or double in, double sums).
class GramAccumulator {
 public:
  GramAccumulator() = default;
  explicit GramAccumulator(Index in_features) { reset(in_features); }

  void reset(Index in_features) {
    if (in_features <= 0)
      detail::fail<value_error>("GramAccumulator", "in_features must be positive, got ",
                                in_features);
    gram_.setZero(in_features, in_features);
    tokens_ = 0;
  }

  /// Adds the rows of x (tokens, in_features). Non-finite inputs are refused.
  template <class Scalar>
  void add(detail::non_deduced_t<ConstMatrixRef<Scalar>> x) {
    static constexpr const char* where = "GramAccumulator::add";
    if (gram_.size() == 0)
      detail::fail<state_error>(where, "the accumulator has no size; construct it with in_features");
    detail::check_input_width(where, x, gram_.cols());
    detail::check_finite(where, "x", x);
    if (x.rows() == 0) return;
    const Eigen::MatrixXd xd = x.template cast<double>();
    gram_.selfadjointView<Eigen::Lower>().rankUpdate(xd.transpose());
    tokens_ += x.rows();
  }

  /// Adds another accumulator's sums (the same in_features).
  void merge(const GramAccumulator& other) {
    if (other.features() != features())
      detail::fail<shape_error>("GramAccumulator::merge", "the other accumulator has ",
                                other.features(), " features but this one ", features());
    gram_.triangularView<Eigen::Lower>() += other.gram_;
    tokens_ += other.tokens_;
  }

  Index features() const { return gram_.cols(); }
  std::int64_t tokens() const { return tokens_; }

  /// Ḡ = XᵀX / tokens (in, in), symmetric. Throws state_error before any token was added.
  Eigen::MatrixXd mean_gram() const {
    if (tokens_ == 0)
      detail::fail<state_error>("GramAccumulator::mean_gram",
                                "no tokens were added; calibration needs at least one token");
    Eigen::MatrixXd g = gram_.selfadjointView<Eigen::Lower>();
    return g / static_cast<double>(tokens_);
  }

 private:
  Eigen::MatrixXd gram_;  // lower triangle holds the sums
  std::int64_t tokens_ = 0;
};

namespace detail {

/// Checks that stats fit a layer with in_features inputs and hold finite, usable sums.
inline Eigen::MatrixXd checked_mean_gram(const char* where, const GramAccumulator& stats,
                                         Index in_features) {
  if (stats.features() != in_features)
    fail<shape_error>(where, "the calibration statistics have ", stats.features(),
                      " features but the weight has ", in_features, " inputs");
  if (stats.tokens() == 0)
    fail<value_error>(where, "the calibration statistics hold 0 tokens; at least one was expected");
  Eigen::MatrixXd g = stats.mean_gram();
  check_finite(where, "the calibration Gram matrix", g);
  return g;
}

}  // namespace detail

/// r·Ḡ·rᵀ for every row r of m (out, in): the mean squared output of that row over the
/// calibration tokens (its "output energy"). Ranks rows of S or W before any gradient exists.
template <class Scalar>
Eigen::VectorXd row_output_energy(detail::non_deduced_t<ConstMatrixRef<Scalar>> m,
                                  const GramAccumulator& stats) {
  static constexpr const char* where = "row_output_energy";
  const Eigen::MatrixXd g = detail::checked_mean_gram(where, stats, m.cols());
  detail::check_finite(where, "m", m);
  const Eigen::MatrixXd md = m.template cast<double>();
  const Eigen::MatrixXd mg = md * g;
  Eigen::VectorXd e = (mg.array() * md.array()).rowwise().sum();
  return e.cwiseMax(0.0);  // G is PSD: negatives are rounding
}

/// m(i, j)²·Ḡ(j, j) for every entry, flat in row-major order (out·in values): the mean squared
/// output each entry makes alone. Ranks single entries (element granularity) before any gradient.
template <class Scalar>
Eigen::VectorXd element_output_energy(detail::non_deduced_t<ConstMatrixRef<Scalar>> m,
                                      const GramAccumulator& stats) {
  static constexpr const char* where = "element_output_energy";
  const Eigen::MatrixXd g = detail::checked_mean_gram(where, stats, m.cols());
  detail::check_finite(where, "m", m);
  Eigen::VectorXd e(m.size());
  for (Index i = 0; i < m.rows(); ++i)
    for (Index j = 0; j < m.cols(); ++j) {
      const double v = static_cast<double>(m(i, j));
      e[i * m.cols() + j] = v * v * std::max(0.0, g(j, j));
    }
  return e;
}

/// ‖X·mᵀ‖_F² / tokens = tr(m·Ḡ·mᵀ): the output energy of a whole matrix.
template <class Scalar>
double output_energy(detail::non_deduced_t<ConstMatrixRef<Scalar>> m,
                     const GramAccumulator& stats) {
  return row_output_energy<Scalar>(m, stats).sum();
}

LMSHRINK_NAMESPACE_END
