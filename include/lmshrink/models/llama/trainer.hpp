#pragma once
// The trainable form of a llama2.c decoder, as a C++ trainer composes lmshrink: every linear
// layer is a lmshrink::LowRankSparseLinear (a dense layer is rank 0 with all of W in S), the
// rest (embedding, RMSNorm gains) are plain tensors. Full-sequence forward over a batch of
// sequences, and the backward of all of it; the user owns the loop:
//
//   models::Weights<float> w = models::Weights<float>::from_model(teacher);
//   models::Trainer<float> net(w, batch, n);
//   const auto& logits = net.forward(tokens);      // (batch·n, vocab)
//   ... loss, dlogits ...
//   net.zero_grad();  net.backward(dlogits);       // net.grads() for every parameter
//
// Semantics are run.c's (see decoder.hpp); the backward is checked against central
// differences in double by tests/test_trainer.cpp.

#include <Eigen/Core>
#include <array>
#include <cmath>
#include "dense.hpp"
#include "../../low_rank_sparse_linear.hpp"
#include "../activations.hpp"
#include "../attention.hpp"
#include "../net_profile.hpp"
#include "../norms.hpp"
#include "../rope.hpp"
#include "../../optim.hpp"
#include "../../pruner.hpp"
#include <string>
#include <vector>

#include "../linear_blocks.hpp"
#include "block.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {
namespace llama {

/// The bias of linear `kind` of block l in a dense model: q/k/v's when config.qkv_bias, else none.
inline const lmshrink::Vector<float>* qkv_bias_of(const DenseModel& m, int l, int kind) {
  if (!m.config.qkv_bias || kind > kWv) return nullptr;
  const auto& b = kind == kWq ? m.bq : kind == kWk ? m.bk : m.bv;
  return &b.at(std::size_t(l));
}

template <class Scalar>
struct Weights {
  using Mat = lmshrink::RowMatrix<Scalar>;
  using Vec = lmshrink::Vector<Scalar>;
  using Layer = lmshrink::LowRankSparseLinear<Scalar>;

  Config config;
  Mat embedding;   // (vocab, dim); also the classifier when config.shared_classifier
  Mat classifier;  // (vocab, dim) when not shared, else empty
  std::vector<Vec> rms_att, rms_ffn;
  Vec rms_final;
  std::vector<std::array<Layer, kLinearKinds>> linear;  // [layer][kind]

  /// Dense layers: rank 0, W in S, every row live.
  static Weights from_model(const DenseModel& m) {
    Weights w;
    w.config = m.config;
    w.embedding = m.token_embedding.template cast<Scalar>();
    if (!m.config.shared_classifier) w.classifier = m.wcls.template cast<Scalar>();
    w.rms_final = m.rms_final.template cast<Scalar>();
    for (int l = 0; l < m.config.n_layers; ++l) {
      const std::size_t L = std::size_t(l);
      w.rms_att.push_back(m.rms_att[L].template cast<Scalar>());
      w.rms_ffn.push_back(m.rms_ffn[L].template cast<Scalar>());
      const lmshrink::RowMatrix<float>* src[kLinearKinds] = {&m.wq[L], &m.wk[L], &m.wv[L], &m.wo[L],
                                                             &m.w1[L], &m.w2[L], &m.w3[L]};
      std::array<Layer, kLinearKinds> layers;
      for (int k = 0; k < kLinearKinds; ++k) {
        const lmshrink::Vector<float>* b = qkv_bias_of(m, l, k);
        layers[std::size_t(k)] = lmshrink::make_dense_layer<Scalar>(src[k]->template cast<Scalar>(), b != nullptr);
        if (b != nullptr) layers[std::size_t(k)].bias() = b->template cast<Scalar>();
      }
      w.linear.push_back(std::move(layers));
    }
    return w;
  }

  /// The dense model these weights represent (U·V + S∘M per linear layer), as float.
  DenseModel to_model() const {
    DenseModel m;
    m.config = config;
    m.token_embedding = embedding.template cast<float>();
    if (!config.shared_classifier) m.wcls = classifier.template cast<float>();
    m.rms_final = rms_final.template cast<float>();
    std::vector<lmshrink::RowMatrix<float>>* dst[kLinearKinds] = {&m.wq, &m.wk, &m.wv, &m.wo,
                                                                  &m.w1, &m.w2, &m.w3};
    for (int l = 0; l < config.n_layers; ++l) {
      m.rms_att.push_back(rms_att[std::size_t(l)].template cast<float>());
      m.rms_ffn.push_back(rms_ffn[std::size_t(l)].template cast<float>());
      for (int k = 0; k < kLinearKinds; ++k)
        dst[k]->push_back(linear[std::size_t(l)][std::size_t(k)].to_dense().template cast<float>());
      if (config.qkv_bias)
        for (auto [k, b] : {std::pair{kWq, &m.bq}, std::pair{kWk, &m.bk}, std::pair{kWv, &m.bv}})
          b->push_back(linear[std::size_t(l)][std::size_t(k)].bias().template cast<float>());
    }
    return m;  // the legacy RoPE tables stay empty: write_llama2c computes them
  }

  /// Parameters that are stored: embedding, classifier, gains and every linear layer's live
  /// parameters (r·(out+in) + live S entries).
  std::int64_t parameters() const {
    std::int64_t n = embedding.size() + classifier.size() + rms_final.size();
    for (std::size_t l = 0; l < linear.size(); ++l) n += rms_att[l].size() + rms_ffn[l].size();
    return n + linear_parameters();
  }

  /// Live parameters of the linear layers and the dense count they replace.
  std::int64_t linear_parameters() const { return live_linear_parameters(linear); }
  std::int64_t linear_dense_parameters() const { return dense_linear_parameters(linear); }
};

/// Gradients of every parameter of Weights, same shapes.
template <class Scalar>
struct Grads {
  using W = Weights<Scalar>;
  typename W::Mat embedding, classifier;
  std::vector<typename W::Vec> rms_att, rms_ffn;
  typename W::Vec rms_final;
  std::vector<std::array<typename W::Layer::Gradients, kLinearKinds>> linear;

  Grads() = default;  // none: a forward-only trainer's
  explicit Grads(const W& w) {
    embedding.setZero(w.embedding.rows(), w.embedding.cols());
    classifier.setZero(w.classifier.rows(), w.classifier.cols());
    rms_final.setZero(w.rms_final.size());
    for (std::size_t l = 0; l < w.linear.size(); ++l) {
      rms_att.push_back(W::Vec::Zero(w.rms_att[l].size()));
      rms_ffn.push_back(W::Vec::Zero(w.rms_ffn[l].size()));
      std::array<typename W::Layer::Gradients, kLinearKinds> g;
      for (int k = 0; k < kLinearKinds; ++k) g[std::size_t(k)] = w.linear[l][std::size_t(k)].make_gradients();
      linear.push_back(std::move(g));
    }
  }

  void set_zero() {
    embedding.setZero();
    classifier.setZero();
    rms_final.setZero();
    for (std::size_t l = 0; l < linear.size(); ++l) {
      rms_att[l].setZero();
      rms_ffn[l].setZero();
      for (auto& g : linear[l]) g.set_zero();
    }
  }
};

/// Full-sequence forward and backward over `batch` sequences of `n` tokens each (positions
/// 0..n−1 in every sequence). Buffers are sized once, at construction.
template <class Scalar>
class Trainer {
 public:
  using W = Weights<Scalar>;
  using Mat = typename W::Mat;
  using Vec = typename W::Vec;

  Trainer(W& weights, int batch, int n, NetMode mode = NetMode::training)
      : w_(weights), g_(net_trains(mode) ? Grads<Scalar>(weights) : Grads<Scalar>()),
        c_(weights.config), mode_(mode), blocked_(blocked_attention_for(n)), batch_(batch), n_(n),
        rope_(c_.seq_len, c_.head_size(), c_.rope_theta, c_.rope_scaling) {
    static constexpr const char* where = "llama::Trainer";
    if (batch < 1 || n < 1 || n > c_.seq_len)
      lmshrink::fail<lmshrink::value_error>(where, "batch must be >= 1 and n in [1, ",
                                                    c_.seq_len, "], got batch ", batch, ", n ", n);
    const int N = batch * n, dim = c_.dim;
    hs_ = c_.head_size();
    rope_.cover(n);
    act_.resize(std::size_t(c_.n_layers));
    const bool training = net_trains(mode);
    const bool inputs_only = net_keeps_block_inputs_only(mode);
    for (auto& a : act_) {
      if (inputs_only) a.x.resize(N, c_.dim);  // the block's input: the previous block's output
      else a.resize(N, c_);
      if (mode == NetMode::training && !blocked_) a.p.resize(std::size_t(batch) * c_.n_heads, Mat(n, n));
    }
    if (!training && !blocked_) shared_p_.resize(1);  // every block's forward reuses it
    if (inputs_only) scratch_.resize(N, c_);          // every block's activations, reused
    if (mode == NetMode::recompute) {
      if (!blocked_) scratch_.p.resize(std::size_t(batch) * c_.n_heads, Mat(n, n));
      rerun_out_.resize(N, dim);
    }
    x_final_.resize(N, dim);
    xb_final_.resize(N, dim);
    r_final_.resize(N);
    logits_.resize(N, c_.vocab_size);
    if (training) {
      work_.resize(N, c_);
      dx_.resize(N, dim);
      dxb_.resize(N, dim);
      if (!blocked_) dp_.resize(n, n);
    }
    tokens_.assign(std::size_t(N), 0);
  }

  NetMode mode() const { return mode_; }

  /// Bytes of a trainer's buffers for `batch` sequences of n tokens: activations, attention,
  /// logits and (training) the backward's workspace; not the gradients, and not the linear
  /// layers' caches (2 · batch · n · rank values per layer, and 64 · (in + batch · n) where
  /// pruning scattered the live rows of S; sized by the first forward).
  static std::int64_t activation_bytes(const Config& c, int batch, int n, NetMode mode) {
    const std::int64_t N = std::int64_t(batch) * n;
    const bool training = net_trains(mode);
    const std::int64_t block = N * (7 * c.dim + 2 * c.kv_dim() + 3 * c.hidden_dim + 2);
    std::int64_t values = net_keeps_block_inputs_only(mode) ? c.n_layers * N * c.dim + block : c.n_layers * block;
    values += attention_buffer_values(mode == NetMode::recompute ? 1 : c.n_layers, batch, c.n_heads, n, training);
    values += N * (2 * c.dim + 1 + c.vocab_size);  // final norm, logits
    if (training) values += N * (3 * c.dim + 2 * c.kv_dim() + 3 * c.hidden_dim) + 2 * N * c.dim;  // the backward's workspace
    if (mode == NetMode::recompute) values += N * c.dim;  // the rerun block's output
    return values * std::int64_t(sizeof(Scalar)) + N * std::int64_t(sizeof(int));
  }

  /// Bytes this trainer's buffers hold now (activation_bytes's terms, and the linear caches).
  std::int64_t buffer_bytes() const {
    std::int64_t values = 0;
    const auto add = [&](const auto& m) { values += std::int64_t(m.size()); };
    std::vector<const Activations*> all;
    for (const auto& a : act_) all.push_back(&a);
    all.push_back(&scratch_);
    for (const Activations* state : all) {
      const Activations& a = *state;
      for (const Mat* m : {&a.x, &a.xb_att, &a.q, &a.k, &a.v, &a.att, &a.x_mid, &a.xb_ffn, &a.h1, &a.h3, &a.h, &a.tmp}) add(*m);
      add(a.r_att);
      add(a.r_ffn);
      for (const auto& p : a.p) add(p);
      add(a.lse);
    }
    for (const auto& p : shared_p_) add(p);
    add(shared_lse_);
    for (const Mat* m : {&x_final_, &xb_final_, &logits_, &dx_, &dxb_, &dp_, &rerun_out_}) add(*m);
    add(r_final_);
    for (const Mat* m : {&work_.dxb, &work_.dq, &work_.dk, &work_.dv, &work_.datt, &work_.dh, &work_.dh1, &work_.dh3}) add(*m);
    std::int64_t bytes = values * std::int64_t(sizeof(Scalar)) + std::int64_t(tokens_.size() * sizeof(int));
    for (const Activations* a : all)
      for (const auto& cache : a->cache) bytes += cache.bytes();
    return bytes;
  }

  int batch() const { return batch_; }
  int length() const { return n_; }
  W& weights() { return w_; }
  const W& weights() const { return w_; }
  Grads<Scalar>& grads() { return g_; }
  void zero_grad() { g_.set_zero(); }
  /// Phase times of every later forward and backward are added to *profile (null: none).
  void set_profile(NetProfile* profile) { profile_ = profile; }

  /// Logits (batch·n, vocab) for tokens (batch·n), sequence by sequence.
  const Mat& forward(const int* tokens);

  /// The output of block l (the residual stream after it, before any norm) from the last
  /// forward: (batch·n, dim). Layer-wise distillation matches these between student and teacher.
  const Mat& block_output(int l) const {
    check_block("llama::Trainer::block_output", l);
    return l + 1 < c_.n_layers ? act_[std::size_t(l + 1)].x : x_final_;
  }

  /// The input of linear layer `kind` of block l in the last forward (what calibration
  /// statistics accumulate): xb_att for wq/wk/wv, the attention output for wo, xb_ffn for
  /// w1/w3, silu(w1·x)∘(w3·x) for w2.
  const Mat& linear_input(int l, int kind) const {
    check_block("llama::Trainer::linear_input", l);
    if (net_keeps_block_inputs_only(mode_))
      lmshrink::fail<lmshrink::state_error>("llama::Trainer::linear_input", "an outputs or recompute net keeps only "
                                            "logits and block outputs; make it forward_only to read linear inputs");
    const auto& a = act_[std::size_t(l)];
    switch (kind) {
      case kWq: case kWk: case kWv: return a.xb_att;
      case kWo: return a.att;
      case kW1: case kW3: return a.xb_ffn;
      case kW2: return a.h;
      default:
        lmshrink::fail<lmshrink::value_error>("llama::Trainer::linear_input", "kind ", kind,
                                                      " is outside [0, ", kLinearKinds, ")");
    }
  }

  /// Accumulates the gradients of every parameter for dlogits = ∂loss/∂logits of the last
  /// forward, plus, when given, dblock[l] = ∂loss/∂block_output(l) for every block (a
  /// layer-wise distillation loss; empty matrices are skipped).
  void backward(const Mat& dlogits, const std::vector<Mat>* dblock = nullptr);

 private:
  struct Activations : BlockState<Scalar> {
    std::vector<Mat> p;  // softmax probabilities per (sequence, head), up to kKeptProbabilitiesUpTo positions
    Mat lse;             // beyond: each row's log-sum-exp per (sequence, head), for BlockedAttention
    std::array<typename W::Layer::Cache, kLinearKinds> cache;
  };

  const Mat& classifier() const {
    return c_.shared_classifier ? w_.embedding : w_.classifier;
  }

  void check_block(const char* where, int l) const {
    if (l < 0 || l >= c_.n_layers)
      lmshrink::fail<lmshrink::value_error>(where, "block ", l, " is outside [0, ",
                                                    c_.n_layers, ")");
  }

  lmshrink::models::AttentionShape attention_shape() const {
    return {batch_, n_, c_.n_heads, c_.n_kv_heads, hs_};
  }

  // Block l's forward from a.x into out, with a's linear caches; its attention's probabilities
  // (or log-sum-exp) in a's own buffers when a net trains, else in the one every block reuses.
  void run_block(int l, Activations& a, Mat& out);

  W& w_;
  Grads<Scalar> g_;
  Config c_;
  NetMode mode_;
  bool blocked_;  // BlockedAttention (long sequences) instead of kept probabilities
  int batch_, n_, hs_ = 0;
  lmshrink::models::RopeTable<Scalar> rope_;
  std::vector<Activations> act_;
  std::vector<Mat> shared_p_;  // forward-only: one probability buffer for every block
  Activations scratch_;        // outputs: every block's activations, reused block after block
  Mat shared_lse_;             // forward-only and blocked: the same
  lmshrink::models::BlockedAttention<Scalar> blocked_attention_;
  BlockWorkspace<Scalar> work_;
  Mat x_final_, xb_final_, logits_;
  Vec r_final_;
  Mat dx_, dxb_, dp_;
  lmshrink::models::AttentionWorkspace<Scalar> attention_work_;  // small heads' transposed keys and values
  Mat rerun_out_;  // recompute: the output of a block run again in the backward (not read)
  std::vector<int> tokens_;
  NetProfile* profile_ = nullptr;
};

// forward and backward, out of the class so that an explicit instantiation declaration covers
// them (docs/build.md): with LMSHRINK_EXTERN_TEMPLATES, float and double are compiled once, by
// src/instances/models/ (lmshrink_add_instances(... MODELS)).
template <class Scalar>
const typename Trainer<Scalar>::Mat& Trainer<Scalar>::forward(const int* tokens) {
  static constexpr const char* where = "llama::Trainer::forward";
  const ProfileScope whole(profile_slot(profile_, &NetProfile::total));
  if (profile_) ++profile_->forwards;
  const int N = batch_ * n_;
  for (int t = 0; t < N; ++t) {
    if (tokens[t] < 0 || tokens[t] >= c_.vocab_size)
      lmshrink::fail<lmshrink::value_error>(where, "token ", tokens[t], " at ", t,
                                                    " is outside [0, ", c_.vocab_size, ")");
    tokens_[std::size_t(t)] = tokens[t];
  }
  for (int t = 0; t < N; ++t) act_[0].x.row(t) = w_.embedding.row(tokens[t]);
  const bool inputs_only = net_keeps_block_inputs_only(mode_);
  for (int l = 0; l < c_.n_layers; ++l) {
    if (inputs_only) scratch_.x = act_[std::size_t(l)].x;
    run_block(l, inputs_only ? scratch_ : act_[std::size_t(l)], l + 1 < c_.n_layers ? act_[std::size_t(l + 1)].x : x_final_);
  }
  lmshrink::models::rms_norm_forward<Scalar>(x_final_, w_.rms_final, c_.norm_eps, xb_final_, r_final_);
  {
    const ProfileScope classify(profile_slot(profile_, &NetProfile::classifier));
    logits_.noalias() = xb_final_ * classifier().transpose();
  }
  return logits_;
}

template <class Scalar>
void Trainer<Scalar>::run_block(int l, Activations& a, Mat& out) {
  auto& lin = w_.linear[std::size_t(l)];
  const bool keep = net_trains(mode_);
  const auto linear = [&](int kind, const Mat& in, Mat& y) {
    const ProfileScope timed(profile_slot(profile_, &NetProfile::linear));
    lin[std::size_t(kind)].forward(in, y, a.cache[std::size_t(kind)]);
  };
  const auto attend = [&](Mat& q, Mat& k, const Mat& v, Mat& att) {
    const ProfileScope timed(profile_slot(profile_, &NetProfile::attention));
    rope_.rotate_rows(q, n_, +1);
    rope_.rotate_rows(k, n_, +1);
    if (blocked_)
      blocked_attention_.forward(attention_shape(), q, k, v, keep ? a.lse : shared_lse_, att);
    else
      lmshrink::models::causal_attention_forward<Scalar>(attention_shape(), q, k, v, keep ? a.p : shared_p_, att, attention_work_);
  };
  block_forward<Scalar>(c_, w_.rms_att[std::size_t(l)], w_.rms_ffn[std::size_t(l)], linear, attend, a, out);
}

template <class Scalar>
void Trainer<Scalar>::backward(const Mat& dlogits, const std::vector<Mat>* dblock) {
  if (!net_trains(mode_))
    lmshrink::fail<lmshrink::state_error>("llama::Trainer::backward", "this trainer was made without gradients "
                                          "(NetMode::forward_only or outputs); make it with NetMode::training or "
                                          "recompute to run backward");
  lmshrink::check_shape("llama::Trainer::backward", "dlogits", dlogits, logits_.rows(),
                                logits_.cols());
  if (dblock) {
    if (int(dblock->size()) != c_.n_layers)
      lmshrink::fail<lmshrink::shape_error>("llama::Trainer::backward", "dblock has ",
                                                    dblock->size(), " matrices but the model has ",
                                                    c_.n_layers, " blocks");
    for (const auto& d : *dblock)
      if (d.size() != 0)
        lmshrink::check_shape("llama::Trainer::backward", "dblock[l]", d, logits_.rows(), c_.dim);
  }
  const ProfileScope whole(profile_slot(profile_, &NetProfile::total));
  if (profile_) ++profile_->backwards;
  {
    const ProfileScope classify(profile_slot(profile_, &NetProfile::classifier));
    Mat& dcls = c_.shared_classifier ? g_.embedding : g_.classifier;
    dcls.noalias() += dlogits.transpose() * xb_final_;
    dxb_.noalias() = dlogits * classifier();
  }
  dx_.setZero();
  lmshrink::models::rms_norm_backward<Scalar>(x_final_, w_.rms_final, r_final_, dxb_, dx_, g_.rms_final);
  for (int l = c_.n_layers - 1; l >= 0; --l) {
    const bool rerun = mode_ == NetMode::recompute;
    if (rerun) {  // block l's activations again, from its kept input
      scratch_.x = act_[std::size_t(l)].x;
      run_block(l, scratch_, rerun_out_);
    }
    auto& a = rerun ? scratch_ : act_[std::size_t(l)];
    auto& lin = w_.linear[std::size_t(l)];
    auto& gl = g_.linear[std::size_t(l)];
    if (dblock && (*dblock)[std::size_t(l)].size() != 0) dx_ += (*dblock)[std::size_t(l)];
    const auto linear_backward = [&](int kind, const Mat& in, const Mat& dout, Mat& din) {
      const ProfileScope timed(profile_slot(profile_, &NetProfile::linear));
      lin[std::size_t(kind)].backward(in, dout, a.cache[std::size_t(kind)], din, gl[std::size_t(kind)]);
    };
    const auto attend_backward = [&](const Mat& datt, Mat& dq, Mat& dk, Mat& dv) {
      const ProfileScope timed(profile_slot(profile_, &NetProfile::attention));
      if (blocked_)
        blocked_attention_.backward(attention_shape(), a.q, a.k, a.v, a.att, a.lse, datt, dq, dk, dv);
      else
        lmshrink::models::causal_attention_backward<Scalar>(attention_shape(), a.q, a.k, a.v, a.p, datt, dp_, dq, dk, dv, attention_work_);
      rope_.rotate_rows(dq, n_, -1);
      rope_.rotate_rows(dk, n_, -1);
    };
    block_backward<Scalar>(w_.rms_att[std::size_t(l)], w_.rms_ffn[std::size_t(l)], linear_backward,
                                 attend_backward, a, work_, dx_, g_.rms_att[std::size_t(l)],
                                 g_.rms_ffn[std::size_t(l)]);
  }
  for (int t = 0; t < batch_ * n_; ++t) g_.embedding.row(tokens_[std::size_t(t)]) += dx_.row(t);
}

/// A decoder view (decoder.hpp) of trainable weights: a model is scored and sampled
/// through the very layers it trains with (or teaches with), not through a copy. Each view has
/// its own layer cache, so one view per thread.
class WeightsView {
 public:
  WeightsView(const Weights<float>& w) : w_(&w) {}  // NOLINT: implicit, a view
  WeightsView(Weights<float>&&) = delete;            // a view of a temporary would dangle
  const Config& config() const { return w_->config; }
  const lmshrink::RowMatrix<float>& embedding() const { return w_->embedding; }
  const lmshrink::RowMatrix<float>& classifier() const {
    return w_->config.shared_classifier ? w_->embedding : w_->classifier;
  }
  const lmshrink::Vector<float>& rms_att(int l) const { return w_->rms_att[std::size_t(l)]; }
  const lmshrink::Vector<float>& rms_ffn(int l) const { return w_->rms_ffn[std::size_t(l)]; }
  const lmshrink::Vector<float>& rms_final() const { return w_->rms_final; }
  void linear(int l, int kind, const float* x, Eigen::Index n, float* y) {
    const auto& layer = w_->linear[std::size_t(l)][std::size_t(kind)];
    layer.forward(x, n, layer.in_features(), y, layer.out_features(), cache_);
  }
  /// logits (vocab) = classifier · x (dim), for one token.
  void classify(const float* x, float* logits) const {
    const auto& W = classifier();
    Eigen::Map<Eigen::VectorXf>(logits, W.rows()).noalias() = W * Eigen::Map<const Eigen::VectorXf>(x, W.cols());
  }

 private:
  const Weights<float>* w_;
  lmshrink::LowRankSparseLinear<float>::Cache cache_;
};

#ifdef LMSHRINK_EXTERN_TEMPLATES
extern template class Trainer<float>;
extern template class Trainer<double>;
#endif

}  // namespace llama
}  // namespace models
LMSHRINK_NAMESPACE_END
