#pragma once
// The one definition of a GPT-2 block, forward and backward, from the model tier's ops. The
// trainer, the full-sequence decoder and the KV-cache step all run it; they differ only in how
// a linear layer is applied and how attention sees the other positions:
//
//   linear(kind, in, out)      out = layer `kind` of this block applied to in (its bias included)
//   attend(q, k, v, att)       causal attention of these rows over the positions it can see
//
// A block maps x to x_mid = x + c_proj(attention(ln_1(x))), then to
// x_mid + mlp.c_proj(gelu(mlp.c_fc(ln_2(x_mid)))), as Hugging Face's GPT2Block.

#include <Eigen/Core>
#include "dense.hpp"
#include "../activations.hpp"
#include "../norms.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {
namespace gpt2 {

/// The six linear layers of a GPT-2 block (c_attn split into q, k and v).
enum LinearKind : int { kQ, kK, kV, kProj, kFc, kFcProj };
constexpr int kLinearKinds = 6;

inline const char* linear_kind_name(int k) {
  static const char* names[kLinearKinds] = {"attn.q", "attn.k", "attn.v",
                                                "attn.c_proj", "mlp.c_fc", "mlp.c_proj"};
  return names[k];
}

/// A block's LayerNorm parameters (or their gradients).
template <class V>
struct BlockNorms {
  V& ln1_w;
  V& ln1_b;
  V& ln2_w;
  V& ln2_b;
};

/// A block's activations over the rows (tokens) of one forward: what its backward reads.
template <class Scalar>
struct BlockState {
  using Mat = lmshrink::RowMatrix<Scalar>;
  using Vec = lmshrink::Vector<Scalar>;
  Mat x;                          // the block's input (the residual stream)
  Mat xhat1, a1, q, k, v, att;    // ln_1's normalized input and output, projections, attention
  Mat x_mid;                      // x + c_proj(att)
  Mat xhat2, a2, h, g;            // ln_2's, c_fc's output, gelu(h)
  Mat tmp;                        // a residual branch's output before it is added
  Vec rstd1, rstd2;               // 1/std per token

  void resize(Eigen::Index rows, const Config& c) {
    for (Mat* m : {&x, &xhat1, &a1, &q, &k, &v, &att, &x_mid, &xhat2, &a2, &tmp}) m->resize(rows, c.dim);
    h.resize(rows, c.hidden_dim);
    g.resize(rows, c.hidden_dim);
    rstd1.resize(rows);
    rstd2.resize(rows);
  }
};

/// s.x → out through one block.
template <class Scalar, class Linear, class Attend>
void block_forward(const Config& c, const BlockNorms<const lmshrink::Vector<Scalar>>& n,
                        Linear&& linear, Attend&& attend, BlockState<Scalar>& s,
                        lmshrink::RowMatrix<Scalar>& out) {
  namespace models = lmshrink::models;
  models::layer_norm_forward<Scalar>(s.x, n.ln1_w, n.ln1_b, c.norm_eps, s.xhat1, s.rstd1, s.a1);
  linear(kQ, s.a1, s.q);
  linear(kK, s.a1, s.k);
  linear(kV, s.a1, s.v);
  attend(s.q, s.k, s.v, s.att);
  linear(kProj, s.att, s.tmp);
  s.x_mid = s.x + s.tmp;
  models::layer_norm_forward<Scalar>(s.x_mid, n.ln2_w, n.ln2_b, c.norm_eps, s.xhat2, s.rstd2, s.a2);
  linear(kFc, s.a2, s.h);
  models::gelu_forward<Scalar>(s.h, s.g);
  linear(kFcProj, s.g, s.tmp);
  out = s.x_mid + s.tmp;
}

/// Workspace of the block backward, sized once.
template <class Scalar>
struct BlockWorkspace {
  using Mat = lmshrink::RowMatrix<Scalar>;
  Mat dxa, dq, dk, dv, datt, dh, dg;

  void resize(Eigen::Index rows, const Config& c) {
    for (Mat* m : {&dxa, &dq, &dk, &dv, &datt}) m->resize(rows, c.dim);
    dh.resize(rows, c.hidden_dim);
    dg.resize(rows, c.hidden_dim);
  }
};

/// From dx = ∂loss/∂(block output), turns dx into ∂loss/∂(block input) and accumulates the
/// LayerNorms' gradients into dn. `linear_backward(kind, in, dout, din)` accumulates din and the
/// layer's own gradients; `attend_backward(datt, dq, dk, dv)` overwrites dq, dk, dv.
template <class Scalar, class LinearBackward, class AttendBackward>
void block_backward(const BlockNorms<const lmshrink::Vector<Scalar>>& n, LinearBackward&& linear_backward,
                         AttendBackward&& attend_backward, const BlockState<Scalar>& s,
                         BlockWorkspace<Scalar>& w, lmshrink::RowMatrix<Scalar>& dx,
                         const BlockNorms<lmshrink::Vector<Scalar>>& dn) {
  namespace models = lmshrink::models;
  // out = x_mid + mlp.c_proj(gelu(c_fc(ln_2(x_mid)))): dx becomes ∂/∂x_mid.
  w.dg.setZero();
  linear_backward(kFcProj, s.g, dx, w.dg);
  models::gelu_backward<Scalar>(s.h, w.dg, w.dh);
  w.dxa.setZero();
  linear_backward(kFc, s.a2, w.dh, w.dxa);
  models::layer_norm_backward<Scalar>(s.xhat2, s.rstd2, n.ln2_w, w.dxa, dx, dn.ln2_w, dn.ln2_b);
  // x_mid = x + c_proj(attention(q, k, v)): dx becomes ∂/∂x.
  w.datt.setZero();
  linear_backward(kProj, s.att, dx, w.datt);
  attend_backward(w.datt, w.dq, w.dk, w.dv);
  w.dxa.setZero();
  linear_backward(kQ, s.a1, w.dq, w.dxa);
  linear_backward(kK, s.a1, w.dk, w.dxa);
  linear_backward(kV, s.a1, w.dv, w.dxa);
  models::layer_norm_backward<Scalar>(s.xhat1, s.rstd1, n.ln1_w, w.dxa, dx, dn.ln1_w, dn.ln1_b);
}

}  // namespace gpt2
}  // namespace models
LMSHRINK_NAMESPACE_END
