#pragma once
// The GPT-2 family behind models::Model (model.hpp): Hugging Face "gpt2" directories, trained
// by gpt2::Trainer, packed as Compact, checkpointed by gpt2/checkpoint.hpp. Header-only like the
// rest of the family; gpt2_model.cpp registers it.
#include "hf.hpp"
#include "../../truncation.hpp"

#include <cmath>

#include "../model.hpp"
#include "checkpoint.hpp"
#include "decoder.hpp"
#include "trainer.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {
namespace gpt2 {

/// The plain tensors of Weights or Grads (the same fields), in one order: wte, wpe,
/// the final norm, then each block's two norms.
template <class T>
std::vector<TensorRef> plain_tensors_of(T& x) {
  std::vector<TensorRef> out{{x.wte.data(), x.wte.size()}, {x.wpe.data(), x.wpe.size()},
                             {x.lnf_w.data(), x.lnf_w.size()}, {x.lnf_b.data(), x.lnf_b.size()}};
  for (std::size_t l = 0; l < x.ln1_w.size(); ++l)
    for (auto* v : {&x.ln1_w[l], &x.ln1_b[l], &x.ln2_w[l], &x.ln2_b[l]}) out.push_back({v->data(), v->size()});
  return out;
}
inline std::vector<TensorRef> plain_tensors(Grads<float>& g) { return plain_tensors_of(g); }

using TrainingNet = TrainerNet<Trainer<float>>;

template <class View>
class ModelDecoder final : public models::Decoder {
 public:
  explicit ModelDecoder(View view) : d_(std::move(view)) {}
  const Eigen::VectorXf& forward_token(int token, int pos) override { return d_.forward(token, pos); }
  const Mat& forward_sequence(const int* tokens, int n) override { return d_.forward_sequence(tokens, n); }

 private:
  gpt2::Decoder<View> d_;
};

class Packed final : public models::Packed {
 public:
  explicit Packed(Compact m) : m_(std::move(m)) {}
  std::unique_ptr<models::Decoder> decoder(const lmshrink::CompactForwardOptions& options) const override {
    return std::make_unique<ModelDecoder<CompactView>>(CompactView(m_, options));
  }
  std::int64_t parameters() const override { return m_.parameters(); }
  std::int64_t bytes() const override { return m_.bytes(); }
  std::int64_t index_bytes() const override { return m_.index_bytes(); }
  std::vector<lmshrink::CompactForm> linear_forms() const override { return packed_forms(m_.linear); }
  const Compact& model() const { return m_; }

 private:
  Compact m_;
};

class Model final : public models::Model {
 public:
  explicit Model(Weights<float> w) : w_(std::move(w)) {}

  std::string family() const override { return "gpt2"; }
  ModelShape shape() const override {
    const auto& c = w_.config;
    return {c.n_layers, c.dim, c.vocab_size, c.n_positions, c.n_heads, c.n_heads};
  }
  int linear_kinds() const override { return kLinearKinds; }
  std::string linear_name(int l, int kind) const override {
    return "h." + std::to_string(l) + "." + linear_kind_name(kind);
  }
  bool attention_linear(int kind) const override { return kind <= kProj; }
  Layer& linear(int l, int kind) override { return w_.linear.at(std::size_t(l)).at(std::size_t(kind)); }
  std::vector<TensorRef> plain_params() override { return plain_tensors_of(w_); }
  std::unique_ptr<models::Model> clone() const override { return std::make_unique<Model>(w_); }
  std::unique_ptr<models::Model> truncated(const std::vector<int>& keep) const override {
    lmshrink::validate_selection(keep, w_.config.n_layers);
    Weights<float> t = w_;
    t.config.n_layers = int(keep.size());
    t.ln1_w = lmshrink::keep_layers(w_.ln1_w, keep);
    t.ln1_b = lmshrink::keep_layers(w_.ln1_b, keep);
    t.ln2_w = lmshrink::keep_layers(w_.ln2_w, keep);
    t.ln2_b = lmshrink::keep_layers(w_.ln2_b, keep);
    t.linear = lmshrink::keep_layers(w_.linear, keep);
    return std::make_unique<Model>(std::move(t));
  }
  std::unique_ptr<models::Model> from_scratch(double linear_ratio, std::uint64_t seed) const override {
    Config c = w_.config;
    const double d = c.dim;
    // Per block: c_attn and attn c_proj with their biases kept, the MLP (2·d·h + h + d) narrowed.
    const double attention = 4 * d * d + 4 * d;
    const double per_block = linear_ratio * double(w_.linear_dense_parameters()) / c.n_layers;
    const auto hidden = std::int64_t(std::floor((per_block - attention - d) / (2 * d + 1)));
    if (!(linear_ratio > 0 && linear_ratio <= 1) || hidden < 1)
      lmshrink::fail<lmshrink::value_error>(
          "models::Model::from_scratch", "ratio ", linear_ratio, " of the linear weights leaves no MLP width "
          "once attention's ", attention, " parameters per block are kept; a larger ratio is needed");
    c.hidden_dim = int(hidden);
    // GPT-2's init: N(0, 0.02), the residual outputs (both c_proj) scaled by 1/√(2L), zero
    // biases, unit LayerNorm gains.
    lmshrink::SplitMix64 rng(seed);
    const auto normal = [&rng](Eigen::Index rows, Eigen::Index cols, double sd) {
      return random_normal(rng, rows, cols, sd);
    };
    const auto ones = [](int n) { return lmshrink::Vector<float>::Ones(n).eval(); };
    const auto zeros = [](int n) { return lmshrink::Vector<float>::Zero(n).eval(); };
    const double sd = 0.02, sd_out = sd / std::sqrt(2.0 * c.n_layers);
    DenseModel m;
    m.config = c;
    m.wte = normal(c.vocab_size, c.dim, sd);
    m.wpe = normal(c.n_positions, c.dim, sd);
    for (int l = 0; l < c.n_layers; ++l) {
      m.ln1_w.push_back(ones(c.dim)), m.ln1_b.push_back(zeros(c.dim));
      m.ln2_w.push_back(ones(c.dim)), m.ln2_b.push_back(zeros(c.dim));
      m.attn_w.push_back(normal(3 * c.dim, c.dim, sd)), m.attn_b.push_back(zeros(3 * c.dim));
      m.proj_w.push_back(normal(c.dim, c.dim, sd_out)), m.proj_b.push_back(zeros(c.dim));
      m.fc_w.push_back(normal(c.hidden_dim, c.dim, sd)), m.fc_b.push_back(zeros(c.hidden_dim));
      m.fc_proj_w.push_back(normal(c.dim, c.hidden_dim, sd_out)), m.fc_proj_b.push_back(zeros(c.dim));
    }
    m.lnf_w = ones(c.dim), m.lnf_b = zeros(c.dim);
    return std::make_unique<Model>(Weights<float>::from_model(m));
  }
  std::unique_ptr<Net> net(int batch, int n, NetMode mode = NetMode::training) override {
    return std::make_unique<TrainingNet>(w_, batch, n, mode);
  }
  std::int64_t net_activation_bytes(int batch, int n, NetMode mode) const override {
    return Trainer<float>::activation_bytes(w_.config, batch, n, mode);
  }
  using models::Model::pack;
  std::unique_ptr<models::Packed> pack(const lmshrink::PackOptions& options) const override {
    return std::make_unique<Packed>(Compact::pack(w_, options));
  }
  std::unique_ptr<models::Decoder> decoder() const override {
    return std::make_unique<ModelDecoder<WeightsView>>(WeightsView(w_));
  }
  void save(const std::string& path, const std::string& method,
            const std::map<std::string, std::string>& extra) const override {
    save_checkpoint(w_, path, method, extra);
  }
  std::string export_dense(const std::string& stem) const override {
    write_hf(w_.to_model(), stem + "_hf");
    return stem + "_hf";
  }
  std::int64_t parameters() const override { return w_.parameters(); }
  std::int64_t linear_parameters() const override { return w_.linear_parameters(); }
  std::int64_t linear_dense_parameters() const override { return w_.linear_dense_parameters(); }

 private:
  Weights<float> w_;
};


}  // namespace gpt2
}  // namespace models
LMSHRINK_NAMESPACE_END
