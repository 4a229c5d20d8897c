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
struct WeightedScore {
  double score;
  Index weight;
};

struct Threshold {
  double value = -std::numeric_limits<double>::infinity();  // prune scores < value
  Index k = 0;       // rank of value in the pooled multiset; 0 = nothing pruned
  Index entries = 0; // N
};

/// τ for keeping a fraction `keep` ∈ [0, 1] of the pooled entries.
inline Threshold select_threshold(std::vector<WeightedScore> scores, double keep) {
  static constexpr const char* where = "select_threshold";
  if (!(keep >= 0.0 && keep <= 1.0))
    detail::fail<value_error>(where, "keep must be in [0, 1], got ", keep);
  Threshold t;
  for (const auto& s : scores) {
    if (s.weight < 0)
      detail::fail<value_error>(where, "weights must be >= 0, got ", s.weight);
    if (!std::isfinite(s.score))
      detail::fail<numeric_error>(where, "a score is not finite (", s.score, ")");
    t.entries += s.weight;
  }
  t.k = static_cast<Index>(std::floor(static_cast<double>(t.entries) * (1.0 - keep)));
  if (t.k == 0) return t;
  std::sort(scores.begin(), scores.end(),
            [](const WeightedScore& a, const WeightedScore& b) { return a.score < b.score; });
  Index seen = 0;
  for (const auto& s : scores) {
    seen += s.weight;
    if (seen >= t.k) {
      t.value = s.score;
      return t;
    }
  }
  LMSHRINK_ASSERT(false && "k never exceeds the pooled count");
  return t;
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
