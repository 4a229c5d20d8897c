#pragma once
// The trainable form of GPT-2, as a C++ trainer composes lmshrink: token + learned position
// embeddings, pre-LayerNorm blocks (weight and bias, eps from the config), causal softmax
// attention, GELU (tanh approximation), biases on every linear layer, final LayerNorm, and the
// head tied to the token embedding. Every linear layer is a lmshrink::LowRankSparseLinear with
// a bias (a dense layer is rank 0 with all of W in S).
//
//   auto w = models::Weights<float>::from_model(lmshrink::models::gpt2::read_hf("gpt2"));
//   models::Trainer<float> net(w, batch, n);
//   const auto& logits = net.forward(tokens);     // (batch·n, vocab)
//   net.zero_grad();  net.backward(dlogits);      // net.grads() for every parameter
//
// The fused QKV projection (c_attn, (3·dim, dim)) is split into three layers q, k and v of
// (dim, dim) with their thirds of the bias. Each then gets its own rank, its own pruning
// allocation and its own calibration, as Llama's q/k/v do: the three have different spectra
// (q and k are typically of lower effective rank than v), and one shared factorisation would
// force one rank and one shared input basis V on all three. to_model() fuses them back.
//
// The backward is checked against central differences in double by tests/test_gpt2.cpp.

#include <Eigen/Core>
#include <array>
#include <cmath>
#include "dense.hpp"
#include "../../low_rank_sparse_linear.hpp"
#include "../activations.hpp"
#include "../attention.hpp"
#include "../net_profile.hpp"
#include "../norms.hpp"
#include "../../pruner.hpp"
#include <string>
#include <vector>

#include "../linear_blocks.hpp"
#include "block.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {
namespace gpt2 {

using lmshrink::models::gelu_tanh;

template <class Scalar>
struct Weights {
  using Mat = lmshrink::RowMatrix<Scalar>;
  using Vec = lmshrink::Vector<Scalar>;
  using Layer = lmshrink::LowRankSparseLinear<Scalar>;

  Config config;
  Mat wte;  // (vocab, dim); also the head
  Mat wpe;  // (n_positions, dim)
  std::vector<Vec> ln1_w, ln1_b, ln2_w, ln2_b;
  Vec lnf_w, lnf_b;
  std::vector<std::array<Layer, kLinearKinds>> linear;  // [layer][kind], each with a bias

  /// Dense layers: rank 0, W in S, every row live; c_attn split into q, k, v.
  static Weights from_model(const DenseModel& m) {
    Weights w;
    w.config = m.config;
    const int d = m.config.dim;
    w.wte = m.wte.template cast<Scalar>();
    w.wpe = m.wpe.template cast<Scalar>();
    w.lnf_w = m.lnf_w.template cast<Scalar>();
    w.lnf_b = m.lnf_b.template cast<Scalar>();
    const auto dense = [](const lmshrink::RowMatrix<float>& W, const lmshrink::Vector<float>& b) {
      Layer layer = lmshrink::make_dense_layer<Scalar>(W.template cast<Scalar>(), true);
      layer.bias() = b.template cast<Scalar>();
      return layer;
    };
    for (std::size_t l = 0; l < m.attn_w.size(); ++l) {
      w.ln1_w.push_back(m.ln1_w[l].template cast<Scalar>());
      w.ln1_b.push_back(m.ln1_b[l].template cast<Scalar>());
      w.ln2_w.push_back(m.ln2_w[l].template cast<Scalar>());
      w.ln2_b.push_back(m.ln2_b[l].template cast<Scalar>());
      std::array<Layer, kLinearKinds> layers;
      for (int part = 0; part < 3; ++part)
        layers[std::size_t(part)] = dense(m.attn_w[l].middleRows(part * d, d), m.attn_b[l].segment(part * d, d));
      layers[kProj] = dense(m.proj_w[l], m.proj_b[l]);
      layers[kFc] = dense(m.fc_w[l], m.fc_b[l]);
      layers[kFcProj] = dense(m.fc_proj_w[l], m.fc_proj_b[l]);
      w.linear.push_back(std::move(layers));
    }
    return w;
  }

  /// The dense model these weights represent (U·V + S∘M and the bias per linear layer).
  DenseModel to_model() const {
    DenseModel m;
    m.config = config;
    const int d = config.dim;
    m.wte = wte.template cast<float>();
    m.wpe = wpe.template cast<float>();
    m.lnf_w = lnf_w.template cast<float>();
    m.lnf_b = lnf_b.template cast<float>();
    for (std::size_t l = 0; l < linear.size(); ++l) {
      const auto& lin = linear[l];
      m.ln1_w.push_back(ln1_w[l].template cast<float>());
      m.ln1_b.push_back(ln1_b[l].template cast<float>());
      m.ln2_w.push_back(ln2_w[l].template cast<float>());
      m.ln2_b.push_back(ln2_b[l].template cast<float>());
      lmshrink::RowMatrix<float> qkv(3 * d, d);
      lmshrink::Vector<float> qkv_b(3 * d);
      for (int part = 0; part < 3; ++part) {
        qkv.middleRows(part * d, d) = lin[std::size_t(part)].to_dense().template cast<float>();
        qkv_b.segment(part * d, d) = lin[std::size_t(part)].bias().template cast<float>();
      }
      m.attn_w.push_back(qkv);
      m.attn_b.push_back(qkv_b);
      m.proj_w.push_back(lin[kProj].to_dense().template cast<float>());
      m.proj_b.push_back(lin[kProj].bias().template cast<float>());
      m.fc_w.push_back(lin[kFc].to_dense().template cast<float>());
      m.fc_b.push_back(lin[kFc].bias().template cast<float>());
      m.fc_proj_w.push_back(lin[kFcProj].to_dense().template cast<float>());
      m.fc_proj_b.push_back(lin[kFcProj].bias().template cast<float>());
    }
    return m;
  }

  /// Stored parameters: embeddings, norms and every linear layer's live parameters.
  std::int64_t parameters() const {
    std::int64_t n = wte.size() + wpe.size() + lnf_w.size() + lnf_b.size();
    for (std::size_t l = 0; l < linear.size(); ++l)
      n += ln1_w[l].size() + ln1_b[l].size() + ln2_w[l].size() + ln2_b[l].size();
    return n + linear_parameters();
  }
  std::int64_t linear_parameters() const { return live_linear_parameters(linear); }
  std::int64_t linear_dense_parameters() const { return dense_linear_parameters(linear); }
};

/// Gradients of every parameter of Weights, same shapes.
template <class Scalar>
struct Grads {
  using W = Weights<Scalar>;
  typename W::Mat wte, wpe;
  std::vector<typename W::Vec> ln1_w, ln1_b, ln2_w, ln2_b;
  typename W::Vec lnf_w, lnf_b;
  std::vector<std::array<typename W::Layer::Gradients, kLinearKinds>> linear;

  Grads() = default;  // none: a forward-only trainer's
  explicit Grads(const W& w) {
    wte.setZero(w.wte.rows(), w.wte.cols());
    wpe.setZero(w.wpe.rows(), w.wpe.cols());
    lnf_w.setZero(w.lnf_w.size());
    lnf_b.setZero(w.lnf_b.size());
    for (std::size_t l = 0; l < w.linear.size(); ++l) {
      for (auto* v : {&ln1_w, &ln1_b, &ln2_w, &ln2_b}) v->push_back(W::Vec::Zero(w.config.dim));
      std::array<typename W::Layer::Gradients, kLinearKinds> g;
      for (int k = 0; k < kLinearKinds; ++k) g[std::size_t(k)] = w.linear[l][std::size_t(k)].make_gradients();
      linear.push_back(std::move(g));
    }
  }

  void set_zero() {
    wte.setZero();
    wpe.setZero();
    lnf_w.setZero();
    lnf_b.setZero();
    for (std::size_t l = 0; l < linear.size(); ++l) {
      for (auto* v : {&ln1_w, &ln1_b, &ln2_w, &ln2_b}) (*v)[l].setZero();
      for (auto& g : linear[l]) g.set_zero();
    }
  }
};

/// Full-sequence forward and backward over `batch` sequences of `n` tokens (positions 0..n−1 in
/// every sequence). Buffers are sized once, at construction.
template <class Scalar>
class Trainer {
 public:
  using W = Weights<Scalar>;
  using Mat = typename W::Mat;
  using Vec = typename W::Vec;

  Trainer(W& weights, int batch, int n, NetMode mode = NetMode::training)
      : w_(weights), g_(net_trains(mode) ? Grads<Scalar>(weights) : Grads<Scalar>()), c_(weights.config),
        mode_(mode), blocked_(blocked_attention_for(n)), batch_(batch), n_(n) {
    if (batch < 1 || n < 1 || n > c_.n_positions)
      lmshrink::fail<lmshrink::value_error>("gpt2::Trainer", "batch must be >= 1 and n in [1, ",
                                                    c_.n_positions, "], got batch ", batch, ", n ", n);
    const int N = batch * n, d = c_.dim;
    hs_ = c_.head_size();
    act_.resize(std::size_t(c_.n_layers));
    const bool training = net_trains(mode);
    const bool inputs_only = net_keeps_block_inputs_only(mode);
    for (auto& a : act_) {
      if (inputs_only) a.x.resize(N, c_.dim);  // the block's input: the previous block's output
      else a.resize(N, c_);
      if (mode == NetMode::training && !blocked_) a.p.assign(std::size_t(batch) * c_.n_heads, Mat(n, n));
    }
    if (!training && !blocked_) shared_p_.resize(1);  // every block's forward reuses it
    if (inputs_only) scratch_.resize(N, c_);          // every block's activations, reused
    if (mode == NetMode::recompute) {
      if (!blocked_) scratch_.p.assign(std::size_t(batch) * c_.n_heads, Mat(n, n));
      rerun_out_.resize(N, d);
    }
    for (Mat* m : {&x_final_, &xhat_f_, &xf_}) m->resize(N, d);
    if (training) {
      work_.resize(N, c_);
      for (Mat* m : {&dx_, &dxa_}) m->resize(N, d);
      if (!blocked_) dp_.resize(n, n);
    }
    rstd_f_.resize(N);
    logits_.resize(N, c_.vocab_size);
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
    const std::int64_t block = N * (11 * c.dim + 2 * c.hidden_dim + 2);
    std::int64_t values = net_keeps_block_inputs_only(mode) ? c.n_layers * N * c.dim + block : c.n_layers * block;
    values += attention_buffer_values(mode == NetMode::recompute ? 1 : c.n_layers, batch, c.n_heads, n, training);
    values += N * (3 * c.dim + 1 + c.vocab_size);  // final norm, logits
    if (training) values += N * (5 * c.dim + 2 * c.hidden_dim) + 2 * N * c.dim;  // the backward's workspace
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
      for (const Mat* m : {&a.x, &a.xhat1, &a.a1, &a.q, &a.k, &a.v, &a.att, &a.x_mid, &a.xhat2, &a.a2, &a.h, &a.g, &a.tmp}) add(*m);
      add(a.rstd1);
      add(a.rstd2);
      for (const auto& p : a.p) add(p);
      add(a.lse);
    }
    for (const auto& p : shared_p_) add(p);
    add(shared_lse_);
    for (const Mat* m : {&x_final_, &xhat_f_, &xf_, &logits_, &dx_, &dxa_, &dp_, &rerun_out_}) add(*m);
    add(rstd_f_);
    for (const Mat* m : {&work_.dxa, &work_.dq, &work_.dk, &work_.dv, &work_.datt, &work_.dh, &work_.dg}) add(*m);
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

  /// Logits (batch·n, vocab) for tokens (batch·n).
  const Mat& forward(const int* tokens);

  /// The residual stream after block l (before any norm) from the last forward: (batch·n, dim).
  const Mat& block_output(int l) const {
    check_block("gpt2::Trainer::block_output", l);
    return l + 1 < c_.n_layers ? act_[std::size_t(l + 1)].x : x_final_;
  }

  /// The input of linear layer `kind` of block l in the last forward: ln_1's output for q, k
  /// and v, the attention output for c_proj, ln_2's output for c_fc, GELU's output for the
  /// MLP's c_proj.
  const Mat& linear_input(int l, int kind) const {
    check_block("gpt2::Trainer::linear_input", l);
    if (net_keeps_block_inputs_only(mode_))
      lmshrink::fail<lmshrink::state_error>("gpt2::Trainer::linear_input", "an outputs or recompute net keeps only "
                                            "logits and block outputs; make it forward_only to read linear inputs");
    const auto& a = act_[std::size_t(l)];
    switch (kind) {
      case kQ: case kK: case kV: return a.a1;
      case kProj: return a.att;
      case kFc: return a.a2;
      case kFcProj: return a.g;
      default:
        lmshrink::fail<lmshrink::value_error>("gpt2::Trainer::linear_input", "kind ", kind,
                                                      " is outside [0, ", kLinearKinds, ")");
    }
  }

  /// Accumulates the gradients of every parameter for dlogits = ∂loss/∂logits of the last
  /// forward, plus, when given, dblock[l] = ∂loss/∂block_output(l) (empty matrices skipped).
  void backward(const Mat& dlogits, const std::vector<Mat>* dblock = nullptr);

 private:
  struct Activations : BlockState<Scalar> {
    std::vector<Mat> p;  // softmax probabilities per (sequence, head), up to kKeptProbabilitiesUpTo positions
    Mat lse;             // beyond: each row's log-sum-exp per (sequence, head), for BlockedAttention
    std::array<typename W::Layer::Cache, kLinearKinds> cache;
  };

  BlockNorms<const Vec> norms(int l) const {
    const std::size_t L = std::size_t(l);
    return {w_.ln1_w[L], w_.ln1_b[L], w_.ln2_w[L], w_.ln2_b[L]};
  }

  void check_block(const char* where, int l) const {
    if (l < 0 || l >= c_.n_layers)
      lmshrink::fail<lmshrink::value_error>(where, "block ", l, " is outside [0, ", c_.n_layers, ")");
  }

  void layer_norm_forward(const Mat& x, const Vec& w, const Vec& b, Mat& xhat, Vec& rstd, Mat& y) const {
    lmshrink::models::layer_norm_forward<Scalar>(x, w, b, c_.norm_eps, xhat, rstd, y);
  }

  lmshrink::models::AttentionShape attention_shape() const { return {batch_, n_, c_.n_heads, c_.n_heads, hs_}; }

  // Block l's forward from a.x into out, with a's linear caches; its attention's probabilities
  // (or log-sum-exp) in a's own buffers when the net trains, else in the one every block reuses.
  void run_block(int l, Activations& a, Mat& out);

  W& w_;
  Grads<Scalar> g_;
  Config c_;
  NetMode mode_;
  bool blocked_;  // BlockedAttention (long sequences) instead of kept probabilities
  int batch_, n_, hs_ = 0;
  std::vector<Activations> act_;
  std::vector<Mat> shared_p_;  // forward-only: one probability buffer for every block
  Activations scratch_;        // outputs: every block's activations, reused block after block
  Mat shared_lse_;             // forward-only and blocked: the same
  lmshrink::models::BlockedAttention<Scalar> blocked_attention_;
  Mat x_final_, xhat_f_, xf_, logits_;
  Vec rstd_f_;
  BlockWorkspace<Scalar> work_;
  Mat dx_, dxa_, dp_;
  lmshrink::models::AttentionWorkspace<Scalar> attention_work_;  // small heads' transposed keys and values
  Mat rerun_out_;  // recompute: the output of a block run again in the backward (not read)
  std::vector<int> tokens_;
  NetProfile* profile_ = nullptr;
};

// forward, backward and the block they run, out of the class so that an explicit instantiation
// declaration covers them (docs/build.md): with LMSHRINK_EXTERN_TEMPLATES, float is compiled
// once, by src/instances/models/gpt2.cpp (lmshrink_add_instances(... MODELS)).
template <class Scalar>
const typename Trainer<Scalar>::Mat& Trainer<Scalar>::forward(const int* tokens) {
  const ProfileScope whole(profile_slot(profile_, &NetProfile::total));
  if (profile_) ++profile_->forwards;
  const int N = batch_ * n_;
  for (int t = 0; t < N; ++t) {
    if (tokens[t] < 0 || tokens[t] >= c_.vocab_size)
      lmshrink::fail<lmshrink::value_error>("gpt2::Trainer::forward", "token ", tokens[t], " at ", t,
                                                    " is outside [0, ", c_.vocab_size, ")");
    tokens_[std::size_t(t)] = tokens[t];
  }
  for (int t = 0; t < N; ++t) act_[0].x.row(t) = w_.wte.row(tokens[t]) + w_.wpe.row(t % n_);
  const bool inputs_only = net_keeps_block_inputs_only(mode_);
  for (int l = 0; l < c_.n_layers; ++l) {
    if (inputs_only) scratch_.x = act_[std::size_t(l)].x;
    run_block(l, inputs_only ? scratch_ : act_[std::size_t(l)], l + 1 < c_.n_layers ? act_[std::size_t(l + 1)].x : x_final_);
  }
  layer_norm_forward(x_final_, w_.lnf_w, w_.lnf_b, xhat_f_, rstd_f_, xf_);
  {
    const ProfileScope classify(profile_slot(profile_, &NetProfile::classifier));
    logits_.noalias() = xf_ * w_.wte.transpose();
  }
  return logits_;
}

template <class Scalar>
void Trainer<Scalar>::backward(const Mat& dlogits, const std::vector<Mat>* dblock) {
  static constexpr const char* where = "gpt2::Trainer::backward";
  if (!net_trains(mode_))
    lmshrink::fail<lmshrink::state_error>(where, "this trainer was made without gradients (NetMode::forward_only "
                                          "or outputs); make it with NetMode::training or recompute to run backward");
  lmshrink::check_shape(where, "dlogits", dlogits, logits_.rows(), logits_.cols());
  if (dblock) {
    if (int(dblock->size()) != c_.n_layers)
      lmshrink::fail<lmshrink::shape_error>(where, "dblock has ", dblock->size(),
                                                    " matrices but the model has ", c_.n_layers, " blocks");
    for (const auto& m : *dblock)
      if (m.size() != 0) lmshrink::check_shape(where, "dblock[l]", m, logits_.rows(), c_.dim);
  }
  const ProfileScope whole(profile_slot(profile_, &NetProfile::total));
  if (profile_) ++profile_->backwards;
  {
    const ProfileScope classify(profile_slot(profile_, &NetProfile::classifier));
    g_.wte.noalias() += dlogits.transpose() * xf_;
    dxa_.noalias() = dlogits * w_.wte;
  }
  dx_.setZero();
  lmshrink::models::layer_norm_backward<Scalar>(xhat_f_, rstd_f_, w_.lnf_w, dxa_, dx_, g_.lnf_w, g_.lnf_b);
  for (int l = c_.n_layers - 1; l >= 0; --l) {
    const bool rerun = mode_ == NetMode::recompute;
    if (rerun) {  // block l's activations again, from its kept input
      scratch_.x = act_[std::size_t(l)].x;
      run_block(l, scratch_, rerun_out_);
    }
    auto& a = rerun ? scratch_ : act_[std::size_t(l)];
    auto& lin = w_.linear[std::size_t(l)];
    auto& gl = g_.linear[std::size_t(l)];
    const std::size_t L = std::size_t(l);
    if (dblock && (*dblock)[L].size() != 0) dx_ += (*dblock)[L];
    const auto linear_backward = [&](int kind, const Mat& in, const Mat& dout, Mat& din) {
      const ProfileScope timed(profile_slot(profile_, &NetProfile::linear));
      lin[std::size_t(kind)].backward(in, dout, a.cache[std::size_t(kind)], din, gl[std::size_t(kind)]);
    };
    const auto attend_backward = [&](const Mat& datt, Mat& dq, Mat& dk, Mat& dv) {
      const ProfileScope timed(profile_slot(profile_, &NetProfile::attention));
      if (blocked_)
        blocked_attention_.backward(attention_shape(), a.q, a.k, a.v, a.att, a.lse, datt, dq, dk, dv);
      else
        lmshrink::models::causal_attention_backward<Scalar>(attention_shape(), a.q, a.k, a.v, a.p, datt, dp_, dq,
                                                            dk, dv, attention_work_);
    };
    block_backward<Scalar>(norms(l), linear_backward, attend_backward, a, work_, dx_,
                                BlockNorms<Vec>{g_.ln1_w[L], g_.ln1_b[L], g_.ln2_w[L], g_.ln2_b[L]});
  }
  for (int t = 0; t < batch_ * n_; ++t) {
    g_.wte.row(tokens_[std::size_t(t)]) += dx_.row(t);
    g_.wpe.row(t % n_) += dx_.row(t);
  }
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
    if (blocked_)
      blocked_attention_.forward(attention_shape(), q, k, v, keep ? a.lse : shared_lse_, att);
    else
      lmshrink::models::causal_attention_forward<Scalar>(attention_shape(), q, k, v, keep ? a.p : shared_p_, att, attention_work_);
  };
  block_forward<Scalar>(c_, norms(l), linear, attend, a, out);
}

#ifdef LMSHRINK_EXTERN_TEMPLATES
extern template class Trainer<float>;
#endif

}  // namespace gpt2
}  // namespace models
LMSHRINK_NAMESPACE_END
