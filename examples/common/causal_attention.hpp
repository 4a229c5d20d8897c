#pragma once
// Causal multi-head softmax attention over a batch of sequences, forward and backward, shared by
// the families' trainers. Rows are tokens (batch·n, sequence by sequence); head h reads columns
// [h·hs, (h+1)·hs) of q and its key/value head h / (heads / kv_heads) of k and v (grouped-query
// attention; kv_heads = heads is plain multi-head attention). Scores are scaled by 1/sqrt(hs).
#include <cmath>
#include <vector>

#include <lmshrink/types.hpp>

namespace examples {

struct AttentionShape {
  int batch, n, heads, kv_heads, head_size;
};

/// att = softmax(q·kᵀ/sqrt(hs), causal)·v per (sequence, head); p[b·heads + h] keeps each head's
/// probabilities (n, n) for the backward.
template <class Scalar>
void causal_attention_forward(const AttentionShape& s, const lmshrink::RowMatrix<Scalar>& q,
                              const lmshrink::RowMatrix<Scalar>& k, const lmshrink::RowMatrix<Scalar>& v,
                              std::vector<lmshrink::RowMatrix<Scalar>>& p, lmshrink::RowMatrix<Scalar>& att) {
  const int group = s.heads / s.kv_heads, n = s.n, hs = s.head_size;
  const Scalar scale = Scalar(1) / std::sqrt(Scalar(hs));
  for (int b = 0; b < s.batch; ++b)
    for (int h = 0; h < s.heads; ++h) {
      auto& ph = p[std::size_t(b * s.heads + h)];
      const int kvh = h / group;
      ph.noalias() = q.block(b * n, h * hs, n, hs) * k.block(b * n, kvh * hs, n, hs).transpose();
      ph *= scale;
      for (int t = 0; t < n; ++t) {
        auto row = ph.row(t);
        const Scalar max = row.head(t + 1).maxCoeff();
        row.head(t + 1) = (row.head(t + 1).array() - max).exp().matrix();
        row.head(t + 1) /= row.head(t + 1).sum();
        row.tail(n - t - 1).setZero();
      }
      att.block(b * n, h * hs, n, hs).noalias() = ph * v.block(b * n, kvh * hs, n, hs);
    }
}

/// From datt = ∂loss/∂att: dq (overwritten), dk and dv (zeroed, then accumulated over the heads
/// that share them). dp is an (n, n) workspace.
template <class Scalar>
void causal_attention_backward(const AttentionShape& s, const lmshrink::RowMatrix<Scalar>& q,
                               const lmshrink::RowMatrix<Scalar>& k, const lmshrink::RowMatrix<Scalar>& v,
                               const std::vector<lmshrink::RowMatrix<Scalar>>& p,
                               const lmshrink::RowMatrix<Scalar>& datt, lmshrink::RowMatrix<Scalar>& dp,
                               lmshrink::RowMatrix<Scalar>& dq, lmshrink::RowMatrix<Scalar>& dk,
                               lmshrink::RowMatrix<Scalar>& dv) {
  const int group = s.heads / s.kv_heads, n = s.n, hs = s.head_size;
  const Scalar scale = Scalar(1) / std::sqrt(Scalar(hs));
  dk.setZero();
  dv.setZero();
  for (int b = 0; b < s.batch; ++b)
    for (int h = 0; h < s.heads; ++h) {
      const auto& ph = p[std::size_t(b * s.heads + h)];
      const int kvh = h / group;
      const auto dout = datt.block(b * n, h * hs, n, hs);
      dv.block(b * n, kvh * hs, n, hs).noalias() += ph.transpose() * dout;
      dp.noalias() = dout * v.block(b * n, kvh * hs, n, hs).transpose();
      // Softmax backward per row: ds = p∘(dp − Σ p∘dp), then the scale.
      for (int t = 0; t < n; ++t) {
        auto drow = dp.row(t).head(t + 1);
        const Scalar dot = drow.dot(ph.row(t).head(t + 1));
        drow = (ph.row(t).head(t + 1).array() * (drow.array() - dot) * scale).matrix();
        dp.row(t).tail(n - t - 1).setZero();
      }
      dq.block(b * n, h * hs, n, hs).noalias() = dp * k.block(b * n, kvh * hs, n, hs);
      dk.block(b * n, kvh * hs, n, hs).noalias() += dp.transpose() * q.block(b * n, h * hs, n, hs);
    }
}

}  // namespace examples
