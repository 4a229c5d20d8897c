#pragma once
// The feed-forward activations of decoder families, element-wise over (tokens, hidden), with
// their backwards:
//
//   SwiGLU (Llama):  h = silu(a)∘b,  silu(a) = a·σ(a)    (a = w1·x, b = w3·x)
//   GELU (GPT-2):    g = gelu(h) with the tanh approximation ("gelu_new")

#include <cmath>

#include "../config.hpp"
#include "../types.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {

namespace elementwise {
template <class Scalar>
using Flat = Eigen::Map<Eigen::Array<Scalar, Eigen::Dynamic, 1>>;
template <class Scalar>
using ConstFlat = Eigen::Map<const Eigen::Array<Scalar, Eigen::Dynamic, 1>>;

/// Calls f(offset of each matrix, length) over runs of contiguous entries: one run of every
/// entry when all the matrices are contiguous, else one per row. Eigen evaluates exp and tanh
/// in SIMD packets with a scalar tail, so one run gives the same result as a plain matrix.
template <class F, class... M>
void over_runs(Index rows, Index cols, F&& f, const M&... m) {
  if (((rows <= 1 || m.outerStride() == cols) && ...)) {
    f([](const auto&) { return Index(0); }, rows * cols);
    return;
  }
  for (Index t = 0; t < rows; ++t) f([t](const auto& x) { return t * x.outerStride(); }, cols);
}
}  // namespace elementwise

/// h = silu(a)∘b.
template <class Scalar>
void swiglu_forward(const ConstMatrixRef<Scalar>& a, const ConstMatrixRef<Scalar>& b, MatrixRef<Scalar> h) {
  lmshrink::detail::check_shape("swiglu_forward", "b", b, a.rows(), a.cols());
  lmshrink::detail::check_shape("swiglu_forward", "h", h, a.rows(), a.cols());
  using namespace elementwise;
  over_runs(a.rows(), a.cols(), [&](auto at, Index n) {
    const ConstFlat<Scalar> av(a.data() + at(a), n), bv(b.data() + at(b), n);
    Flat<Scalar>(h.data() + at(h), n) = av / (Scalar(1) + (-av).exp()) * bv;
  }, a, b, h);
}

/// From dh = ∂loss/∂h: da = dh∘b·σ(a)·(1 + a·(1 − σ(a))) and db = dh∘a·σ(a), overwritten.
template <class Scalar>
void swiglu_backward(const ConstMatrixRef<Scalar>& a, const ConstMatrixRef<Scalar>& b,
                     const ConstMatrixRef<Scalar>& dh, MatrixRef<Scalar> da, MatrixRef<Scalar> db) {
  static constexpr const char* where = "swiglu_backward";
  for (const auto* m : {&b, &dh}) lmshrink::detail::check_shape(where, "an input", *m, a.rows(), a.cols());
  lmshrink::detail::check_shape(where, "da", da, a.rows(), a.cols());
  lmshrink::detail::check_shape(where, "db", db, a.rows(), a.cols());
  using namespace elementwise;
  over_runs(a.rows(), a.cols(), [&](auto at, Index n) {
    const ConstFlat<Scalar> av(a.data() + at(a), n), bv(b.data() + at(b), n), dhv(dh.data() + at(dh), n);
    const auto sig = (Scalar(1) / (Scalar(1) + (-av).exp())).eval();
    Flat<Scalar>(db.data() + at(db), n) = dhv * av * sig;
    Flat<Scalar>(da.data() + at(da), n) = dhv * bv * sig * (Scalar(1) + av * (Scalar(1) - sig));
  }, a, b, dh, da, db);
}

/// GELU with the tanh approximation, 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
template <class Scalar>
Scalar gelu_tanh(Scalar x) {
  const Scalar c = Scalar(0.7978845608028654);  // sqrt(2/π)
  return Scalar(0.5) * x * (Scalar(1) + std::tanh(c * (x + Scalar(0.044715) * x * x * x)));
}

/// d gelu_tanh / dx.
template <class Scalar>
Scalar gelu_tanh_derivative(Scalar x) {
  const Scalar c = Scalar(0.7978845608028654);
  const Scalar t = std::tanh(c * (x + Scalar(0.044715) * x * x * x));
  return Scalar(0.5) * (Scalar(1) + t) +
         Scalar(0.5) * x * (Scalar(1) - t * t) * c * (Scalar(1) + Scalar(3 * 0.044715) * x * x);
}

/// g = gelu_tanh(h), element-wise.
template <class Scalar>
void gelu_forward(const ConstMatrixRef<Scalar>& h, MatrixRef<Scalar> g) {
  lmshrink::detail::check_shape("gelu_forward", "g", g, h.rows(), h.cols());
  using namespace elementwise;
  over_runs(h.rows(), h.cols(), [&](auto at, Index n) {
    Flat<Scalar>(g.data() + at(g), n) = ConstFlat<Scalar>(h.data() + at(h), n).unaryExpr([](Scalar v) {
      return gelu_tanh(v);
    });
  }, h, g);
}

/// dh = dg∘gelu_tanh'(h), overwritten.
template <class Scalar>
void gelu_backward(const ConstMatrixRef<Scalar>& h, const ConstMatrixRef<Scalar>& dg, MatrixRef<Scalar> dh) {
  lmshrink::detail::check_shape("gelu_backward", "dg", dg, h.rows(), h.cols());
  lmshrink::detail::check_shape("gelu_backward", "dh", dh, h.rows(), h.cols());
  using namespace elementwise;
  over_runs(h.rows(), h.cols(), [&](auto at, Index n) {
    const ConstFlat<Scalar> hv(h.data() + at(h), n);
    Flat<Scalar>(dh.data() + at(dh), n) =
        ConstFlat<Scalar>(dg.data() + at(dg), n) * hv.unaryExpr([](Scalar v) { return gelu_tanh_derivative(v); });
  }, h, dg, dh);
}

}  // namespace models
LMSHRINK_NAMESPACE_END
