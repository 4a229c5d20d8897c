#pragma once
// Sequential reconstruction: a compressed layer fitted so that, on the inputs the compressed
// student actually feeds it, it reproduces what the teacher's layer outputs on the teacher's
// inputs. Layers are fitted in forward order, each on a student whose earlier layers are final.
//
//   lmshrink::InputPairAccumulator pairs(in);
//   for (each calibration batch) pairs.add<float>(x_student, x_teacher);   // the same tokens
//   auto target = lmshrink::reconstruction_target<float>(W_teacher, pairs);
//   lmshrink::sparse_plus_low_rank_init<float>(target, layer, opt, pairs.student());
//
// The objective ‖X_s·Ŵᵀ − X_t·Wᵀ‖_F² equals ‖X_s·(Ŵ − W*)ᵀ‖_F² plus a constant, with
// W* = W·(X_tᵀX_s)·(X_sᵀX_s)⁻¹, so a structured fit of W* under the student's Gram matrix
// (svd_init, sparse_plus_low_rank_init) is a closed-form fit to the teacher's outputs.
// A ridge term λ·mean(diag G_ss)·‖Ŵ − W‖² pulls W* toward W, so that input directions the
// calibration tokens barely use keep the teacher's weights (and λ → ∞ gives W itself).

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <cmath>
#include <cstdint>

#include "calibration.hpp"
#include "config.hpp"
#include "errors.hpp"
#include "types.hpp"

LMSHRINK_NAMESPACE_BEGIN

/// Accumulates, over tokens seen by both models, the student's Gram matrix Σ x_sᵀx_s and the
/// cross sums Σ x_sᵀx_t of a layer's inputs (double sums).
class InputPairAccumulator {
 public:
  InputPairAccumulator() = default;
  explicit InputPairAccumulator(Index in_features) { reset(in_features); }

  void reset(Index in_features) {
    student_.reset(in_features);  // refuses in_features <= 0
    cross_.setZero(in_features, in_features);
  }

  /// Adds the rows of x_student and x_teacher (tokens, in_features), row i of each being the
  /// same token. Non-finite inputs are refused.
  template <class Scalar>
  void add(detail::non_deduced_t<ConstMatrixRef<Scalar>> x_student,
           detail::non_deduced_t<ConstMatrixRef<Scalar>> x_teacher) {
    static constexpr const char* where = "InputPairAccumulator::add";
    if (cross_.size() == 0)
      detail::fail<state_error>(where, "the accumulator has no size; construct it with in_features");
    detail::check_input_width(where, x_student, cross_.cols());
    detail::check_shape(where, "x_teacher", x_teacher, x_student.rows(), x_student.cols());
    detail::check_finite(where, "x_teacher", x_teacher);
    student_.add<Scalar>(x_student);  // checks x_student's values
    if (x_student.rows() == 0) return;
    cross_.noalias() += x_student.template cast<double>().transpose() * x_teacher.template cast<double>();
  }

  /// Adds another accumulator's sums (the same in_features).
  void merge(const InputPairAccumulator& other) {
    student_.merge(other.student_);  // refuses a different size
    cross_ += other.cross_;
  }

  Index features() const { return cross_.cols(); }
  std::int64_t tokens() const { return student_.tokens(); }
  /// The student's inputs alone: the statistics a fit of the reconstruction target is made under.
  const GramAccumulator& student() const { return student_; }
  /// X_sᵀX_t / tokens (in, in). Throws state_error before any token was added.
  Eigen::MatrixXd mean_cross() const {
    if (tokens() == 0)
      detail::fail<state_error>("InputPairAccumulator::mean_cross",
                                "no tokens were added; reconstruction needs at least one token");
    return cross_ / static_cast<double>(tokens());
  }

 private:
  GramAccumulator student_;
  Eigen::MatrixXd cross_;  // Σ x_sᵀ x_t
};

/// W* (out, in): the dense weight whose outputs on the student's inputs best match the
/// teacher's outputs X_t·Wᵀ in least squares, with a ridge toward W:
/// W* = W·(X_tᵀX_s + μI)·(X_sᵀX_s + μI)⁻¹, μ = λ·mean(diag X_sᵀX_s) (per token).
/// W is the teacher's weight (out, in); damping λ >= 0.
template <class Scalar>
RowMatrix<Scalar> reconstruction_target(detail::non_deduced_t<ConstMatrixRef<Scalar>> W,
                                        const InputPairAccumulator& pairs, double damping = 1e-3) {
  static constexpr const char* where = "reconstruction_target";
  if (W.rows() == 0 || W.cols() == 0)
    detail::fail<shape_error>(where, "W is ", W.rows(), "x", W.cols(), "; a non-empty matrix was expected");
  if (pairs.features() != W.cols())
    detail::fail<shape_error>(where, "the input pairs have ", pairs.features(),
                              " features but W has ", W.cols(), " inputs");
  if (!(damping >= 0) || !std::isfinite(damping))
    detail::fail<value_error>(where, "damping must be a finite value >= 0, got ", damping);
  detail::check_finite(where, "W", W);
  Eigen::MatrixXd gss = detail::checked_mean_gram(where, pairs.student(), W.cols());
  const Eigen::MatrixXd cross = pairs.mean_cross();  // X_sᵀX_t / tokens
  detail::check_finite(where, "the cross sums of the input pairs", cross);
  const double mean_diag = gss.diagonal().mean();
  if (!(mean_diag > 0))
    detail::fail<value_error>(where, "the student's inputs are all zero (mean diagonal of the "
                              "Gram matrix is ", mean_diag, ")");
  const double mu = damping * mean_diag;
  gss.diagonal().array() += mu;
  // W*ᵀ = (G_ss + μI)⁻¹·(X_sᵀX_t + μI)·Wᵀ, by a pivoted LDLᵀ (G_ss may be singular when λ = 0).
  const Eigen::LDLT<Eigen::MatrixXd> ldlt(gss);
  if (ldlt.info() != Eigen::Success)
    detail::fail<numeric_error>(where, "the student's Gram matrix could not be factorised; raise damping");
  const Eigen::MatrixXd wt = W.template cast<double>().transpose();
  const Eigen::MatrixXd rhs = cross * wt + mu * wt;
  const Eigen::MatrixXd target_t = ldlt.solve(rhs);
  if (!target_t.allFinite())
    detail::fail<numeric_error>(where, "the solve gave non-finite values; the student's Gram "
                                "matrix is singular, raise damping above ", damping);
  return target_t.transpose().cast<Scalar>();
}

LMSHRINK_NAMESPACE_END
