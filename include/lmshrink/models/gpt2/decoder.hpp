#pragma once
// GPT-2 for inference: every linear layer packed as a lmshrink::CompactLinear (a dense model
// packs as rank 0 with every row kept, so teacher and students run the same code), and a
// decoder with a KV cache for generation and a full-sequence forward for scoring.
//
//   auto teacher = models::Compact::pack_dense(lmshrink::models::gpt2::read_hf("gpt2"));
//   models::Decoder dec(teacher);
//   const auto& logits = dec.forward(token, pos);          // (vocab), token by token
//   const auto& all = dec.forward_sequence(tokens, n);     // (n, vocab), positions 0..n−1

#include <Eigen/Core>
#include <array>
#include <cmath>
#include "../../compact.hpp"
#include "dense.hpp"
#include "../activations.hpp"
#include "../attention.hpp"
#include "../norms.hpp"
#include "../../pruner.hpp"
#include <vector>

#include "block.hpp"
#include "trainer.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {
namespace gpt2 {

struct Compact {
  using RowMat = lmshrink::RowMatrix<float>;
  using Vec = lmshrink::Vector<float>;
  Config config;
  RowMat wte, wpe;
  std::vector<Vec> ln1_w, ln1_b, ln2_w, ln2_b;
  Vec lnf_w, lnf_b;
  std::vector<std::array<lmshrink::CompactLinear<float>, kLinearKinds>> linear;
  lmshrink::CompactLinear<float> head;  // wte packed densely, for the logits

  /// `options`: the form each linear layer is packed in (lmshrink::PackOptions; the least
  /// modelled cost for one token per call by default, lmshrink::PackForm::timed to time them).
  static Compact pack(const Weights<float>& w, const lmshrink::PackOptions& options = lmshrink::fastest_pack()) {
    Compact m;
    m.config = w.config;
    m.wte = w.wte;
    m.wpe = w.wpe;
    m.ln1_w = w.ln1_w;
    m.ln1_b = w.ln1_b;
    m.ln2_w = w.ln2_w;
    m.ln2_b = w.ln2_b;
    m.lnf_w = w.lnf_w;
    m.lnf_b = w.lnf_b;
    m.linear = pack_blocks<lmshrink::CompactLinear<float>, kLinearKinds>(w.linear, options);
    m.head = lmshrink::CompactLinear<float>::pack(lmshrink::make_dense_layer<float>(m.wte));
    return m;
  }

  static Compact pack_dense(const DenseModel& model) {
    return pack(Weights<float>::from_model(model));
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

/// The decoder reads a model through a view: its config, embeddings and norms, `linear(l, kind,
/// x, y)` (y = layer `kind` of block l applied to x, rows = tokens) and `head(x, logits)`.
/// CompactView runs a Compact's packed layers; WeightsView runs trainable weights
/// (gpt2/trainer.hpp) through their own layers.
class CompactView {
 public:
  using RowMat = lmshrink::RowMatrix<float>;
  using Vec = lmshrink::Vector<float>;
  /// `options.threads` > 1 runs every product on that many threads of `options.team` (the same
  /// result for any count).
  CompactView(const Compact& m,  // NOLINT: implicit, a view
                  const lmshrink::CompactForwardOptions& options = {})
      : m_(&m), options_(options) {}
  CompactView(Compact&&, const lmshrink::CompactForwardOptions& = {}) = delete;  // would dangle
  const Config& config() const { return m_->config; }
  const RowMat& wte() const { return m_->wte; }
  const RowMat& wpe() const { return m_->wpe; }
  BlockNorms<const Vec> norms(int l) const {
    const std::size_t L = std::size_t(l);
    return {m_->ln1_w[L], m_->ln1_b[L], m_->ln2_w[L], m_->ln2_b[L]};
  }
  const Vec& lnf_w() const { return m_->lnf_w; }
  const Vec& lnf_b() const { return m_->lnf_b; }
  void linear(int l, int kind, const RowMat& x, RowMat& y) {
    const auto& layer = m_->linear[std::size_t(l)][std::size_t(kind)];
    layer.forward(x.data(), x.rows(), layer.in_features(), y.data(), layer.out_features(), ws_, options_);
  }
  void head(const RowMat& x, float* logits) {
    m_->head.forward(x.data(), x.rows(), x.cols(), logits, m_->config.vocab_size, ws_, options_);
  }

 private:
  const Compact* m_;
  lmshrink::CompactForwardOptions options_;
  lmshrink::CompactLinear<float>::Workspace ws_;
};

class WeightsView {
 public:
  using RowMat = lmshrink::RowMatrix<float>;
  using Vec = lmshrink::Vector<float>;
  WeightsView(const Weights<float>& w) : w_(&w) {}  // NOLINT: implicit, a view
  WeightsView(Weights<float>&&) = delete;           // a view of a temporary would dangle
  const Config& config() const { return w_->config; }
  const RowMat& wte() const { return w_->wte; }
  const RowMat& wpe() const { return w_->wpe; }
  BlockNorms<const Vec> norms(int l) const {
    const std::size_t L = std::size_t(l);
    return {w_->ln1_w[L], w_->ln1_b[L], w_->ln2_w[L], w_->ln2_b[L]};
  }
  const Vec& lnf_w() const { return w_->lnf_w; }
  const Vec& lnf_b() const { return w_->lnf_b; }
  void linear(int l, int kind, const RowMat& x, RowMat& y) {
    w_->linear[std::size_t(l)][std::size_t(kind)].forward(x, y, cache_);
  }
  void head(const RowMat& x, float* logits) {
    Eigen::Map<RowMat>(logits, x.rows(), w_->wte.rows()).noalias() = x * w_->wte.transpose();
  }

 private:
  const Weights<float>* w_;
  lmshrink::LowRankSparseLinear<float>::Cache cache_;
};

/// GPT-2's KV-cache step and full-sequence forward over a view.
template <class View>
class Decoder {
 public:
  using RowMat = lmshrink::RowMatrix<float>;
  using Vec = lmshrink::Vector<float>;

  explicit Decoder(View m)
      : m_(std::move(m)), c_(m_.config()), hs_(c_.head_size()),
        cache_(c_.n_layers, c_.n_positions, c_.n_heads, c_.n_heads, hs_) {}

  const Config& config() const { return c_; }

  /// Logits (vocab) of the token at `pos`, given the cached positions 0..pos−1.
  const Vec& forward(int token, int pos);

  /// Logits (n, vocab) of tokens at positions 0..n−1, every linear layer one product.
  const RowMat& forward_sequence(const int* tokens, int n);

 private:
  void check(int token, int pos) const {
    if (token < 0 || token >= c_.vocab_size || pos < 0 || pos >= c_.n_positions)
      lmshrink::fail<lmshrink::value_error>("gpt2::Decoder::forward", "token ", token, " at position ", pos,
                                                    ": token in [0, ", c_.vocab_size, ") and position in [0, ",
                                                    c_.n_positions, ") were expected");
  }
  void resize(int n) {
    if (x_.rows() == n) return;
    state_.resize(n, c_);
    for (RowMat* m : {&x_, &a_, &xhat_}) m->resize(n, c_.dim);
    rstd_.resize(n);
  }
  // a_ = ln_f(x_).
  void final_norm() { lmshrink::models::layer_norm_forward<float>(x_, m_.lnf_w(), m_.lnf_b(), c_.norm_eps, xhat_, rstd_, a_); }

  View m_;
  Config c_;
  int hs_;
  lmshrink::models::KvCache<float> cache_;
  std::vector<RowMat> p_ = std::vector<RowMat>(1);  // one probability matrix, reused per head
  lmshrink::models::AttentionWorkspace<float> attention_work_;
  BlockState<float> state_;
  RowMat x_, a_, xhat_, logits_;
  Vec rstd_, logits1_;
};

// The two forwards out of the class, so that an explicit instantiation declaration covers them:
// with LMSHRINK_EXTERN_TEMPLATES, the decoders of a packed and of a trained model are compiled
// once, by src/instances/models/gpt2.cpp (docs/build.md).
template <class View>
const typename Decoder<View>::Vec& Decoder<View>::forward(int token, int pos) {
  check(token, pos);
  resize(1);
  x_ = m_.wte().row(token) + m_.wpe().row(pos);
  for (int l = 0; l < c_.n_layers; ++l) {
    const auto linear = [&](int kind, const RowMat& in, RowMat& out) { m_.linear(l, kind, in, out); };
    const auto attend = [&](RowMat& q, RowMat& k, const RowMat& v, RowMat& att) {
      cache_.attend(l, pos, q.data(), k.data(), v.data(), att.data());
    };
    state_.x = x_;
    block_forward<float>(c_, m_.norms(l), linear, attend, state_, x_);
  }
  final_norm();
  logits1_.resize(c_.vocab_size);
  m_.head(a_, logits1_.data());
  return logits1_;
}

template <class View>
const typename Decoder<View>::RowMat& Decoder<View>::forward_sequence(const int* tokens, int n) {
  if (n < 1 || n > c_.n_positions)
    lmshrink::fail<lmshrink::value_error>("gpt2::Decoder::forward_sequence", "n must be in [1, ",
                                                  c_.n_positions, "], got ", n);
  resize(n);
  for (int t = 0; t < n; ++t) {
    check(tokens[t], t);
    x_.row(t) = m_.wte().row(tokens[t]) + m_.wpe().row(t);
  }
  const lmshrink::models::AttentionShape shape{1, n, c_.n_heads, c_.n_heads, hs_};
  for (int l = 0; l < c_.n_layers; ++l) {
    const auto linear = [&](int kind, const RowMat& in, RowMat& out) { m_.linear(l, kind, in, out); };
    const auto attend = [&](RowMat& q, RowMat& k, const RowMat& v, RowMat& att) {
      lmshrink::models::causal_attention_forward<float>(shape, q, k, v, p_, att, attention_work_);
    };
    state_.x = x_;
    block_forward<float>(c_, m_.norms(l), linear, attend, state_, x_);
  }
  final_norm();
  logits_.resize(n, c_.vocab_size);
  m_.head(a_, logits_.data());
  return logits_;
}

#ifdef LMSHRINK_EXTERN_TEMPLATES
extern template class Decoder<CompactView>;
extern template class Decoder<WeightsView>;
#endif

}  // namespace gpt2
}  // namespace models
LMSHRINK_NAMESPACE_END
