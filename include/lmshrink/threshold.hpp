#pragma once
// Threshold selection shared by every pruning granularity, with the LoSparse reference's rule:
// scores are pooled into one multiset of N entries (a row score counts once per entry of the row),
// k = floor(N·(1 − keep)), τ = the k-th smallest value (1-based, like torch.kthvalue), and entries
// whose score is strictly below τ are pruned, so the entries at τ survive. k == 0 prunes nothing.

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "config.hpp"
#include "errors.hpp"
#include "types.hpp"

LMSHRINK_NAMESPACE_BEGIN

/// A score and how many entries it stands for (a row score of an (out, in) matrix weighs in).
/// `secondary` breaks ties of `score` (0 for all: the reference rule exactly).
struct WeightedScore {
  double score;
  Index weight;
  double secondary = 0.0;
};

struct Threshold {
  double value = -std::numeric_limits<double>::infinity();  // prune scores < value
  double secondary = -std::numeric_limits<double>::infinity();  // ... and ties below this
  Index k = 0;       // rank of value in the pooled multiset; 0 = nothing pruned
  Index entries = 0; // N
  /// Whether a group with this score is pruned: (score, secondary) lexicographically below
  /// (value, secondary); with all secondaries equal, exactly score < value.
  bool prunes(const WeightedScore& s) const {
    return s.score < value || (s.score == value && s.secondary < secondary);
  }
};

namespace detail {

inline Index checked_total(const char* where, const std::vector<WeightedScore>& scores) {
  Index total = 0;
  for (const auto& s : scores) {
    if (s.weight < 0)
      fail<value_error>(where, "weights must be >= 0, got ", s.weight);
    if (!std::isfinite(s.score) || !std::isfinite(s.secondary))
      fail<numeric_error>(where, "a score is not finite (", s.score, ", secondary ",
                          s.secondary, ")");
    total += s.weight;
  }
  return total;
}

}  // namespace detail

/// τ such that the groups pruned (lexicographically below it) hold at least k entries: the k-th
/// smallest entry. k beyond the pooled count prunes every group (τ = +∞).
inline Threshold select_threshold_count(std::vector<WeightedScore> scores, Index k) {
  static constexpr const char* where = "select_threshold_count";
  Threshold t;
  t.entries = detail::checked_total(where, scores);
  if (k < 0) detail::fail<value_error>(where, "k must be >= 0, got ", k);
  t.k = k;
  if (k == 0) return t;
  if (k > t.entries) {
    t.value = t.secondary = std::numeric_limits<double>::infinity();
    return t;
  }
  std::sort(scores.begin(), scores.end(), [](const WeightedScore& a, const WeightedScore& b) {
    return a.score < b.score || (a.score == b.score && a.secondary < b.secondary);
  });
  Index seen = 0;
  for (const auto& s : scores) {
    seen += s.weight;
    if (seen >= k) {
      t.value = s.score;
      t.secondary = s.secondary;
      return t;
    }
  }
  LMSHRINK_ASSERT(false && "k never exceeds the pooled count");
  return t;
}

/// τ for keeping a fraction `keep` ∈ [0, 1] of the pooled entries.
inline Threshold select_threshold(std::vector<WeightedScore> scores, double keep) {
  static constexpr const char* where = "select_threshold";
  if (!(keep >= 0.0 && keep <= 1.0))
    detail::fail<value_error>(where, "keep must be in [0, 1], got ", keep);
  const Index total = detail::checked_total(where, scores);
  const auto k = static_cast<Index>(std::floor(static_cast<double>(total) * (1.0 - keep)));
  return select_threshold_count(std::move(scores), k);
}

/// Row scores of a score matrix (out, in): the mean over each row.
template <class Scalar>
void row_means(ConstMatrixRef<Scalar> scores, std::vector<WeightedScore>& out) {
  for (Index i = 0; i < scores.rows(); ++i)
    out.push_back({static_cast<double>(scores.row(i).mean()), scores.cols()});
}

/// Column scores: the mean over each input column.
template <class Scalar>
void column_means(ConstMatrixRef<Scalar> scores, std::vector<WeightedScore>& out) {
  for (Index j = 0; j < scores.cols(); ++j)
    out.push_back({static_cast<double>(scores.col(j).mean()), scores.rows()});
}

/// Element scores, each standing for itself.
template <class Scalar>
void element_scores(ConstMatrixRef<Scalar> scores, std::vector<WeightedScore>& out) {
  for (Index i = 0; i < scores.rows(); ++i)
    for (Index j = 0; j < scores.cols(); ++j)
      out.push_back({static_cast<double>(scores(i, j)), 1});
}

LMSHRINK_NAMESPACE_END
