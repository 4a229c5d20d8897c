#pragma once
// Scoring a model's logits against the next tokens: the negative log-likelihood with a double
// log-softmax over float (or double) logits, and top-1 hits.
//
//   models::SequenceScore s = models::score_logits<float>(logits, targets);  // logits (n, vocab)
//   double mean_nll = s.nll_sum / double(s.tokens);

#include <cmath>

#include "../config.hpp"
#include "../types.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {

struct SequenceScore {
  double nll_sum = 0;
  long tokens = 0, top1 = 0;
};

/// Σ over rows t of −log softmax(logits.row(t))[targets[t]], and how often the row's largest
/// logit (the first, on ties) is the target. targets holds logits.rows() ids in [0, vocab).
template <class Scalar>
SequenceScore score_logits(const ConstMatrixRef<Scalar>& logits, const int* targets) {
  SequenceScore s;
  for (Index t = 0; t < logits.rows(); ++t) {
    if (targets[t] < 0 || targets[t] >= logits.cols())
      lmshrink::detail::fail<value_error>("score_logits", "target ", targets[t], " at ", t, " is outside [0, ",
                                          logits.cols(), ")");
    Index arg = 0;
    const double max = logits.row(t).maxCoeff(&arg);
    const double sum = (logits.row(t).template cast<double>().array() - max).exp().sum();
    s.nll_sum += max + std::log(sum) - double(logits(t, targets[t]));
    s.top1 += arg == targets[t];
    ++s.tokens;
  }
  return s;
}

}  // namespace models
LMSHRINK_NAMESPACE_END
