#pragma once
// The two normalisations of decoder families, row by row over (tokens, dim) activations, with
// what each backward needs kept by its forward. One token (a KV-cache step) is one row.
//
//   RMSNorm (Llama):    y = x∘g·r,        r = (mean(x²) + eps)^(−1/2)
//   LayerNorm (GPT-2):  y = x̂∘w + b,      x̂ = (x − mean(x))·r,  r = (var(x) + eps)^(−1/2)
//
// Backwards accumulate into dx and into the parameter gradients (dx += …, dg += …), so that a
// residual stream's gradient flows through without a copy.

#include <cmath>

#include "../config.hpp"
#include "../types.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {

/// RMSNorm forward: y = x∘g·r per row; inv_rms[t] = r of row t.
template <class Scalar>
void rms_norm_forward(const ConstMatrixRef<Scalar>& x, const ConstVectorRef<Scalar>& gain, double eps,
                      MatrixRef<Scalar> y, Eigen::Ref<Vector<Scalar>> inv_rms) {
  static constexpr const char* where = "rms_norm_forward";
  lmshrink::detail::check_length(where, "gain", gain, x.cols());
  lmshrink::detail::check_shape(where, "y", y, x.rows(), x.cols());
  lmshrink::detail::check_length(where, "inv_rms", inv_rms, x.rows());
  for (Index t = 0; t < x.rows(); ++t) {
    const Scalar ss = x.row(t).squaredNorm() / Scalar(x.cols()) + Scalar(eps);
    inv_rms[t] = Scalar(1) / std::sqrt(ss);
    y.row(t) = x.row(t).cwiseProduct(gain.transpose()) * inv_rms[t];
  }
}

/// RMSNorm backward for dy = ∂loss/∂y: dgain += Σ dy∘x·r, dx += r·(dy∘g) − r³/d·x·Σ(dy∘g∘x).
template <class Scalar>
void rms_norm_backward(const ConstMatrixRef<Scalar>& x, const ConstVectorRef<Scalar>& gain,
                       const ConstVectorRef<Scalar>& inv_rms, const ConstMatrixRef<Scalar>& dy,
                       MatrixRef<Scalar> dx, Eigen::Ref<Vector<Scalar>> dgain) {
  static constexpr const char* where = "rms_norm_backward";
  lmshrink::detail::check_length(where, "gain", gain, x.cols());
  lmshrink::detail::check_length(where, "inv_rms", inv_rms, x.rows());
  lmshrink::detail::check_shape(where, "dy", dy, x.rows(), x.cols());
  lmshrink::detail::check_shape(where, "dx", dx, x.rows(), x.cols());
  lmshrink::detail::check_length(where, "dgain", dgain, x.cols());
  const Scalar inv_d = Scalar(1) / Scalar(x.cols());
  for (Index t = 0; t < x.rows(); ++t) {
    const Scalar r = inv_rms[t];
    const auto dyg = dy.row(t).cwiseProduct(gain.transpose()).eval();
    const Scalar dot = dyg.dot(x.row(t));
    dgain += (dy.row(t).cwiseProduct(x.row(t)) * r).transpose();
    dx.row(t) += dyg * r - x.row(t) * (r * r * r * inv_d * dot);
  }
}

/// LayerNorm forward: y = x̂∘w + b per row; keeps x̂ (normalized) and r (inv_std) per row.
template <class Scalar>
void layer_norm_forward(const ConstMatrixRef<Scalar>& x, const ConstVectorRef<Scalar>& weight,
                        const ConstVectorRef<Scalar>& bias, double eps, MatrixRef<Scalar> normalized,
                        Eigen::Ref<Vector<Scalar>> inv_std, MatrixRef<Scalar> y) {
  static constexpr const char* where = "layer_norm_forward";
  lmshrink::detail::check_length(where, "weight", weight, x.cols());
  lmshrink::detail::check_length(where, "bias", bias, x.cols());
  lmshrink::detail::check_shape(where, "normalized", normalized, x.rows(), x.cols());
  lmshrink::detail::check_length(where, "inv_std", inv_std, x.rows());
  lmshrink::detail::check_shape(where, "y", y, x.rows(), x.cols());
  const Scalar inv_d = Scalar(1) / Scalar(x.cols());
  for (Index t = 0; t < x.rows(); ++t) {
    const Scalar mean = x.row(t).sum() * inv_d;
    normalized.row(t) = x.row(t).array() - mean;
    const Scalar var = normalized.row(t).squaredNorm() * inv_d;
    inv_std[t] = Scalar(1) / std::sqrt(var + Scalar(eps));
    normalized.row(t) *= inv_std[t];
    y.row(t) = normalized.row(t).cwiseProduct(weight.transpose()) + bias.transpose();
  }
}

/// LayerNorm backward for dy: dweight += Σ dy∘x̂, dbias += Σ dy,
/// dx += r·(dx̂ − mean(dx̂) − x̂·mean(dx̂∘x̂)) with dx̂ = dy∘w.
template <class Scalar>
void layer_norm_backward(const ConstMatrixRef<Scalar>& normalized, const ConstVectorRef<Scalar>& inv_std,
                         const ConstVectorRef<Scalar>& weight, const ConstMatrixRef<Scalar>& dy,
                         MatrixRef<Scalar> dx, Eigen::Ref<Vector<Scalar>> dweight,
                         Eigen::Ref<Vector<Scalar>> dbias) {
  static constexpr const char* where = "layer_norm_backward";
  lmshrink::detail::check_length(where, "inv_std", inv_std, normalized.rows());
  lmshrink::detail::check_length(where, "weight", weight, normalized.cols());
  lmshrink::detail::check_shape(where, "dy", dy, normalized.rows(), normalized.cols());
  lmshrink::detail::check_shape(where, "dx", dx, normalized.rows(), normalized.cols());
  lmshrink::detail::check_length(where, "dweight", dweight, normalized.cols());
  lmshrink::detail::check_length(where, "dbias", dbias, normalized.cols());
  const Scalar inv_d = Scalar(1) / Scalar(normalized.cols());
  for (Index t = 0; t < normalized.rows(); ++t) {
    dweight += dy.row(t).cwiseProduct(normalized.row(t)).transpose();
    dbias += dy.row(t).transpose();
    const auto dxhat = dy.row(t).cwiseProduct(weight.transpose()).eval();
    const Scalar mean_dxhat = dxhat.sum() * inv_d;
    const Scalar mean_dot = dxhat.dot(normalized.row(t)) * inv_d;
    dx.row(t) += inv_std[t] * (dxhat.array() - mean_dxhat - normalized.row(t).array() * mean_dot).matrix();
  }
}

}  // namespace models
LMSHRINK_NAMESPACE_END
