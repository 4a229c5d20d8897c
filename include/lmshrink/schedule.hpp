#pragma once
// The cubic sparsity schedule (Zhu & Gupta 2017) as LoSparse uses it, as pure functions of the
// optimizer step g = 0, 1, 2, …:
//   g ≤ t_i               keep = 1,        no mask step
//   g > T − t_f           keep = p_final,  mask every step
//   otherwise             keep = p_final + (1 − p_final)·(1 − (g − t_i)/(T − t_i − t_f))³,
//                         mask when g mod ΔT == 0
// keep is the fraction of S's entries that stay live.

#include <algorithm>
#include <cmath>

#include "config.hpp"
#include "errors.hpp"
#include "types.hpp"

LMSHRINK_NAMESPACE_BEGIN

struct CubicSchedule {
  Index total_steps = 0;     // T
  Index initial_warmup = 0;  // t_i: steps with no pruning
  Index final_warmup = 0;    // t_f: last steps at p_final, masked every step
  double final_keep = 1.0;   // p_final ∈ (0, 1]
  Index mask_interval = 10;  // ΔT
};

struct ScheduleStep {
  double keep = 1.0;  // fraction of entries to keep at this step
  bool mask = false;  // whether this step applies a mask
};

/// Throws value_error unless T − t_i − t_f > 0, t_i, t_f ≥ 0, p_final ∈ (0, 1] and ΔT ≥ 1.
inline void validate(const CubicSchedule& s) {
  static constexpr const char* where = "CubicSchedule";
  if (s.initial_warmup < 0 || s.final_warmup < 0)
    detail::fail<value_error>(where, "warm-ups must be >= 0, got initial_warmup=",
                              s.initial_warmup, " final_warmup=", s.final_warmup);
  if (s.total_steps - s.initial_warmup - s.final_warmup <= 0)
    detail::fail<value_error>(where, "total_steps (", s.total_steps,
                              ") must exceed initial_warmup + final_warmup (",
                              s.initial_warmup + s.final_warmup, ")");
  if (!(s.final_keep > 0.0 && s.final_keep <= 1.0))
    detail::fail<value_error>(where, "final_keep must be in (0, 1], got ", s.final_keep);
  if (s.mask_interval < 1)
    detail::fail<value_error>(where, "mask_interval must be >= 1, got ", s.mask_interval);
}

/// The schedule at optimizer step g ≥ 0 (steps past T stay in the final phase).
inline ScheduleStep cubic_schedule(const CubicSchedule& s, Index step) {
  validate(s);
  if (step < 0) detail::fail<value_error>("cubic_schedule", "step must be >= 0, got ", step);
  if (step <= s.initial_warmup) return {1.0, false};
  if (step > s.total_steps - s.final_warmup) return {s.final_keep, true};
  const double span = static_cast<double>(s.total_steps - s.initial_warmup - s.final_warmup);
  const double left = 1.0 - static_cast<double>(step - s.initial_warmup) / span;
  return {s.final_keep + (1.0 - s.final_keep) * left * left * left,
          step % s.mask_interval == 0};
}

/// Fraction of entries kept at step g.
inline double cubic_keep_ratio(const CubicSchedule& s, Index step) {
  return cubic_schedule(s, step).keep;
}

/// Whether step g applies a mask.
inline bool is_mask_step(const CubicSchedule& s, Index step) {
  return cubic_schedule(s, step).mask;
}

/// A learning rate with a linear warm-up, then a cosine decay: steps 0 … warmup_steps−1 rise
/// linearly to `peak` (step s gives peak·(s+1)/warmup_steps), then the rate follows
/// peak·(final_fraction + (1 − final_fraction)·(1 + cos(π·f))/2) with f going from 0 to 1 over
/// the remaining steps (steps past total_steps stay at the end of the curve).
struct WarmupCosine {
  double peak = 1e-3;
  Index total_steps = 1;
  Index warmup_steps = 1;        // >= 1
  double final_fraction = 0.1;   // of peak, in [0, 1]
};

inline double warmup_cosine_lr(const WarmupCosine& s, Index step) {
  static constexpr const char* where = "warmup_cosine_lr";
  if (!(s.peak > 0) || s.total_steps < 1 || s.warmup_steps < 1 || s.warmup_steps > s.total_steps ||
      !(s.final_fraction >= 0 && s.final_fraction <= 1))
    detail::fail<value_error>(where, "need peak > 0, 1 <= warmup_steps <= total_steps and final_fraction in "
                              "[0, 1]; got peak=", s.peak, " total_steps=", s.total_steps, " warmup_steps=",
                              s.warmup_steps, " final_fraction=", s.final_fraction);
  if (step < 0) detail::fail<value_error>(where, "step must be >= 0, got ", step);
  if (step < s.warmup_steps) return s.peak * double(step + 1) / double(s.warmup_steps);
  const double f = std::min(1.0, double(step - s.warmup_steps) / double(std::max<Index>(1, s.total_steps - s.warmup_steps)));
  return s.peak * (s.final_fraction + (1 - s.final_fraction) * 0.5 * (1 + std::cos(3.141592653589793 * f)));
}

LMSHRINK_NAMESPACE_END
