#pragma once
// Per-matrix allocation of one parameter budget between low rank and sparse entries.
//
//   lmshrink::StorageChoiceOptions opt;                       // budgets and splits to try
//   std::vector<std::vector<lmshrink::StorageChoice>> table;
//   for (each matrix m) table.push_back(lmshrink::storage_choices<float>(W_m, stats_m, opt));
//   std::vector<std::size_t> pick = lmshrink::allocate_storage(table, total_budget);
//   // matrix m: table[m][pick[m]].rank and .sparse_entries, for sparse_plus_low_rank_init
//
// Each matrix is measured, on its calibration statistics, at several budgets (shares of its
// dense size) and, within each budget, several splits between U·V and S: low rank only, S only
// and mixtures, each fitted by sparse_plus_low_rank_init. A budget keeps its best split. The
// allocation then gives every matrix its cheapest budget and spends the rest greedily on the
// move with the largest drop of Σ weight·(relative output error)² per added parameter.

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "calibration.hpp"
#include "config.hpp"
#include "errors.hpp"
#include "low_rank_sparse_linear.hpp"
#include "sparse_plus_low_rank.hpp"
#include "types.hpp"

LMSHRINK_NAMESPACE_BEGIN

/// One way to store a matrix: U·V of `rank` plus `sparse_entries` live entries of S.
struct StorageChoice {
  Index rank = 0;
  Index sparse_entries = 0;
  /// Stored values: rank·(out + in) + sparse_entries.
  Index parameters = 0;
  /// ‖X(W − U·V − S)ᵀ‖_F / ‖X·Wᵀ‖_F of the fit (sparse_plus_low_rank_init's best iteration).
  double relative_output_error = 1.0;
  /// The share of the budget in U·V that was chosen, in [0, 1].
  double lowrank_share = 0.0;
};

struct StorageChoiceOptions {
  /// Budgets to measure, as shares of out·in, each in (0, 1].
  std::vector<double> budgets = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9};
  /// Splits to try within a budget: the share in U·V, each in [0, 1] (0: S only; 1: U·V only).
  std::vector<double> lowrank_shares = {0.0, 0.25, 0.5, 0.75, 1.0};
  /// The fit: iterations, low-rank kind, refit and damping (rank and sparse_entries are set here).
  SparsePlusLowRankOptions fit;
};

/// For each budget of `options`, the split with the smallest output error (ties: the first
/// listed), sorted by parameters. W is (out, in); stats are its inputs' statistics.
template <class Scalar>
std::vector<StorageChoice> storage_choices(detail::non_deduced_t<ConstMatrixRef<Scalar>> W,
                                           const GramAccumulator& stats,
                                           const StorageChoiceOptions& options = {}) {
  static constexpr const char* where = "storage_choices";
  if (W.rows() == 0 || W.cols() == 0)
    detail::fail<shape_error>(where, "W is ", W.rows(), "x", W.cols(), "; a non-empty matrix was expected");
  if (options.budgets.empty() || options.lowrank_shares.empty())
    detail::fail<value_error>(where, "budgets and lowrank_shares must not be empty (got ",
                              options.budgets.size(), " and ", options.lowrank_shares.size(), ")");
  for (double b : options.budgets)
    if (!(b > 0 && b <= 1)) detail::fail<value_error>(where, "budgets must be in (0, 1], got ", b);
  for (double s : options.lowrank_shares)
    if (!(s >= 0 && s <= 1)) detail::fail<value_error>(where, "lowrank_shares must be in [0, 1], got ", s);
  const Index out = W.rows(), in = W.cols(), size = out * in;
  std::vector<StorageChoice> result;
  LowRankSparseLinear<Scalar> scratch;
  for (double b : options.budgets) {
    const Index budget = std::max<Index>(1, Index(std::floor(b * double(size))));
    StorageChoice best;
    bool found = false;
    for (double share : options.lowrank_shares) {
      const Index rank = std::min(std::min(out, in), Index(std::floor(share * double(budget) / double(out + in))));
      // U·V only keeps its whole-rank cost; any other split spends the rest on S.
      const Index entries = share == 1.0 ? 0 : std::min(size, budget - rank * (out + in));
      if (rank == 0 && entries == 0) continue;
      SparsePlusLowRankOptions fit = options.fit;
      fit.rank = rank;
      fit.sparse_entries = entries;
      const auto r = sparse_plus_low_rank_init<Scalar>(W, scratch, fit, stats);
      const double err = r.relative_output_error[std::size_t(r.best_iteration)];
      if (!found || err < best.relative_output_error) {
        best = {rank, entries, rank * (out + in) + entries, err, share};
        found = true;
      }
    }
    if (found) result.push_back(best);
  }
  if (result.empty())
    detail::fail<value_error>(where, "no budget of ", options.budgets.size(), " leaves a rank or an entry for a ",
                              out, "x", in, " matrix");
  std::stable_sort(result.begin(), result.end(),
                   [](const StorageChoice& a, const StorageChoice& b) { return a.parameters < b.parameters; });
  return result;
}

/// One choice per matrix (an index into choices[m]) with Σ parameters ≤ budget, minimising
/// Σ weights[m]·error² greedily (see the header comment). weights default to 1. Throws
/// value_error when even the cheapest choices exceed the budget.
inline std::vector<std::size_t> allocate_storage(const std::vector<std::vector<StorageChoice>>& choices,
                                                 Index budget, const std::vector<double>& weights = {}) {
  static constexpr const char* where = "allocate_storage";
  if (!weights.empty() && weights.size() != choices.size())
    detail::fail<shape_error>(where, "weights has ", weights.size(), " entries but there are ",
                              choices.size(), " matrices");
  std::vector<std::size_t> pick(choices.size(), 0);
  Index used = 0;
  for (std::size_t m = 0; m < choices.size(); ++m) {
    if (choices[m].empty()) detail::fail<value_error>(where, "matrix ", m, " has no choices");
    if (!weights.empty() && !(weights[m] >= 0 && std::isfinite(weights[m])))
      detail::fail<value_error>(where, "weights must be finite and >= 0, got ", weights[m], " for matrix ", m);
    std::size_t cheapest = 0;
    for (std::size_t c = 1; c < choices[m].size(); ++c)
      if (choices[m][c].parameters < choices[m][cheapest].parameters) cheapest = c;
    pick[m] = cheapest;
    used += choices[m][cheapest].parameters;
  }
  if (used > budget)
    detail::fail<value_error>(where, "the cheapest choices need ", used, " parameters but the budget is ", budget);
  for (;;) {
    double best_rate = 0;
    std::size_t best_m = 0, best_c = 0;
    for (std::size_t m = 0; m < choices.size(); ++m) {
      const double w = weights.empty() ? 1.0 : weights[m];
      const StorageChoice& now = choices[m][pick[m]];
      for (std::size_t c = 0; c < choices[m].size(); ++c) {
        const StorageChoice& next = choices[m][c];
        const Index cost = next.parameters - now.parameters;
        if (cost <= 0 || used + cost > budget) continue;
        const double gain = w * (now.relative_output_error * now.relative_output_error -
                                 next.relative_output_error * next.relative_output_error);
        const double rate = gain / double(cost);
        if (rate > best_rate) {
          best_rate = rate;
          best_m = m;
          best_c = c;
        }
      }
    }
    if (!(best_rate > 0)) break;
    used += choices[best_m][best_c].parameters - choices[best_m][pick[best_m]].parameters;
    pick[best_m] = best_c;
  }
  return pick;
}

LMSHRINK_NAMESPACE_END
