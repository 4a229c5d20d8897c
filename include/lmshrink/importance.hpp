#pragma once
// Importance scores of a prunable matrix (S of a LowRankSparseLinear, or a dense W), smoothed over
// optimizer steps exactly as the LoSparse reference does.
//
// Per step g (call after the optimizer step, before gradients are zeroed):
//   sensitivity = |S ∘ ∇S| (Taylor, default) · |S| (magnitude) · −S ∘ ∇S (movement)
//   ℓ = g mod ΔT
//   ℓ == 0:  ema ← β1·ema + (1 − β1)·window_mean          (window_mean of the previous window)
//            if 0 < β2 < 1: unc ← β2·unc + (1 − β2)·|window_mean − ema|   (with the new ema)
//            window_mean ← sensitivity                      (the window restarts)
//   ℓ != 0:  window_mean ← (window_mean·ℓ + sensitivity)/(ℓ + 1)
// No bias correction. score = ema, or ema ∘ unc with uncertainty (PLATON) on.

#include <Eigen/Core>
#include <cmath>

#include "config.hpp"
#include "errors.hpp"
#include "types.hpp"

LMSHRINK_NAMESPACE_BEGIN

enum class ImportanceKind { taylor, magnitude, movement };

struct ImportanceOptions {
  ImportanceKind kind = ImportanceKind::taylor;
  double beta1 = 0.85;  // EMA of window means
  double beta2 = 1.0;   // uncertainty EMA; 1 = off (the reference default)
  Index window = 10;    // ΔT, in optimizer steps
};

inline void validate(const ImportanceOptions& o) {
  static constexpr const char* where = "ImportanceOptions";
  if (!(o.beta1 >= 0.0 && o.beta1 < 1.0))
    detail::fail<value_error>(where, "beta1 must be in [0, 1), got ", o.beta1);
  if (!(o.beta2 > 0.0 && o.beta2 <= 1.0))
    detail::fail<value_error>(where, "beta2 must be in (0, 1] (1 turns uncertainty off), got ",
                              o.beta2);
  if (o.window < 1) detail::fail<value_error>(where, "window must be >= 1, got ", o.window);
}

/// Moving-average importance of one (rows, cols) matrix.
template <class Scalar_>
class ImportanceTracker {
 public:
  using Scalar = Scalar_;
  using Matrix = RowMatrix<Scalar>;
  static_assert(std::is_floating_point<Scalar>::value,
                "lmshrink::ImportanceTracker<Scalar>: Scalar must be float or double");

  ImportanceTracker() = default;
  ImportanceTracker(Index rows, Index cols, const ImportanceOptions& options = {})
      : options_(options) {
    validate(options_);
    if (rows <= 0 || cols <= 0)
      detail::fail<value_error>("ImportanceTracker", "shape must be positive, got ", rows, "x",
                                cols);
    ema_.setZero(rows, cols);
    window_mean_.setZero(rows, cols);
    if (uses_uncertainty()) uncertainty_.setZero(rows, cols);
  }

  bool uses_uncertainty() const { return options_.beta2 < 1.0; }
  const ImportanceOptions& options() const { return options_; }
  Index rows() const { return ema_.rows(); }
  Index cols() const { return ema_.cols(); }
  /// The last step passed to update(), or -1 before the first.
  Index last_step() const { return last_step_; }

  const Matrix& ema() const { return ema_; }
  const Matrix& window_mean() const { return window_mean_; }
  /// Empty unless uncertainty is on.
  const Matrix& uncertainty() const { return uncertainty_; }

  /// Folds in the sensitivity of `value` (the parameter after the optimizer step) and `grad`
  /// (the gradient that produced the step) at optimizer step `step`. Steps must advance by one.
  void update(ConstMatrixRef<Scalar> value, ConstMatrixRef<Scalar> grad, Index step) {
    static constexpr const char* where = "ImportanceTracker::update";
    detail::check_shape(where, "value", value, rows(), cols());
    if (options_.kind != ImportanceKind::magnitude) detail::check_shape(where, "grad", grad, rows(), cols());
    if (step < 0) detail::fail<value_error>(where, "step must be >= 0, got ", step);
    if (last_step_ >= 0 && step != last_step_ + 1)
      detail::fail<state_error>(where, "step ", step, " follows step ", last_step_,
                                "; call once per optimizer step, with consecutive steps");
    const Index l = step % options_.window;
    if (l == 0) {
      ema_ = Scalar(options_.beta1) * ema_ + Scalar(1 - options_.beta1) * window_mean_;
      if (uses_uncertainty())
        uncertainty_ = Scalar(options_.beta2) * uncertainty_ +
                       Scalar(1 - options_.beta2) * (window_mean_ - ema_).cwiseAbs();
    }
    const Scalar ls = Scalar(l), l1 = Scalar(l + 1);
    // Row by row through a one-row scratch: one pass over memory, and a non-finite sensitivity
    // is reported before the row it belongs to is touched.
    scratch_.resize(1, cols());
    for (Index i = 0; i < rows(); ++i) {
      const bool no_grad = options_.kind == ImportanceKind::magnitude;
      write_sensitivity(scratch_, value.row(i), no_grad ? value.row(i) : grad.row(i));
      if (!scratch_.allFinite())
        for (Index j = 0; j < cols(); ++j)
          if (!std::isfinite(scratch_(0, j)))
            detail::fail<numeric_error>(where, "non-finite sensitivity at (", i, ", ", j,
                                        "): value ", value(i, j), ", gradient ",
                                        options_.kind == ImportanceKind::magnitude ? Scalar(0)
                                                                                   : grad(i, j));
      if (l == 0) window_mean_.row(i) = scratch_;
      else window_mean_.row(i) = (window_mean_.row(i) * ls + scratch_) / l1;  // reference order
    }
    last_step_ = step;
  }

  /// score = ema (β2 = 1) or ema ∘ uncertainty, written into `out` (rows, cols).
  void score(MatrixRef<Scalar> out) const {
    detail::check_shape("ImportanceTracker::score", "out", out, rows(), cols());
    if (uses_uncertainty()) out = ema_.cwiseProduct(uncertainty_);
    else out = ema_;
  }

  /// Restores a saved state (shapes must match this tracker).
  void restore(const Matrix& ema, const Matrix& window_mean, const Matrix& uncertainty,
               Index last_step) {
    static constexpr const char* where = "ImportanceTracker::restore";
    detail::check_shape(where, "ema", ema, rows(), cols());
    detail::check_shape(where, "window_mean", window_mean, rows(), cols());
    if (uses_uncertainty()) detail::check_shape(where, "uncertainty", uncertainty, rows(), cols());
    ema_ = ema;
    window_mean_ = window_mean;
    if (uses_uncertainty()) uncertainty_ = uncertainty;
    last_step_ = last_step;
  }

 private:
  template <class Value, class Grad>
  void write_sensitivity(Matrix& out, const Value& value, const Grad& grad) {
    switch (options_.kind) {
      case ImportanceKind::magnitude: out = value.cwiseAbs(); break;
      case ImportanceKind::movement: out = -value.cwiseProduct(grad); break;
      case ImportanceKind::taylor:
      default: out = value.cwiseProduct(grad).cwiseAbs(); break;
    }
  }

  ImportanceOptions options_;
  Matrix ema_, window_mean_, uncertainty_;
  Matrix scratch_;  // one row of this step's sensitivity
  Index last_step_ = -1;
};

LMSHRINK_NAMESPACE_END
