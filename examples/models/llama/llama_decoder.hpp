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
//   examples::LlamaKvDecoder dec(model);                // KvDecoder<DenseView>
//   const Vec& logits = dec.forward(token, pos);     // pos = 0, 1, … within one sequence
//   examples::LlamaSequenceDecoder seq(model);
//   const RowMat& all = seq.forward(tokens, n);       // (n, vocab) logits

#include <Eigen/Core>
#include <algorithm>
#include <cassert>
#include <cmath>
#include <lmshrink/io/llama2c.hpp>

#include "../../common/scoring.hpp"
#include <utility>
#include <vector>

namespace examples {

using Vec = Eigen::VectorXf;
using RowMat = lmshrink::RowMatrix<float>;

inline void rmsnorm(Eigen::Ref<Vec> out, const Eigen::Ref<const Vec>& x, const Eigen::Ref<const Vec>& w,
                    float eps) {
  const float ss = x.squaredNorm() / float(x.size()) + eps;
  out = x.cwiseProduct(w) * (1.0f / std::sqrt(ss));
}

/// The decoders read a model through a view: the non-linear parameters, `linear(l, kind, x, n,
/// y)`, which overwrites y (n, out) with layer l's linear `kind` (0..6: wq, wk, wv, wo, w1, w2,
/// w3) applied to x (n, in), both row-major and contiguous, and `classify(x, logits)` for one
/// token. DenseView runs a llama2.c model's matrices with Eigen; CompactView (llama_compact.hpp)
/// runs lmshrink::CompactLinear.
class DenseView {
 public:
  DenseView(const lmshrink::Llama2cModel& m) : m_(&m) {}  // NOLINT: implicit, a view
  DenseView(lmshrink::Llama2cModel&&) = delete;            // a view of a temporary would dangle
  const lmshrink::Llama2cConfig& config() const { return m_->config; }
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
  }
  /// logits (vocab) = classifier · x (dim), for one token.
  void classify(const float* x, float* logits) const {
    const RowMat& W = classifier();
    Eigen::Map<Vec>(logits, W.rows()).noalias() = W * Eigen::Map<const Vec>(x, W.cols());
  }

 private:
  const lmshrink::Llama2cModel* m_;
};

/// RoPE angles of every (position, pair) as run.c computes them (float pow, cos and sin), for the
/// positions used so far: a model's context can be far longer than what is scored or generated,
/// so the table grows (doubling, at most to `max_positions`) instead of being sized to it.
class RopeTable {
 public:
  RopeTable(int max_positions, int head_size, double theta)
      : half_(head_size / 2), head_size_(head_size), max_positions_(max_positions), theta_(theta) {}
  /// Makes positions [0, positions) available; allocates only when they grow.
  void cover(int positions) {
    if (positions <= covered_) return;
    const int target = std::min(max_positions_, std::max(positions, 2 * covered_));
    cos_.resize(std::size_t(target) * half_);
    sin_.resize(cos_.size());
    for (int pos = covered_; pos < target; ++pos)
      for (int j = 0; j < half_; ++j) {
        const float freq = 1.0f / std::pow(float(theta_), float(2 * j) / float(head_size_));
        const float angle = float(pos) * freq;
        cos_[std::size_t(pos) * half_ + j] = std::cos(angle);
        sin_[std::size_t(pos) * half_ + j] = std::sin(angle);
      }
    covered_ = target;
  }
  int covered() const { return covered_; }
  /// Rotates the pairs (2j, 2j+1) of each head of v (width floats) to position pos.
  void apply(float* v, int width, int pos) const {
    assert(pos < covered_);
    const float* c = cos_.data() + std::size_t(pos) * half_;
    const float* s = sin_.data() + std::size_t(pos) * half_;
    for (int h = 0; h < width; h += 2 * half_)
      for (int j = 0; j < half_; ++j) {
        const float a = v[h + 2 * j], b = v[h + 2 * j + 1];
        v[h + 2 * j] = a * c[j] - b * s[j];
        v[h + 2 * j + 1] = a * s[j] + b * c[j];
      }
  }

 private:
  int half_, head_size_, max_positions_;
  double theta_;
  int covered_ = 0;
  std::vector<float> cos_, sin_;
};

/// Token-by-token generation with a KV cache. Per token: RoPE from a table, attention with keys
/// and values stored transposed (head_size rows of seq_len positions, so that both products run
/// along contiguous positions), a vectorised softmax, and the classifier through the view.
template <class View>
class KvDecoder {
 public:
  explicit KvDecoder(View m)
      : m_(std::move(m)), c_(m_.config()), hs_(c_.head_size()), kv_dim_(c_.kv_dim()),
        rope_(c_.seq_len, hs_, c_.rope_theta) {
    x_.resize(c_.dim);
    xb_.resize(c_.dim);
    q_.resize(c_.dim);
    k_.resize(kv_dim_);
    v_.resize(kv_dim_);
    att_out_.resize(c_.dim);
    y_.resize(c_.dim);
    h1_.resize(c_.hidden_dim);
    h3_.resize(c_.hidden_dim);
    logits_.resize(c_.vocab_size);
    scores_.resize(c_.seq_len);
    key_cache_.assign(std::size_t(c_.n_layers) * c_.seq_len * kv_dim_, 0.f);
    value_cache_.assign(key_cache_.size(), 0.f);
  }

  const lmshrink::Llama2cConfig& config() const { return c_; }

  /// Logits (vocab) for `token` at position `pos`; positions 0..pos−1 must have been run since
  /// the sequence started (a new sequence simply starts again at pos 0).
  const Vec& forward(int token, int pos) {
    if (token < 0 || token >= c_.vocab_size)
      lmshrink::detail::fail<lmshrink::value_error>("KvDecoder::forward", "token ", token,
                                                    " is outside [0, ", c_.vocab_size, ")");
    if (pos < 0 || pos >= c_.seq_len)
      lmshrink::detail::fail<lmshrink::value_error>("KvDecoder::forward", "position ", pos,
                                                    " is outside [0, ", c_.seq_len, ")");
    const int dim = c_.dim, L = c_.n_layers, T = c_.seq_len;
    rope_.cover(pos + 1);
    x_ = m_.embedding().row(token).transpose();
    for (int l = 0; l < L; ++l) {
      rmsnorm(xb_, x_, m_.rms_att(l), float(c_.norm_eps));
      // Layer l's keys and values, transposed: [kv head][i][position].
      float* keys = key_cache_.data() + std::size_t(l) * T * kv_dim_;
      float* values = value_cache_.data() + std::size_t(l) * T * kv_dim_;
      m_.linear(l, 0, xb_.data(), 1, q_.data());
      m_.linear(l, 1, xb_.data(), 1, k_.data());
      m_.linear(l, 2, xb_.data(), 1, v_.data());
      rope_.apply(q_.data(), dim, pos);
      rope_.apply(k_.data(), kv_dim_, pos);
      for (int i = 0; i < kv_dim_; ++i) {
        keys[std::size_t(i) * T + pos] = k_[i];
        values[std::size_t(i) * T + pos] = v_[i];
      }
      attention(keys, values, pos);
      m_.linear(l, 3, att_out_.data(), 1, y_.data());
      x_ += y_;
      rmsnorm(xb_, x_, m_.rms_ffn(l), float(c_.norm_eps));
      m_.linear(l, 4, xb_.data(), 1, h1_.data());
      m_.linear(l, 6, xb_.data(), 1, h3_.data());
      h1_.array() = h1_.array() / (1.0f + (-h1_.array()).exp()) * h3_.array();
      m_.linear(l, 5, h1_.data(), 1, y_.data());
      x_ += y_;
    }
    rmsnorm(xb_, x_, m_.rms_final(), float(c_.norm_eps));
    m_.classify(xb_.data(), logits_.data());
    return logits_;
  }

 private:
  // Per head: scores = Kᵀq over the positions so far (K: head_size rows of seq_len), softmax,
  // out = V·a (V: head_size rows of seq_len). Both are Eigen matrix-vector products over
  // contiguous rows of positions.
  void attention(const float* keys, const float* values, int pos) {
    using Rows = Eigen::Map<const RowMat, 0, Eigen::OuterStride<>>;
    const int T = c_.seq_len, n = pos + 1, group = c_.n_heads / c_.n_kv_heads;
    const float inv_sqrt_hs = 1.0f / std::sqrt(float(hs_));
    auto s = scores_.head(n);
    for (int h = 0; h < c_.n_heads; ++h) {
      const std::size_t kv_offset = std::size_t(h / group) * hs_ * T;
      const Rows K(keys + kv_offset, hs_, n, Eigen::OuterStride<>(T));
      const Rows V(values + kv_offset, hs_, n, Eigen::OuterStride<>(T));
      s.noalias() = K.transpose() * q_.segment(h * hs_, hs_);
      s *= inv_sqrt_hs;
      s = (s.array() - s.maxCoeff()).exp().matrix();
      s /= s.sum();
      att_out_.segment(h * hs_, hs_).noalias() = V * s;
    }
  }

  View m_;
  lmshrink::Llama2cConfig c_;
  int hs_, kv_dim_;
  RopeTable rope_;
  Vec x_, xb_, q_, k_, v_, att_out_, y_, h1_, h3_, logits_, scores_;
  std::vector<float> key_cache_, value_cache_;
};

/// The full-sequence forward: x (n, dim) through every block, with causal attention over the
/// sequence; every linear layer is one (n, in)·(in, out) product.
template <class View>
class SequenceDecoder {
 public:
  explicit SequenceDecoder(View m)
      : m_(std::move(m)), c_(m_.config()), hs_(c_.head_size()), kv_dim_(c_.kv_dim()),
        rope_(c_.seq_len, hs_, c_.rope_theta) {}

  const lmshrink::Llama2cConfig& config() const { return c_; }

  /// Logits (n, vocab) for tokens[0..n), positions 0..n−1.
  const RowMat& forward(const int* tokens, int n) {
    static constexpr const char* where = "SequenceDecoder::forward";
    if (n < 1 || n > c_.seq_len)
      lmshrink::detail::fail<lmshrink::value_error>(where, "sequence length ", n,
                                                    " is outside [1, ", c_.seq_len, "]");
    const int dim = c_.dim, group = c_.n_heads / c_.n_kv_heads;
    rope_.cover(n);
    x_.resize(n, dim);
    for (int t = 0; t < n; ++t) {
      if (tokens[t] < 0 || tokens[t] >= c_.vocab_size)
        lmshrink::detail::fail<lmshrink::value_error>(where, "token ", tokens[t], " at ", t,
                                                      " is outside [0, ", c_.vocab_size, ")");
      x_.row(t) = m_.embedding().row(tokens[t]);
    }
    q_.resize(n, dim);
    k_.resize(n, kv_dim_);
    v_.resize(n, kv_dim_);
    y_.resize(n, dim);
    h1_.resize(n, c_.hidden_dim);
    h3_.resize(n, c_.hidden_dim);
    const float inv_sqrt_hs = 1.0f / std::sqrt(float(hs_));
    for (int l = 0; l < c_.n_layers; ++l) {
      rmsnorm_rows(x_, m_.rms_att(l));
      m_.linear(l, 0, xb_.data(), n, q_.data());
      m_.linear(l, 1, xb_.data(), n, k_.data());
      m_.linear(l, 2, xb_.data(), n, v_.data());
      for (int t = 0; t < n; ++t) {
        rope_.apply(q_.row(t).data(), dim, t);
        rope_.apply(k_.row(t).data(), kv_dim_, t);
      }
      att_.resize(n, dim);
      for (int h = 0; h < c_.n_heads; ++h) {
        const int kvh = h / group;
        // A plain product (the scale applied after) so that Eigen uses its GEMM, not a
        // coefficient-wise lazy product.
        scores_.noalias() = q_.middleCols(h * hs_, hs_) * k_.middleCols(kvh * hs_, hs_).transpose();
        scores_ *= inv_sqrt_hs;
        for (int t = 0; t < n; ++t) {
          auto row = scores_.row(t);
          const float max = row.head(t + 1).maxCoeff();
          row.head(t + 1) = (row.head(t + 1).array() - max).exp().matrix();
          row.head(t + 1) /= row.head(t + 1).sum();
          row.tail(n - t - 1).setZero();
        }
        att_.middleCols(h * hs_, hs_).noalias() = scores_ * v_.middleCols(kvh * hs_, hs_);
      }
      m_.linear(l, 3, att_.data(), n, y_.data());
      x_ += y_;
      rmsnorm_rows(x_, m_.rms_ffn(l));
      m_.linear(l, 4, xb_.data(), n, h1_.data());
      m_.linear(l, 6, xb_.data(), n, h3_.data());
      h1_.array() = h1_.array() / (1.0f + (-h1_.array()).exp()) * h3_.array();
      m_.linear(l, 5, h1_.data(), n, y_.data());
      x_ += y_;
    }
    rmsnorm_rows(x_, m_.rms_final());
    logits_.noalias() = xb_ * m_.classifier().transpose();
    return logits_;
  }

 private:
  void rmsnorm_rows(const RowMat& x, const Vec& w) {
    xb_.resize(x.rows(), x.cols());
    for (Eigen::Index t = 0; t < x.rows(); ++t) {
      const float ss = x.row(t).squaredNorm() / float(x.cols()) + float(c_.norm_eps);
      xb_.row(t) = x.row(t).cwiseProduct(w.transpose()) * (1.0f / std::sqrt(ss));
    }
  }

  View m_;
  lmshrink::Llama2cConfig c_;
  int hs_, kv_dim_;
  RopeTable rope_;
  RowMat x_, xb_, q_, k_, v_, y_, att_, scores_, h1_, h3_, logits_;
};

using LlamaKvDecoder = KvDecoder<DenseView>;
using LlamaSequenceDecoder = SequenceDecoder<DenseView>;

/// Mean natural-log NLL of targets[t] given inputs[0..t], with a double log-softmax over the
/// float logits; also counts top-1 hits.
struct WindowScore {
  double nll_sum = 0;
  long tokens = 0, top1 = 0;
};

template <class Decoder>
inline WindowScore score_window(Decoder& dec, const int* inputs, const int* targets, int n) {
  WindowScore s;
  for (int pos = 0; pos < n; ++pos) {
    const Vec& z = dec.forward(inputs[pos], pos);
    double max = -INFINITY;
    int arg = 0;
    for (int j = 0; j < z.size(); ++j)
      if (z[j] > max) max = z[j], arg = j;
    double sum = 0;
    for (int j = 0; j < z.size(); ++j) sum += std::exp(double(z[j]) - max);
    s.nll_sum += max + std::log(sum) - double(z[targets[pos]]);
    s.top1 += arg == targets[pos];
    ++s.tokens;
  }
  return s;
}

}  // namespace examples
