#pragma once
// Distillation losses on a student's outputs, each returning its value and writing its gradient
// with respect to the student's logits (or hidden states).
//
//   lmshrink::LossOptions opt;              // mean over the tokens of this call
//   opt.temperature = 2;
//   double kl = lmshrink::kl_divergence<float>(student_logits, teacher_logits, grad, opt);
//
// Shapes: logits (tokens, vocab), hidden states (tokens, dim), targets (tokens), all row-major.
// Reduction: the sum over unmasked tokens times `scale`; scale = 0 (the default) means
// 1 / (unmasked tokens), the mean. To process a long batch in chunks of tokens, pass
// scale = 1 / (unmasked tokens of the whole batch) to every chunk and add the returned values.
// Gradients overwrite `grad` (rows of masked tokens are zeroed) unless `accumulate` is set, in
// which case they are added and masked rows are left alone.
//
// Vocabulary-sized losses take each row's maximum, then pass over the row in tiles, with
// exponentials in the logits' type and sums in double, and allocate nothing: no (tokens × vocab)
// softmax is ever formed, so a 50,257-token vocabulary costs no memory beyond the caller's
// logits and gradient.

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "config.hpp"
#include "errors.hpp"
#include "types.hpp"

LMSHRINK_NAMESPACE_BEGIN

struct LossOptions {
  double temperature = 1.0;  ///< softmax temperature T of KL/JSD; divergences are scaled by T²
  double scale = 0.0;        ///< multiplies the per-token sum; 0 = 1 / unmasked tokens (mean)
  double weight = 1.0;       ///< multiplies the value and the gradient (for sums of losses)
  bool accumulate = false;   ///< add the gradient into grad instead of overwriting it
  const RowMask* mask = nullptr;  ///< one flag per token, 1 = counts; null = every token
};

namespace detail {

constexpr Index kVocabTile = 2048;

/// A row's log-sum-exp of z/T, taken from its maximum: sum = Σ exp((z − max)/T) and, when
/// asked, weighted = Σ exp((z − max)/T)·(wa − wb)/T.
struct RowLse {
  double max = 0;  // max(z), a value of the row's scalar type
  double inv_t = 1;
  double sum = 0, weighted = 0;
  bool finite = true;  // every value of the row was finite
  double lse() const { return max * inv_t + std::log(sum); }
};

template <class S>
struct LossArgs {
  const char* where;
  Index tokens, width;
  double scale;     // per-token factor (already resolved from the mean)
  bool accumulate;
  const RowMask* mask;
};

inline bool token_counts(const RowMask* mask, Index i) { return mask == nullptr || (*mask)[i] != 0; }

template <class S>
void check_targets(const LossArgs<S>& a, const Eigen::Ref<const Eigen::VectorXi>& targets) {
  if (targets.size() != a.tokens)
    fail<shape_error>(a.where, "targets has ", targets.size(), " entries but there are ", a.tokens,
                      " tokens");
  for (Index i = 0; i < a.tokens; ++i)
    if (token_counts(a.mask, i) && (targets[i] < 0 || targets[i] >= a.width))
      fail<value_error>(a.where, "target of token ", i, " is ", targets[i], " but must be in [0, ",
                        a.width, ")");
}

template <class S, class A, class B, class G>
LossArgs<S> check_loss_args(const char* where, const A& student, const B& teacher, const G& grad,
                            const LossOptions& opt, bool uses_temperature) {
  if (teacher.rows() != student.rows() || teacher.cols() != student.cols())
    fail<shape_error>(where, "teacher is ", teacher.rows(), "x", teacher.cols(),
                      " but the student is ", student.rows(), "x", student.cols(),
                      "; the same shape was expected");
  check_shape(where, "grad", grad, student.rows(), student.cols());
  if (student.cols() == 0) fail<shape_error>(where, "outputs have no columns");
  if (uses_temperature && !(opt.temperature > 0 && std::isfinite(opt.temperature)))
    fail<value_error>(where, "temperature must be positive and finite, got ", opt.temperature);
  if (!(opt.scale >= 0 && std::isfinite(opt.scale)))
    fail<value_error>(where, "scale must be ≥ 0 and finite (0 = mean), got ", opt.scale);
  Index counted = student.rows();
  if (opt.mask != nullptr) {
    if (opt.mask->size() != student.rows())
      fail<shape_error>(where, "mask has ", opt.mask->size(), " entries but there are ",
                        student.rows(), " tokens");
    counted = 0;
    for (Index i = 0; i < opt.mask->size(); ++i) {
      if ((*opt.mask)[i] > 1)
        fail<value_error>(where, "mask entries must be 0 or 1, entry ", i, " is ",
                          int((*opt.mask)[i]));
      counted += (*opt.mask)[i];
    }
  }
  if (!(opt.weight >= 0 && std::isfinite(opt.weight)))
    fail<value_error>(where, "weight must be ≥ 0 and finite, got ", opt.weight);
  double scale = opt.scale;
  if (scale == 0) scale = counted > 0 ? 1.0 / double(counted) : 0.0;  // all masked: defined zero
  return {where, student.rows(), student.cols(), scale * opt.weight, opt.accumulate, opt.mask};
}

template <class S>
void check_finite_row(const char* where, const char* what, const S* row, Index width, Index i,
                      bool finite) {
  if (finite) return;
  for (Index j = 0; j < width; ++j)
    if (!std::isfinite(double(row[j])))
      fail<numeric_error>(where, what, " has a non-finite value (", row[j], ") at (", i, ", ", j,
                          "); finite values were expected");
}

/// g[j] = fill(j) (or += when accumulating), tile by tile.
template <class S, class Fill>
void write_grad_row(const LossArgs<S>& a, S* g, Fill fill) {
  for (Index j0 = 0; j0 < a.width; j0 += kVocabTile) {
    const Index j1 = std::min(a.width, j0 + kVocabTile);
    if (a.accumulate)
      for (Index j = j0; j < j1; ++j) g[j] += S(fill(j));
    else
      for (Index j = j0; j < j1; ++j) g[j] = S(fill(j));
  }
}

/// Σ over counted tokens of row_loss(i, student row, other row, grad row), times the scale;
/// the gradient rows of uncounted tokens are zeroed (or left alone when accumulating).
template <class S, class A, class B, class G, class RowLoss>
double sum_rows(const LossArgs<S>& a, const A& student, const B& other, G& grad,
                RowLoss row_loss) {
  double total = 0;
  for (Index i = 0; i < a.tokens; ++i) {
    S* g = grad.row(i).data();
    if (!token_counts(a.mask, i)) {
      if (!a.accumulate) std::fill(g, g + a.width, S(0));
      continue;
    }
    total += row_loss(i, student.row(i).data(), other.row(i).data(), g);
  }
  return total * a.scale;
}

/// One pass over a row for its log-sum-exp of z/T (and, when `wa` is given, the weighted sum of
/// RowLse). The exponentials are taken in S, vectorized, from (z − max)·(1/T), which is exact up to
/// one rounding for the terms that matter; sums are in double. A tile at a time goes through a
/// stack buffer.
template <class S>
RowLse lse_pass(const S* z, Index width, double inv_t, const S* wa = nullptr,
                const S* wb = nullptr) {
  using Tile = Eigen::Array<S, Eigen::Dynamic, 1>;
  const Eigen::Map<const Tile> row(z, width);
  RowLse acc;
  acc.inv_t = inv_t;
  if (!row.allFinite()) {
    acc.finite = false;  // reported by the caller
    return acc;
  }
  const S top = row.maxCoeff(), it = S(inv_t);
  acc.max = double(top);
  alignas(64) S buffer[kVocabTile];
  for (Index j0 = 0; j0 < width; j0 += kVocabTile) {
    const Index len = std::min(kVocabTile, width - j0);
    Eigen::Map<Tile> e(buffer, len);
    e = ((row.segment(j0, len) - top) * it).exp();
    acc.sum += e.template cast<double>().sum();
    if (wa != nullptr) {
      const Eigen::Map<const Tile> a(wa + j0, len), b(wb + j0, len);
      acc.weighted += (e * (a - b)).template cast<double>().sum() * inv_t;
    }
  }
  return acc;
}

/// softmax(z/T) of a row whose RowLse is `l`, as an expression in S: exp((z − max)/T − log sum).
template <class S, class Row>
auto softmax_of(const Row& z, const RowLse& l) {
  return ((z - S(l.max)) * S(l.inv_t) - S(std::log(l.sum))).exp();
}

/// Row map helpers for the gradient writers.
template <class S>
using RowArray = Eigen::Map<Eigen::Array<S, Eigen::Dynamic, 1>>;
template <class S>
using ConstRowArray = Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, 1>>;

template <class S, class Expr>
void assign_or_add(S* g, Index width, bool accumulate, const Expr& expr) {
  RowArray<S> out(g, width);
  if (accumulate)
    out += expr.template cast<S>();
  else
    out = expr.template cast<S>();
}

}  // namespace detail

/// Soft-target KL(teacher ‖ student) of softmax(z/T), times T² (Hinton et al.), per token.
/// ∂/∂z_s = T·(softmax(z_s/T) − softmax(z_t/T)) per counted token, times the scale.
template <class S>
double kl_divergence(ConstMatrixRef<S> student, ConstMatrixRef<S> teacher, MatrixRef<S> grad,
                     const LossOptions& opt = {}) {
  const auto a = detail::check_loss_args<S>("kl_divergence", student, teacher, grad, opt, true);
  const double T = opt.temperature, inv_t = 1.0 / T;
  return detail::sum_rows(a, student, teacher, grad, [&](Index i, const S* zs, const S* zt, S* g) {
    const auto ls = detail::lse_pass(zs, a.width, inv_t);
    detail::check_finite_row(a.where, "student", zs, a.width, i, ls.finite);
    const auto lt = detail::lse_pass(zt, a.width, inv_t, zt, zs);
    detail::check_finite_row(a.where, "teacher", zt, a.width, i, lt.finite);
    const double lse_s = ls.lse(), lse_t = lt.lse();
    const detail::ConstRowArray<S> xs(zs, a.width), xt(zt, a.width);
    detail::assign_or_add(g, a.width, a.accumulate,
                          S(a.scale * T) * (detail::softmax_of<S>(xs, ls) - detail::softmax_of<S>(xt, lt)));
    return (lt.weighted / lt.sum - lse_t + lse_s) * T * T;
  });
}

/// Reverse KL(student ‖ teacher) of softmax(z/T), times T²: mode-seeking, for generation.
template <class S>
double reverse_kl_divergence(ConstMatrixRef<S> student, ConstMatrixRef<S> teacher,
                             MatrixRef<S> grad, const LossOptions& opt = {}) {
  const auto a = detail::check_loss_args<S>("reverse_kl_divergence", student, teacher, grad, opt, true);
  const double T = opt.temperature, inv_t = 1.0 / T;
  return detail::sum_rows(a, student, teacher, grad, [&](Index i, const S* zs, const S* zt, S* g) {
    const auto ls = detail::lse_pass(zs, a.width, inv_t, zs, zt);
    detail::check_finite_row(a.where, "student", zs, a.width, i, ls.finite);
    const auto lt = detail::lse_pass(zt, a.width, inv_t);
    detail::check_finite_row(a.where, "teacher", zt, a.width, i, lt.finite);
    const double lse_s = ls.lse(), lse_t = lt.lse();
    const double kl = ls.weighted / ls.sum - lse_s + lse_t;
    const double row_value = kl * T * T;
    // ∂KL/∂z_j = (1/T)·p_j·(log p_j − log q_j − KL); times T².
    const detail::ConstRowArray<S> xs(zs, a.width), xt(zt, a.width);
    detail::assign_or_add(g, a.width, a.accumulate,
                          S(a.scale * T) * detail::softmax_of<S>(xs, ls) *
                              ((xs - xt) * S(inv_t) - S(lse_s - lse_t + kl)));
    return row_value;
  });
}

/// Generalized Jensen–Shannon divergence JSD(β) = β·KL(p_t ‖ m) + (1 − β)·KL(p_s ‖ m) with
/// m = β·p_t + (1 − β)·p_s (Agarwal et al., GKD), of softmax(z/T), times T²; 0 < β < 1.
template <class S>
double jsd_divergence(ConstMatrixRef<S> student, ConstMatrixRef<S> teacher, MatrixRef<S> grad,
                      double beta, const LossOptions& opt = {}) {
  const auto a = detail::check_loss_args<S>("jsd_divergence", student, teacher, grad, opt, true);
  if (!(beta > 0 && beta < 1))
    detail::fail<value_error>(a.where, "beta must be in (0, 1), got ", beta);
  const double T = opt.temperature, inv_t = 1.0 / T;
  return detail::sum_rows(a, student, teacher, grad, [&](Index i, const S* zs, const S* zt, S* g) {
    const auto ls = detail::lse_pass(zs, a.width, inv_t);
    detail::check_finite_row(a.where, "student", zs, a.width, i, ls.finite);
    const auto lt = detail::lse_pass(zt, a.width, inv_t);
    detail::check_finite_row(a.where, "teacher", zt, a.width, i, lt.finite);
    const double lse_s = ls.lse(), lse_t = lt.lse();
    // log p, log q, log m for column j, stable for tiny probabilities.
    const auto logs = [&](Index j, double& lp, double& lq, double& lm) {
      lp = double(zs[j]) * inv_t - lse_s;
      lq = double(zt[j]) * inv_t - lse_t;
      const double hi = std::max(std::log(beta) + lq, std::log1p(-beta) + lp);
      const double lo = std::min(std::log(beta) + lq, std::log1p(-beta) + lp);
      lm = hi + std::log1p(std::exp(lo - hi));
    };
    double loss = 0, mean_g = 0;  // Σ p·g with g = (1 − β)·log(p/m)
    for (Index j = 0; j < a.width; ++j) {
      double lp, lq, lm;
      logs(j, lp, lq, lm);
      const double p = std::exp(lp), q = std::exp(lq);
      loss += beta * q * (lq - lm) + (1 - beta) * p * (lp - lm);
      mean_g += p * (1 - beta) * (lp - lm);
    }
    const double row_value = loss * T * T;
    const double gs = a.scale * T;
    detail::write_grad_row(a, g, [&](Index j) {
      double lp, lq, lm;
      logs(j, lp, lq, lm);
      return gs * std::exp(lp) * ((1 - beta) * (lp - lm) - mean_g);
    });
    return row_value;
  });
}

/// Next-token cross-entropy −log softmax(z)[target]; ∂/∂z = softmax(z) − onehot(target).
template <class S>
double cross_entropy(ConstMatrixRef<S> logits, const Eigen::Ref<const Eigen::VectorXi>& targets,
                     MatrixRef<S> grad, const LossOptions& opt = {}) {
  LossOptions plain = opt;
  plain.temperature = 1;
  const auto a = detail::check_loss_args<S>("cross_entropy", logits, logits, grad, plain, false);
  detail::check_targets(a, targets);
  return detail::sum_rows(a, logits, logits, grad, [&](Index i, const S* z, const S*, S* g) {
    const int y = targets[i];
    const auto l = detail::lse_pass(z, a.width, 1.0);
    detail::check_finite_row(a.where, "logits", z, a.width, i, l.finite);
    const detail::ConstRowArray<S> x(z, a.width);
    detail::assign_or_add(g, a.width, a.accumulate, S(a.scale) * detail::softmax_of<S>(x, l));
    g[y] -= S(a.scale);
    return l.lse() - double(z[y]);
  });
}

/// Mean squared error over the columns, per token: Σ_j (s − f·t)² / width, f = target_factor
/// (1 by default); for logits or hidden states. ∂/∂s = 2(s − f·t)/width.
template <class S>
double mse_loss(ConstMatrixRef<S> student, ConstMatrixRef<S> target, MatrixRef<S> grad,
                const LossOptions& opt = {}, double target_factor = 1.0) {
  const auto a = detail::check_loss_args<S>("mse_loss", student, target, grad, opt, false);
  if (!std::isfinite(target_factor))
    detail::fail<value_error>(a.where, "target_factor must be finite, got ", target_factor);
  const double inv_w = 1.0 / double(a.width);
  return detail::sum_rows(a, student, target, grad, [&](Index i, const S* s, const S* t, S* g) {
    double row = 0;
    for (Index j = 0; j < a.width; ++j) {
      const double d = double(s[j]) - target_factor * double(t[j]);
      row += d * d;
    }
    if (!std::isfinite(row)) {
      detail::check_finite_row(a.where, "student", s, a.width, i, false);
      detail::check_finite_row(a.where, "target", t, a.width, i, false);
    }
    detail::write_grad_row(a, g, [&](Index j) {
      return a.scale * 2.0 * (double(s[j]) - target_factor * double(t[j])) * inv_w;
    });
    return row * inv_w;
  });
}

/// 1 − cos(s, t) per token, between hidden states (DistilGPT-2's cosine loss); norms below 1e-8
/// are treated as 1e-8.
template <class S>
double cosine_loss(ConstMatrixRef<S> student, ConstMatrixRef<S> teacher, MatrixRef<S> grad,
                   const LossOptions& opt = {}) {
  const auto a = detail::check_loss_args<S>("cosine_loss", student, teacher, grad, opt, false);
  constexpr double eps = 1e-8;
  return detail::sum_rows(a, student, teacher, grad, [&](Index i, const S* s, const S* t, S* g) {
    double ss = 0, tt = 0, st = 0;
    for (Index j = 0; j < a.width; ++j) {
      ss += double(s[j]) * double(s[j]);
      tt += double(t[j]) * double(t[j]);
      st += double(s[j]) * double(t[j]);
    }
    if (!std::isfinite(ss + tt + st)) {
      detail::check_finite_row(a.where, "student", s, a.width, i, false);
      detail::check_finite_row(a.where, "teacher", t, a.width, i, false);
    }
    const double ns = std::max(std::sqrt(ss), eps), nt = std::max(std::sqrt(tt), eps);
    const double c = st / (ns * nt);
    const double row_value = 1 - c;
    // ∂(1 − cos)/∂s = −(t/(|s||t|) − cos·s/|s|²)
    detail::write_grad_row(a, g, [&](Index j) {
      return -a.scale * (double(t[j]) / (ns * nt) - c * double(s[j]) / (ns * ns));
    });
    return row_value;
  });
}

// ---- presets and schedules -------------------------------------------------------------------

/// α·KL_T + (1 − α)·CE: the classic soft/hard mix. At T = 1 both terms share the student's
/// softmax and are taken in one pass (two exponentials per logit); a term of weight 0 is skipped.
template <class S>
double soft_hard_loss(ConstMatrixRef<S> student, ConstMatrixRef<S> teacher,
                      const Eigen::Ref<const Eigen::VectorXi>& targets, MatrixRef<S> grad,
                      double alpha, const LossOptions& opt = {}) {
  const auto a = detail::check_loss_args<S>("soft_hard_loss", student, teacher, grad, opt, true);
  if (!(alpha >= 0 && alpha <= 1))
    detail::fail<value_error>(a.where, "alpha must be in [0, 1], got ", alpha);
  detail::check_targets(a, targets);
  LossOptions o = opt;
  if (alpha == 0) return cross_entropy<S>(student, targets, grad, o);
  if (alpha == 1) return kl_divergence<S>(student, teacher, grad, o);
  if (opt.temperature != 1) {
    o.weight = opt.weight * alpha;
    double v = kl_divergence<S>(student, teacher, grad, o);
    o.accumulate = true;
    o.weight = opt.weight * (1 - alpha);
    return v + cross_entropy<S>(student, targets, grad, o);
  }
  // ∂/∂z_s = scale·(p_s − α·p_t − (1 − α)·onehot(target)).
  const S hard = S(a.scale * (1 - alpha)), soft = S(a.scale * alpha);
  return detail::sum_rows(a, student, teacher, grad, [&](Index i, const S* zs, const S* zt, S* g) {
    const auto ls = detail::lse_pass(zs, a.width, 1.0);
    detail::check_finite_row(a.where, "student", zs, a.width, i, ls.finite);
    const auto lt = detail::lse_pass(zt, a.width, 1.0, zt, zs);
    detail::check_finite_row(a.where, "teacher", zt, a.width, i, lt.finite);
    const double lse_s = ls.lse();
    const detail::ConstRowArray<S> xs(zs, a.width), xt(zt, a.width);
    detail::assign_or_add(g, a.width, a.accumulate,
                          S(a.scale) * detail::softmax_of<S>(xs, ls) - soft * detail::softmax_of<S>(xt, lt));
    const int y = targets[i];
    g[y] -= hard;
    return alpha * (lt.weighted / lt.sum - lt.lse() + lse_s) + (1 - alpha) * (lse_s - double(zs[y]));
  });
}

struct DistilGpt2Weights {
  double kl = 5.0, clm = 2.0, cosine = 1.0, temperature = 2.0;
};

struct DistilGpt2LossValue {
  double kl, clm, cosine;  // each reduced like the total, without the preset's weight
  double total;            // kl·5 + clm·2 + cosine·1 with the default weights
};

/// DistilGPT-2's triple loss: 5·KL(T = 2) + 2·CE + 1·(1 − cos) on the last hidden states.
/// Writes the logits' gradient and the hidden states' gradient. The components are reported
/// unweighted (each reduced like the total); a component with weight 0 is not computed.
template <class S>
DistilGpt2LossValue distilgpt2_loss(ConstMatrixRef<S> student_logits,
                                    ConstMatrixRef<S> teacher_logits,
                                    const Eigen::Ref<const Eigen::VectorXi>& targets,
                                    ConstMatrixRef<S> student_hidden,
                                    ConstMatrixRef<S> teacher_hidden, MatrixRef<S> grad_logits,
                                    MatrixRef<S> grad_hidden, const DistilGpt2Weights& w = {},
                                    const LossOptions& opt = {}) {
  static constexpr const char* where = "distilgpt2_loss";
  if (student_hidden.rows() != student_logits.rows())
    detail::fail<shape_error>(where, "hidden states have ", student_hidden.rows(),
                              " tokens but the logits have ", student_logits.rows());
  for (double x : {w.kl, w.clm, w.cosine})
    if (!(x >= 0 && std::isfinite(x)))
      detail::fail<value_error>(where, "loss weights must be ≥ 0 and finite, got ", x);
  DistilGpt2LossValue v{0, 0, 0, 0};
  LossOptions o = opt;
  o.temperature = w.temperature;
  bool logits_written = false;
  if (w.kl > 0) {
    o.weight = opt.weight * w.kl;
    v.kl = kl_divergence<S>(student_logits, teacher_logits, grad_logits, o) / w.kl;
    logits_written = true;
  }
  if (w.clm > 0) {
    o.weight = opt.weight * w.clm;
    o.accumulate = opt.accumulate || logits_written;
    v.clm = cross_entropy<S>(student_logits, targets, grad_logits, o) / w.clm;
    logits_written = true;
  }
  if (!logits_written && !opt.accumulate) grad_logits.setZero();
  o.accumulate = opt.accumulate;
  if (w.cosine > 0) {
    o.weight = opt.weight * w.cosine;
    v.cosine = cosine_loss<S>(student_hidden, teacher_hidden, grad_hidden, o) / w.cosine;
  } else if (!opt.accumulate) {
    grad_hidden.setZero();
  }
  v.total = w.kl * v.kl + w.clm * v.clm + w.cosine * v.cosine;
  return v;
}

/// Annealing-KD (Jafari et al., 2021): phase 1 fits the student's logits to the teacher's
/// scaled by temp/τ_max with MSE, temp rising from 1 to τ_max over `phase1_steps`; phase 2
/// trains on hard labels.
struct AnnealingKdSchedule {
  double tau_max = 10.0;
  std::int64_t phase1_steps = 1000;
};

/// The temperature at `step` of phase 1: linear from 1 (step 0) to τ_max (the last step).
inline double annealing_temperature(const AnnealingKdSchedule& s, std::int64_t step) {
  static constexpr const char* where = "annealing_temperature";
  if (!(s.tau_max >= 1 && std::isfinite(s.tau_max)))
    detail::fail<value_error>(where, "tau_max must be ≥ 1 and finite, got ", s.tau_max);
  if (s.phase1_steps < 1)
    detail::fail<value_error>(where, "phase1_steps must be ≥ 1, got ", s.phase1_steps);
  if (step < 0) detail::fail<value_error>(where, "step must be ≥ 0, got ", step);
  if (s.phase1_steps == 1) return s.tau_max;
  const double f = double(std::min(step, s.phase1_steps - 1)) / double(s.phase1_steps - 1);
  return 1.0 + (s.tau_max - 1.0) * f;
}

/// The Annealing-KD loss at `step`: MSE(z_s, z_t·temp/τ_max) in phase 1, CE after.
template <class S>
double annealing_kd_loss(const AnnealingKdSchedule& schedule, std::int64_t step,
                         ConstMatrixRef<S> student, ConstMatrixRef<S> teacher,
                         const Eigen::Ref<const Eigen::VectorXi>& targets, MatrixRef<S> grad,
                         const LossOptions& opt = {}) {
  const double temp = annealing_temperature(schedule, step);
  if (step >= schedule.phase1_steps) return cross_entropy<S>(student, targets, grad, opt);
  return mse_loss<S>(student, teacher, grad, opt, temp / schedule.tau_max);
}

LMSHRINK_NAMESPACE_END
