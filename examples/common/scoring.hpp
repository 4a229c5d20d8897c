#pragma once
// Scoring logits against the next tokens, for every family's decoders.
#include <Eigen/Core>
#include <cmath>
#include <lmshrink/types.hpp>

namespace examples {

/// Mean NLL over rows of (n, vocab) logits against targets, double log-softmax; top-1 hits.
struct SequenceScore {
  double nll_sum = 0;
  long tokens = 0, top1 = 0;
};

inline SequenceScore score_logits(const lmshrink::RowMatrix<float>& logits, const int* targets) {
  SequenceScore s;
  for (Eigen::Index t = 0; t < logits.rows(); ++t) {
    Eigen::Index arg = 0;
    const double max = logits.row(t).maxCoeff(&arg);
    const double sum = (logits.row(t).template cast<double>().array() - max).exp().sum();
    s.nll_sum += max + std::log(sum) - double(logits(t, targets[t]));
    s.top1 += arg == targets[t];
    ++s.tokens;
  }
  return s;
}

}  // namespace examples
