#pragma once
// GPT-2 for inference: every linear layer packed as a lmshrink::CompactLinear (a dense model
// packs as rank 0 with every row kept, so teacher and students run the same code), and a
// decoder with a KV cache for generation and a full-sequence forward for scoring.
//
//   auto teacher = examples::CompactGpt2::pack_dense(lmshrink::read_hf_gpt2("gpt2"));
//   examples::Gpt2Decoder dec(teacher);
//   const auto& logits = dec.forward(token, pos);          // (vocab), token by token
//   const auto& all = dec.forward_sequence(tokens, n);     // (n, vocab), positions 0..n−1

#include <Eigen/Core>
#include <array>
#include <cmath>
#include <lmshrink/compact.hpp>
#include <lmshrink/io/hf_checkpoint.hpp>
#include <lmshrink/pruner.hpp>
#include <vector>

#include "gpt2_trainer.hpp"

namespace examples {

struct CompactGpt2 {
  using RowMat = lmshrink::RowMatrix<float>;
  using Vec = lmshrink::Vector<float>;
  lmshrink::Gpt2Config config;
  RowMat wte, wpe;
  std::vector<Vec> ln1_w, ln1_b, ln2_w, ln2_b;
  Vec lnf_w, lnf_b;
  std::vector<std::array<lmshrink::CompactLinear<float>, kGpt2LinearKinds>> linear;
  lmshrink::CompactLinear<float> head;  // wte packed densely, for the logits

  static CompactGpt2 pack(const Gpt2Weights<float>& w) {
    CompactGpt2 m;
    m.config = w.config;
    m.wte = w.wte;
    m.wpe = w.wpe;
    m.ln1_w = w.ln1_w;
    m.ln1_b = w.ln1_b;
    m.ln2_w = w.ln2_w;
    m.ln2_b = w.ln2_b;
    m.lnf_w = w.lnf_w;
    m.lnf_b = w.lnf_b;
    m.linear = pack_blocks<lmshrink::CompactLinear<float>, kGpt2LinearKinds>(w.linear);
    m.head = lmshrink::CompactLinear<float>::pack(lmshrink::make_dense_layer<float>(m.wte));
    return m;
  }

  static CompactGpt2 pack_dense(const lmshrink::Gpt2Model& model) {
    return pack(Gpt2Weights<float>::from_model(model));
  }

  /// Bytes of every tensor: float32 values and the packed layers' int32 indices.
  std::int64_t bytes() const {
    std::int64_t n = 4 * (wte.size() + wpe.size() + lnf_w.size() + lnf_b.size());
    for (std::size_t l = 0; l < linear.size(); ++l) {
      n += 4 * (ln1_w[l].size() + ln1_b[l].size() + ln2_w[l].size() + ln2_b[l].size());
      for (const auto& layer : linear[l]) n += layer.weight_bytes();
    }
    return n;
  }
  /// The part of bytes() that is the packed layers' int32 indices.
  std::int64_t index_bytes() const {
    std::int64_t n = 0;
    for (const auto& block : linear)
      for (const auto& layer : block) n += layer.index_bytes();
    return n;
  }

  /// Stored parameters: embeddings, norms and the packed layers (the head is wte).
  std::int64_t parameters() const {
    std::int64_t n = wte.size() + wpe.size() + lnf_w.size() + lnf_b.size();
    for (std::size_t l = 0; l < linear.size(); ++l) {
      n += ln1_w[l].size() + ln1_b[l].size() + ln2_w[l].size() + ln2_b[l].size();
      for (const auto& layer : linear[l]) n += layer.parameters();
    }
    return n;
  }
};

class Gpt2Decoder {
 public:
  using RowMat = lmshrink::RowMatrix<float>;
  using Vec = lmshrink::Vector<float>;

  /// `threads` > 1 runs every product on that many threads (OpenMP; the same result for any count).
  explicit Gpt2Decoder(const CompactGpt2& m, int threads = 1) : m_(&m), c_(m.config), hs_(m.config.head_size()) {
    options_.threads = threads;
    const int L = c_.n_layers;
    key_cache_.assign(std::size_t(L), RowMat(c_.n_positions, c_.dim));
    value_cache_.assign(std::size_t(L), RowMat(c_.n_positions, c_.dim));
  }
  Gpt2Decoder(CompactGpt2&&, int = 1) = delete;  // the decoder keeps a pointer to the model

  const lmshrink::Gpt2Config& config() const { return c_; }

  /// Logits (vocab) of the token at `pos`, given the cached positions 0..pos−1.
  const Vec& forward(int token, int pos) {
    check(token, pos);
    x1_ = (m_->wte.row(token) + m_->wpe.row(pos)).transpose();
    q1_.resize(c_.dim);
    k1_.resize(c_.dim);
    v1_.resize(c_.dim);
    att1_.resize(c_.dim);
    scores_.resize(pos + 1);
    for (int l = 0; l < c_.n_layers; ++l) {
      const std::size_t L = std::size_t(l);
      layernorm(x1_.data(), 1, m_->ln1_w[L], m_->ln1_b[L], a1_);
      linear(l, kGq, a1_.data(), 1, q1_.data());
      linear(l, kGk, a1_.data(), 1, key_cache_[L].row(pos).data());
      linear(l, kGv, a1_.data(), 1, value_cache_[L].row(pos).data());
      const float scale = 1.0f / std::sqrt(float(hs_));
      for (int h = 0; h < c_.n_heads; ++h) {
        const auto q = q1_.segment(h * hs_, hs_);
        for (int t = 0; t <= pos; ++t) scores_[t] = scale * key_cache_[L].row(t).segment(h * hs_, hs_).dot(q.transpose());
        const float max = scores_.head(pos + 1).maxCoeff();
        scores_.head(pos + 1) = (scores_.head(pos + 1).array() - max).exp().matrix();
        scores_.head(pos + 1) /= scores_.head(pos + 1).sum();
        att1_.segment(h * hs_, hs_).setZero();
        for (int t = 0; t <= pos; ++t)
          att1_.segment(h * hs_, hs_) += scores_[t] * value_cache_[L].row(t).segment(h * hs_, hs_).transpose();
      }
      tmp1_.resize(c_.dim);
      linear(l, kGproj, att1_.data(), 1, tmp1_.data());
      x1_ += tmp1_;
      layernorm(x1_.data(), 1, m_->ln2_w[L], m_->ln2_b[L], a1_);
      h1_.resize(c_.hidden_dim);
      linear(l, kGfc, a1_.data(), 1, h1_.data());
      h1_ = h1_.unaryExpr([](float v) { return gelu_tanh(v); });
      linear(l, kGfcProj, h1_.data(), 1, tmp1_.data());
      x1_ += tmp1_;
    }
    layernorm(x1_.data(), 1, m_->lnf_w, m_->lnf_b, a1_);
    logits1_.resize(c_.vocab_size);
    m_->head.forward(a1_.data(), 1, c_.dim, logits1_.data(), c_.vocab_size, ws_, options_);
    return logits1_;
  }

  /// Logits (n, vocab) of tokens at positions 0..n−1, every linear layer one product.
  const RowMat& forward_sequence(const int* tokens, int n) {
    if (n < 1 || n > c_.n_positions)
      lmshrink::detail::fail<lmshrink::value_error>("Gpt2Decoder::forward_sequence", "n must be in [1, ",
                                                    c_.n_positions, "], got ", n);
    x_.resize(n, c_.dim);
    for (int t = 0; t < n; ++t) {
      check(tokens[t], t);
      x_.row(t) = m_->wte.row(tokens[t]) + m_->wpe.row(t);
    }
    for (RowMat* m : {&q_, &k_, &v_, &att_, &tmp_}) m->resize(n, c_.dim);
    h_.resize(n, c_.hidden_dim);
    p_.resize(n, n);
    const float scale = 1.0f / std::sqrt(float(hs_));
    for (int l = 0; l < c_.n_layers; ++l) {
      const std::size_t L = std::size_t(l);
      layernorm_rows(x_, m_->ln1_w[L], m_->ln1_b[L], a_);
      linear(l, kGq, a_.data(), n, q_.data());
      linear(l, kGk, a_.data(), n, k_.data());
      linear(l, kGv, a_.data(), n, v_.data());
      for (int h = 0; h < c_.n_heads; ++h) {
        p_.noalias() = q_.middleCols(h * hs_, hs_) * k_.middleCols(h * hs_, hs_).transpose();
        p_ *= scale;
        for (int t = 0; t < n; ++t) {
          auto row = p_.row(t);
          const float max = row.head(t + 1).maxCoeff();
          row.head(t + 1) = (row.head(t + 1).array() - max).exp().matrix();
          row.head(t + 1) /= row.head(t + 1).sum();
          row.tail(n - t - 1).setZero();
        }
        att_.middleCols(h * hs_, hs_).noalias() = p_ * v_.middleCols(h * hs_, hs_);
      }
      linear(l, kGproj, att_.data(), n, tmp_.data());
      x_ += tmp_;
      layernorm_rows(x_, m_->ln2_w[L], m_->ln2_b[L], a_);
      linear(l, kGfc, a_.data(), n, h_.data());
      h_ = h_.unaryExpr([](float v) { return gelu_tanh(v); });
      linear(l, kGfcProj, h_.data(), n, tmp_.data());
      x_ += tmp_;
    }
    layernorm_rows(x_, m_->lnf_w, m_->lnf_b, a_);
    logits_.resize(n, c_.vocab_size);
    m_->head.forward(a_.data(), n, c_.dim, logits_.data(), c_.vocab_size, ws_, options_);
    return logits_;
  }

 private:
  void check(int token, int pos) const {
    if (token < 0 || token >= c_.vocab_size || pos < 0 || pos >= c_.n_positions)
      lmshrink::detail::fail<lmshrink::value_error>("Gpt2Decoder::forward", "token ", token, " at position ", pos,
                                                    ": token in [0, ", c_.vocab_size, ") and position in [0, ",
                                                    c_.n_positions, ") were expected");
  }
  void linear(int l, int kind, const float* x, Eigen::Index n, float* y) {
    const auto& layer = m_->linear[std::size_t(l)][std::size_t(kind)];
    layer.forward(x, n, layer.in_features(), y, layer.out_features(), ws_, options_);
  }
  void layernorm(const float* x, int, const Vec& w, const Vec& b, Vec& y) const {
    const Eigen::Map<const Vec> v(x, c_.dim);
    const float mean = v.mean();
    const float var = (v.array() - mean).square().mean();
    y = ((v.array() - mean) / std::sqrt(var + float(c_.norm_eps)) * w.array() + b.array()).matrix();
  }
  void layernorm_rows(const RowMat& x, const Vec& w, const Vec& b, RowMat& y) const {
    y.resize(x.rows(), x.cols());
    for (Eigen::Index t = 0; t < x.rows(); ++t) {
      const float mean = x.row(t).mean();
      const float var = (x.row(t).array() - mean).square().mean();
      y.row(t) = ((x.row(t).array() - mean) / std::sqrt(var + float(c_.norm_eps)) * w.transpose().array() +
                  b.transpose().array()).matrix();
    }
  }

  const CompactGpt2* m_;
  lmshrink::Gpt2Config c_;
  int hs_;
  std::vector<RowMat> key_cache_, value_cache_;
  Vec x1_, a1_, q1_, k1_, v1_, att1_, tmp1_, h1_, scores_, logits1_;
  RowMat x_, a_, q_, k_, v_, att_, tmp_, h_, p_, logits_;
  lmshrink::CompactForwardOptions options_;
  lmshrink::CompactLinear<float>::Workspace ws_;
};

}  // namespace examples
