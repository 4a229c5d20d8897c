#pragma once
// Layer-wise distillation: each student block's output against the teacher block it stands for,
// for any trainer with block_output(l) (lmshrink::models::Net, or a family's trainer in double for the
// gradient checks).

#include <algorithm>
#include <cmath>
#include <lmshrink/distillation.hpp>
#include <lmshrink/errors.hpp>
#include <lmshrink/types.hpp>
#include <vector>

namespace examples {

enum class HiddenLoss { mse, cosine };

/// Σ_l weight·loss_l / blocks over the student's `blocks` blocks, where loss_l compares
/// student.block_output(l) with *teacher[l] (the teacher block that student block l stands
/// for: block keep[l] of a truncated student). mse is divided by the teacher block's mean
/// square, so every block counts alike whatever its scale; cosine is 1 − cos per token. Both
/// are means over tokens. Writes dblock[l] = ∂/∂block_output(l) for the trainer's backward.
template <class Student, class Scalar>
double layerwise_distillation(const Student& student, int blocks,
                              const std::vector<const lmshrink::RowMatrix<Scalar>*>& teacher,
                              HiddenLoss kind, double weight,
                              std::vector<lmshrink::RowMatrix<Scalar>>& dblock) {
  static constexpr const char* where = "layerwise_distillation";
  if (int(teacher.size()) != blocks)
    lmshrink::fail<lmshrink::shape_error>(where, "got ", teacher.size(),
                                                  " teacher blocks for ", blocks, " student blocks");
  if (!(weight >= 0) || !std::isfinite(weight))
    lmshrink::fail<lmshrink::value_error>(where, "weight must be finite and >= 0, got ", weight);
  dblock.resize(std::size_t(blocks));
  double total = 0;
  for (int l = 0; l < blocks; ++l) {
    const auto& s = student.block_output(l);
    const auto& t = *teacher[std::size_t(l)];
    auto& g = dblock[std::size_t(l)];
    g.resize(s.rows(), s.cols());
    lmshrink::LossOptions o;
    o.weight = weight / blocks;
    if (kind == HiddenLoss::mse) {
      const double mean_square = t.template cast<double>().squaredNorm() / double(t.size());
      o.weight /= std::max(mean_square, 1e-12);
      total += lmshrink::mse_loss<Scalar>(s, t, g, o);
    } else {
      total += lmshrink::cosine_loss<Scalar>(s, t, g, o);
    }
  }
  return total;
}

}  // namespace examples
