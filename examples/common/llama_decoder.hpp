#pragma once
// A reference Llama decoder for llama2.c models (stories260K and kin), as a C++ trainer would
// write one around lmshrink: RMSNorm (eps 1e-5), RoPE on adjacent pairs, grouped-query
// attention, SwiGLU feed-forward and a tied or separate classifier, with run.c's semantics.
//
// Two forms: the token-by-token forward with a KV cache (generation), and the full-sequence
// forward (scoring and training), where every linear layer is one matrix product over the
// sequence.
//
//   examples::LlamaKvDecoder dec(model);
//   const Vec& logits = dec.forward(token, pos);     // pos = 0, 1, … within one sequence
//   examples::LlamaSequenceDecoder seq(model);
//   const RowMat& all = seq.forward(tokens, n);       // (n, vocab) logits

#include <Eigen/Core>
#include <cmath>
#include <lmshrink/io/llama2c.hpp>
#include <vector>

namespace examples {

using Vec = Eigen::VectorXf;
using RowMat = lmshrink::RowMatrix<float>;

inline void rmsnorm(Eigen::Ref<Vec> out, const Eigen::Ref<const Vec>& x, const Eigen::Ref<const Vec>& w) {
  const float ss = x.squaredNorm() / float(x.size()) + 1e-5f;
  out = x.cwiseProduct(w) * (1.0f / std::sqrt(ss));
}

/// RoPE on adjacent pairs (2i, 2i+1) of each head: angle pos·10000^(−(2i mod hs)/hs).
inline void rope(float* v, int width, int head_size, int pos) {
  for (int i = 0; i < width; i += 2) {
    const int j = i % head_size;
    const float freq = 1.0f / std::pow(10000.0f, float(j) / float(head_size));
    const float angle = float(pos) * freq;
    const float c = std::cos(angle), s = std::sin(angle);
    const float a = v[i], b = v[i + 1];
    v[i] = a * c - b * s;
    v[i + 1] = a * s + b * c;
  }
}

class LlamaKvDecoder {
 public:
  explicit LlamaKvDecoder(const lmshrink::Llama2cModel& m)
      : m_(m), c_(m.config), hs_(c_.head_size()), kv_dim_(c_.kv_dim()) {
    x_.resize(c_.dim);
    xb_.resize(c_.dim);
    q_.resize(c_.dim);
    att_out_.resize(c_.dim);
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
      lmshrink::detail::fail<lmshrink::value_error>("LlamaKvDecoder::forward", "token ", token,
                                                    " is outside [0, ", c_.vocab_size, ")");
    if (pos < 0 || pos >= c_.seq_len)
      lmshrink::detail::fail<lmshrink::value_error>("LlamaKvDecoder::forward", "position ", pos,
                                                    " is outside [0, ", c_.seq_len, ")");
    const int dim = c_.dim, L = c_.n_layers, group = c_.n_heads / c_.n_kv_heads;
    x_ = m_.token_embedding.row(token).transpose();
    const float inv_sqrt_hs = 1.0f / std::sqrt(float(hs_));
    for (int l = 0; l < L; ++l) {
      rmsnorm(xb_, x_, m_.rms_att[std::size_t(l)]);
      float* k = key_cache_.data() + (std::size_t(l) * c_.seq_len + pos) * kv_dim_;
      float* v = value_cache_.data() + (std::size_t(l) * c_.seq_len + pos) * kv_dim_;
      q_.noalias() = m_.wq[std::size_t(l)] * xb_;
      Eigen::Map<Vec>(k, kv_dim_).noalias() = m_.wk[std::size_t(l)] * xb_;
      Eigen::Map<Vec>(v, kv_dim_).noalias() = m_.wv[std::size_t(l)] * xb_;
      rope(q_.data(), dim, hs_, pos);
      rope(k, kv_dim_, hs_, pos);
      for (int h = 0; h < c_.n_heads; ++h) {
        const float* qh = q_.data() + h * hs_;
        const int kvh = h / group;
        float max = -INFINITY;
        for (int t = 0; t <= pos; ++t) {
          const float* kt = key_cache_.data() + (std::size_t(l) * c_.seq_len + t) * kv_dim_ + kvh * hs_;
          float s = 0;
          for (int i = 0; i < hs_; ++i) s += qh[i] * kt[i];
          scores_[t] = s * inv_sqrt_hs;
          max = std::max(max, scores_[t]);
        }
        float sum = 0;
        for (int t = 0; t <= pos; ++t) sum += (scores_[t] = std::exp(scores_[t] - max));
        float* out = att_out_.data() + h * hs_;
        for (int i = 0; i < hs_; ++i) out[i] = 0;
        for (int t = 0; t <= pos; ++t) {
          const float a = scores_[t] / sum;
          const float* vt = value_cache_.data() + (std::size_t(l) * c_.seq_len + t) * kv_dim_ + kvh * hs_;
          for (int i = 0; i < hs_; ++i) out[i] += a * vt[i];
        }
      }
      x_.noalias() += m_.wo[std::size_t(l)] * att_out_;
      rmsnorm(xb_, x_, m_.rms_ffn[std::size_t(l)]);
      h1_.noalias() = m_.w1[std::size_t(l)] * xb_;
      h3_.noalias() = m_.w3[std::size_t(l)] * xb_;
      for (int i = 0; i < c_.hidden_dim; ++i) {
        const float g = h1_[i];
        h1_[i] = g / (1.0f + std::exp(-g)) * h3_[i];
      }
      x_.noalias() += m_.w2[std::size_t(l)] * h1_;
    }
    rmsnorm(xb_, x_, m_.rms_final);
    const RowMat& cls = m_.config.shared_classifier ? m_.token_embedding : m_.wcls;
    logits_.noalias() = cls * xb_;
    return logits_;
  }

 private:
  const lmshrink::Llama2cModel& m_;
  lmshrink::Llama2cConfig c_;
  int hs_, kv_dim_;
  Vec x_, xb_, q_, att_out_, h1_, h3_, logits_, scores_;
  std::vector<float> key_cache_, value_cache_;
};

/// The full-sequence forward: x (n, dim) through every block, with causal attention over the
/// sequence; every linear layer is one (n, in)·(in, out) product.
class LlamaSequenceDecoder {
 public:
  explicit LlamaSequenceDecoder(const lmshrink::Llama2cModel& m)
      : m_(m), c_(m.config), hs_(c_.head_size()), kv_dim_(c_.kv_dim()) {}

  const lmshrink::Llama2cConfig& config() const { return c_; }

  /// Logits (n, vocab) for tokens[0..n), positions 0..n−1.
  const RowMat& forward(const int* tokens, int n) {
    static constexpr const char* where = "LlamaSequenceDecoder::forward";
    if (n < 1 || n > c_.seq_len)
      lmshrink::detail::fail<lmshrink::value_error>(where, "sequence length ", n,
                                                    " is outside [1, ", c_.seq_len, "]");
    const int dim = c_.dim, group = c_.n_heads / c_.n_kv_heads;
    x_.resize(n, dim);
    for (int t = 0; t < n; ++t) {
      if (tokens[t] < 0 || tokens[t] >= c_.vocab_size)
        lmshrink::detail::fail<lmshrink::value_error>(where, "token ", tokens[t], " at ", t,
                                                      " is outside [0, ", c_.vocab_size, ")");
      x_.row(t) = m_.token_embedding.row(tokens[t]);
    }
    const float inv_sqrt_hs = 1.0f / std::sqrt(float(hs_));
    for (int l = 0; l < c_.n_layers; ++l) {
      const std::size_t L = std::size_t(l);
      rmsnorm_rows(x_, m_.rms_att[L]);
      q_.noalias() = xb_ * m_.wq[L].transpose();
      k_.noalias() = xb_ * m_.wk[L].transpose();
      v_.noalias() = xb_ * m_.wv[L].transpose();
      for (int t = 0; t < n; ++t) {
        rope(q_.row(t).data(), dim, hs_, t);
        rope(k_.row(t).data(), kv_dim_, hs_, t);
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
      x_.noalias() += att_ * m_.wo[L].transpose();
      rmsnorm_rows(x_, m_.rms_ffn[L]);
      h1_.noalias() = xb_ * m_.w1[L].transpose();
      h3_.noalias() = xb_ * m_.w3[L].transpose();
      h1_.array() = h1_.array() / (1.0f + (-h1_.array()).exp()) * h3_.array();
      x_.noalias() += h1_ * m_.w2[L].transpose();
    }
    rmsnorm_rows(x_, m_.rms_final);
    const RowMat& cls = c_.shared_classifier ? m_.token_embedding : m_.wcls;
    logits_.noalias() = xb_ * cls.transpose();
    return logits_;
  }

 private:
  void rmsnorm_rows(const RowMat& x, const Vec& w) {
    xb_.resize(x.rows(), x.cols());
    for (Eigen::Index t = 0; t < x.rows(); ++t) {
      const float ss = x.row(t).squaredNorm() / float(x.cols()) + 1e-5f;
      xb_.row(t) = x.row(t).cwiseProduct(w.transpose()) * (1.0f / std::sqrt(ss));
    }
  }

  const lmshrink::Llama2cModel& m_;
  lmshrink::Llama2cConfig c_;
  int hs_, kv_dim_;
  RowMat x_, xb_, q_, k_, v_, att_, scores_, h1_, h3_, logits_;
};

/// Mean NLL over rows of (n, vocab) logits against targets, double log-softmax; top-1 hits.
struct SequenceScore {
  double nll_sum = 0;
  long tokens = 0, top1 = 0;
};

inline SequenceScore score_logits(const RowMat& logits, const int* targets) {
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

/// Mean natural-log NLL of targets[t] given inputs[0..t], with a double log-softmax over the
/// float logits; also counts top-1 hits.
struct WindowScore {
  double nll_sum = 0;
  long tokens = 0, top1 = 0;
};

inline WindowScore score_window(LlamaKvDecoder& dec, const int* inputs, const int* targets, int n) {
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
