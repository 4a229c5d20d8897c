#pragma once
// The one definition of a Llama block, forward and backward, from the model tier's ops. The
// trainer, the full-sequence decoder and the KV-cache step all run it; they differ only in how
// a linear layer is applied and how attention sees the other positions:
//
//   linear(kind, in, out)      out = layer `kind` of this block applied to in (rows = tokens)
//   attend(q, k, v, att)       rotates q and k to their positions (RoPE) and attends
//
// A block maps its input x to x_mid = x + wo·attention(RMSNorm(x)), then to
// x_mid + w2·(silu(w1·RMSNorm(x_mid))∘(w3·RMSNorm(x_mid))), as llama2.c's run.c.

#include <Eigen/Core>
#include "dense.hpp"
#include "../activations.hpp"
#include "../norms.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {
namespace llama {

/// The seven linear layers of a block, in llama2.c file order.
enum LinearKind : int { kWq, kWk, kWv, kWo, kW1, kW2, kW3 };
constexpr int kLinearKinds = 7;

inline const char* linear_kind_name(int k) {
  static const char* names[kLinearKinds] = {"attention.wq",    "attention.wk",
                                            "attention.wv",    "attention.wo",
                                            "feed_forward.w1", "feed_forward.w2",
                                            "feed_forward.w3"};
  return names[k];
}

/// A block's activations over the rows (tokens) of one forward: what its backward reads.
template <class Scalar>
struct BlockState {
  using Mat = lmshrink::RowMatrix<Scalar>;
  using Vec = lmshrink::Vector<Scalar>;
  Mat x;                    // the block's input (the residual stream)
  Mat xb_att, q, k, v, att;  // RMSNorm(x), projections, attention output
  Mat x_mid;                // x + wo·att
  Mat xb_ffn, h1, h3, h;    // RMSNorm(x_mid), w1·, w3·, silu(h1)∘h3
  Mat tmp;                  // a residual branch's output before it is added
  Vec r_att, r_ffn;         // 1/rms per token

  void resize(Eigen::Index rows, const Config& c) {
    for (Mat* m : {&x, &xb_att, &q, &att, &x_mid, &xb_ffn, &tmp}) m->resize(rows, c.dim);
    k.resize(rows, c.kv_dim());
    v.resize(rows, c.kv_dim());
    for (Mat* m : {&h1, &h3, &h}) m->resize(rows, c.hidden_dim);
    r_att.resize(rows);
    r_ffn.resize(rows);
  }
};

/// s.x → out through one block (out may be s.x's source: s.x is read only before out is written).
template <class Scalar, class Linear, class Attend>
void block_forward(const Config& c, const lmshrink::Vector<Scalar>& rms_att,
                         const lmshrink::Vector<Scalar>& rms_ffn, Linear&& linear, Attend&& attend,
                         BlockState<Scalar>& s, lmshrink::RowMatrix<Scalar>& out) {
  namespace models = lmshrink::models;
  models::rms_norm_forward<Scalar>(s.x, rms_att, c.norm_eps, s.xb_att, s.r_att);
  linear(kWq, s.xb_att, s.q);
  linear(kWk, s.xb_att, s.k);
  linear(kWv, s.xb_att, s.v);
  attend(s.q, s.k, s.v, s.att);
  linear(kWo, s.att, s.tmp);
  s.x_mid = s.x + s.tmp;
  models::rms_norm_forward<Scalar>(s.x_mid, rms_ffn, c.norm_eps, s.xb_ffn, s.r_ffn);
  linear(kW1, s.xb_ffn, s.h1);
  linear(kW3, s.xb_ffn, s.h3);
  models::swiglu_forward<Scalar>(s.h1, s.h3, s.h);
  linear(kW2, s.h, s.tmp);
  out = s.x_mid + s.tmp;
}

/// Workspace of the block backward, sized once.
template <class Scalar>
struct BlockWorkspace {
  using Mat = lmshrink::RowMatrix<Scalar>;
  Mat dxb, dq, dk, dv, datt, dh, dh1, dh3;

  void resize(Eigen::Index rows, const Config& c) {
    for (Mat* m : {&dxb, &dq, &datt}) m->resize(rows, c.dim);
    dk.resize(rows, c.kv_dim());
    dv.resize(rows, c.kv_dim());
    for (Mat* m : {&dh, &dh1, &dh3}) m->resize(rows, c.hidden_dim);
  }
};

/// From dx = ∂loss/∂(block output), turns dx into ∂loss/∂(block input) and accumulates the
/// norms' gradients. `linear_backward(kind, in, dout, din)` accumulates din += ∂/∂in and the
/// layer's own gradients; `attend_backward(datt, dq, dk, dv)` overwrites dq, dk, dv (rotated
/// back) from datt.
template <class Scalar, class LinearBackward, class AttendBackward>
void block_backward(const lmshrink::Vector<Scalar>& rms_att,
                          const lmshrink::Vector<Scalar>& rms_ffn, LinearBackward&& linear_backward,
                          AttendBackward&& attend_backward, const BlockState<Scalar>& s,
                          BlockWorkspace<Scalar>& w, lmshrink::RowMatrix<Scalar>& dx,
                          lmshrink::Vector<Scalar>& drms_att, lmshrink::Vector<Scalar>& drms_ffn) {
  namespace models = lmshrink::models;
  // out = x_mid + w2·h: dx holds ∂/∂out and becomes ∂/∂x_mid.
  w.dh.setZero();
  linear_backward(kW2, s.h, dx, w.dh);
  models::swiglu_backward<Scalar>(s.h1, s.h3, w.dh, w.dh1, w.dh3);
  w.dxb.setZero();
  linear_backward(kW1, s.xb_ffn, w.dh1, w.dxb);
  linear_backward(kW3, s.xb_ffn, w.dh3, w.dxb);
  models::rms_norm_backward<Scalar>(s.x_mid, rms_ffn, s.r_ffn, w.dxb, dx, drms_ffn);
  // x_mid = x + wo·att: dx becomes ∂/∂x.
  w.datt.setZero();
  linear_backward(kWo, s.att, dx, w.datt);
  attend_backward(w.datt, w.dq, w.dk, w.dv);
  w.dxb.setZero();
  linear_backward(kWq, s.xb_att, w.dq, w.dxb);
  linear_backward(kWk, s.xb_att, w.dk, w.dxb);
  linear_backward(kWv, s.xb_att, w.dv, w.dxb);
  models::rms_norm_backward<Scalar>(s.x, rms_att, s.r_att, w.dxb, dx, drms_att);
}

}  // namespace llama
}  // namespace models
LMSHRINK_NAMESPACE_END
