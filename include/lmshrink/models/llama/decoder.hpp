#pragma once
// A reference Llama decoder for llama2.c models (stories260K and kin), as a C++ trainer would
// write one around lmshrink: RMSNorm (eps config.norm_eps: 1e-5 in llama2.c), RoPE on adjacent
// pairs (base config.rope_theta: 10000 in llama2.c), grouped-query attention, SwiGLU
// feed-forward and a tied or separate classifier, with run.c's semantics.
//
// Two forms: the token-by-token forward with a KV cache (generation), and the full-sequence
// forward (scoring and training), where every linear layer is one matrix product over the
// sequence.
//
//   models::DenseKvDecoder dec(model);                // KvDecoder<DenseView>
//   const Vec& logits = dec.forward(token, pos);     // pos = 0, 1, … within one sequence
//   models::DenseSequenceDecoder seq(model);
//   const RowMat& all = seq.forward(tokens, n);       // (n, vocab) logits

#include <Eigen/Core>
#include <algorithm>
#include <cassert>
#include <cmath>
#include "dense.hpp"
#include "../activations.hpp"
#include "../attention.hpp"
#include "../norms.hpp"
#include "../rope.hpp"
#include "../scoring.hpp"

#include "block.hpp"

#include <utility>
#include <vector>

LMSHRINK_NAMESPACE_BEGIN
namespace models {
namespace llama {

using Vec = Eigen::VectorXf;
using RowMat = lmshrink::RowMatrix<float>;

/// The decoders read a model through a view: the non-linear parameters, `linear(l, kind, x, n,
/// y)`, which overwrites y (n, out) with layer l's linear `kind` (0..6: wq, wk, wv, wo, w1, w2,
/// w3) applied to x (n, in), both row-major and contiguous, and `classify(x, logits)` for one
/// token. DenseView runs a llama2.c model's matrices with Eigen; CompactView (llama/compact.hpp)
/// runs lmshrink::CompactLinear.
class DenseView {
 public:
  DenseView(const DenseModel& m) : m_(&m) {}  // NOLINT: implicit, a view
  DenseView(DenseModel&&) = delete;            // a view of a temporary would dangle
  const Config& config() const { return m_->config; }
  const RowMat& embedding() const { return m_->token_embedding; }
  const RowMat& classifier() const {
    return m_->config.shared_classifier ? m_->token_embedding : m_->wcls;
  }
  const Vec& rms_att(int l) const { return m_->rms_att[std::size_t(l)]; }
  const Vec& rms_ffn(int l) const { return m_->rms_ffn[std::size_t(l)]; }
  const Vec& rms_final() const { return m_->rms_final; }
  void linear(int l, int kind, const float* x, Eigen::Index n, float* y) const {
    const RowMat* w[7] = {&m_->wq[std::size_t(l)], &m_->wk[std::size_t(l)], &m_->wv[std::size_t(l)],
                          &m_->wo[std::size_t(l)], &m_->w1[std::size_t(l)], &m_->w2[std::size_t(l)],
                          &m_->w3[std::size_t(l)]};
    const RowMat& W = *w[kind];
    Eigen::Map<const RowMat> xm(x, n, W.cols());
    Eigen::Map<RowMat> ym(y, n, W.rows());
    if (n == 1)
      ym.row(0).transpose().noalias() = W * xm.row(0).transpose();
    else
      ym.noalias() = xm * W.transpose();
    if (const Vec* b = qkv_bias(l, kind)) ym.rowwise() += b->transpose();
  }
  /// logits (vocab) = classifier · x (dim), for one token.
  void classify(const float* x, float* logits) const {
    const RowMat& W = classifier();
    Eigen::Map<Vec>(logits, W.rows()).noalias() = W * Eigen::Map<const Vec>(x, W.cols());
  }

 private:
  const Vec* qkv_bias(int l, int kind) const {
    if (!m_->config.qkv_bias || kind > kWv) return nullptr;
    const auto& b = kind == kWq ? m_->bq : kind == kWk ? m_->bk : m_->bv;
    return &b[std::size_t(l)];
  }

  const DenseModel* m_;
};

using RopeTable = lmshrink::models::RopeTable<float>;

/// Token-by-token generation with a KV cache (lmshrink::models::KvCache): RoPE from the
/// growing table, attention over the cached positions, the classifier through the view.
template <class View>
class KvDecoder {
 public:
  explicit KvDecoder(View m)
      : m_(std::move(m)), c_(m_.config()), hs_(c_.head_size()), kv_dim_(c_.kv_dim()),
        rope_(c_.seq_len, hs_, c_.rope_theta, c_.rope_scaling), cache_(c_.n_layers, c_.seq_len, c_.n_heads, c_.n_kv_heads, hs_) {
    state_.resize(1, c_);
    x_.resize(1, c_.dim);
    xb_.resize(1, c_.dim);
    r_.resize(1);
    logits_.resize(c_.vocab_size);
  }

  const Config& config() const { return c_; }

  /// Logits (vocab) for `token` at position `pos`; positions 0..pos−1 must have been run since
  /// the sequence started (a new sequence simply starts again at pos 0).
  const Vec& forward(int token, int pos);

 private:
  View m_;
  Config c_;
  int hs_, kv_dim_;
  RopeTable rope_;
  lmshrink::models::KvCache<float> cache_;
  BlockState<float> state_;
  RowMat x_, xb_;
  Vec r_, logits_;
};

template <class View>
const Vec& KvDecoder<View>::forward(int token, int pos) {
  if (token < 0 || token >= c_.vocab_size)
    lmshrink::fail<lmshrink::value_error>("llama::KvDecoder::forward", "token ", token,
                                                  " is outside [0, ", c_.vocab_size, ")");
  if (pos < 0 || pos >= c_.seq_len)
    lmshrink::fail<lmshrink::value_error>("llama::KvDecoder::forward", "position ", pos,
                                                  " is outside [0, ", c_.seq_len, ")");
  rope_.cover(pos + 1);
  x_ = m_.embedding().row(token);
  for (int l = 0; l < c_.n_layers; ++l) {
    const auto linear = [&](int kind, const RowMat& in, RowMat& out) {
      m_.linear(l, kind, in.data(), 1, out.data());
    };
    const auto attend = [&](RowMat& q, RowMat& k, const RowMat& v, RowMat& att) {
      rope_.rotate(q.data(), c_.dim, pos);
      rope_.rotate(k.data(), kv_dim_, pos);
      cache_.attend(l, pos, q.data(), k.data(), v.data(), att.data());
    };
    state_.x = x_;
    block_forward<float>(c_, m_.rms_att(l), m_.rms_ffn(l), linear, attend, state_, x_);
  }
  lmshrink::models::rms_norm_forward<float>(x_, m_.rms_final(), c_.norm_eps, xb_, r_);
  m_.classify(xb_.data(), logits_.data());
  return logits_;
}

/// The full-sequence forward: x (n, dim) through every block, with causal attention over the
/// sequence; every linear layer is one (n, in)·(in, out) product.
template <class View>
class SequenceDecoder {
 public:
  explicit SequenceDecoder(View m)
      : m_(std::move(m)), c_(m_.config()), hs_(c_.head_size()), rope_(c_.seq_len, hs_, c_.rope_theta, c_.rope_scaling) {}

  const Config& config() const { return c_; }

  /// Logits (n, vocab) for tokens[0..n), positions 0..n−1.
  const RowMat& forward(const int* tokens, int n);

 private:
  View m_;
  Config c_;
  int hs_;
  RopeTable rope_;
  std::vector<RowMat> p_ = std::vector<RowMat>(1);  // one probability matrix, reused per head
  lmshrink::models::AttentionWorkspace<float> attention_work_;
  BlockState<float> state_;
  RowMat x_, xb_, logits_;
  Vec r_;
};

template <class View>
const RowMat& SequenceDecoder<View>::forward(const int* tokens, int n) {
  static constexpr const char* where = "llama::SequenceDecoder::forward";
  if (n < 1 || n > c_.seq_len)
    lmshrink::fail<lmshrink::value_error>(where, "sequence length ", n,
                                                  " is outside [1, ", c_.seq_len, "]");
  x_.resize(n, c_.dim);
  for (int t = 0; t < n; ++t) {
    if (tokens[t] < 0 || tokens[t] >= c_.vocab_size)
      lmshrink::fail<lmshrink::value_error>(where, "token ", tokens[t], " at ", t,
                                                    " is outside [0, ", c_.vocab_size, ")");
    x_.row(t) = m_.embedding().row(tokens[t]);
  }
  state_.resize(n, c_);
  xb_.resize(n, c_.dim);
  r_.resize(n);
  const lmshrink::models::AttentionShape shape{1, n, c_.n_heads, c_.n_kv_heads, hs_};
  for (int l = 0; l < c_.n_layers; ++l) {
    const auto linear = [&](int kind, const RowMat& in, RowMat& out) {
      m_.linear(l, kind, in.data(), n, out.data());
    };
    const auto attend = [&](RowMat& q, RowMat& k, const RowMat& v, RowMat& att) {
      rope_.rotate_rows(q, n, +1);
      rope_.rotate_rows(k, n, +1);
      lmshrink::models::causal_attention_forward<float>(shape, q, k, v, p_, att, attention_work_);
    };
    state_.x = x_;
    block_forward<float>(c_, m_.rms_att(l), m_.rms_ffn(l), linear, attend, state_, x_);
  }
  lmshrink::models::rms_norm_forward<float>(x_, m_.rms_final(), c_.norm_eps, xb_, r_);
  logits_.noalias() = xb_ * m_.classifier().transpose();
  return logits_;
}

using DenseKvDecoder = KvDecoder<DenseView>;
using DenseSequenceDecoder = SequenceDecoder<DenseView>;

/// The score of targets[t] given inputs[0..t] for t < n, token by token through a KV-cache
/// decoder (lmshrink::models::score_logits on each step's logits).
template <class Dec>
inline lmshrink::models::SequenceScore score_window(Dec& dec, const int* inputs, const int* targets, int n) {
  lmshrink::models::SequenceScore s;
  for (int pos = 0; pos < n; ++pos) {
    const Vec& z = dec.forward(inputs[pos], pos);
    const auto one = lmshrink::models::score_logits<float>(Eigen::Map<const RowMat>(z.data(), 1, z.size()),
                                                          targets + pos);
    s.nll_sum += one.nll_sum;
    s.top1 += one.top1;
    s.tokens += one.tokens;
  }
  return s;
}

}  // namespace llama
}  // namespace models
LMSHRINK_NAMESPACE_END
