#pragma once
// The Llama family behind models::Model (model.hpp): llama2.c files and Hugging Face "llama"
// directories, trained by llama::Trainer, packed as Compact, checkpointed by
// checkpoint.hpp. Header-only like the rest of the family; llama_model.cpp registers it.
#include "hf.hpp"
#include "llama2c.hpp"
#include "../../truncation.hpp"

#include <cmath>

#include "../model.hpp"
#include "checkpoint.hpp"
#include "compact.hpp"
#include "decoder.hpp"
#include "trainer.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {
namespace llama {

/// The plain tensors of Weights or Grads (the same fields), in one order: embedding,
/// classifier (when not shared), final norm, then each block's two norms.
template <class T>
std::vector<TensorRef> plain_tensors_of(T& x) {
  std::vector<TensorRef> out{{x.embedding.data(), x.embedding.size()}};
  if (x.classifier.size() != 0) out.push_back({x.classifier.data(), x.classifier.size()});
  out.push_back({x.rms_final.data(), x.rms_final.size()});
  for (std::size_t l = 0; l < x.rms_att.size(); ++l) {
    out.push_back({x.rms_att[l].data(), x.rms_att[l].size()});
    out.push_back({x.rms_ffn[l].data(), x.rms_ffn[l].size()});
  }
  return out;
}
inline std::vector<TensorRef> plain_tensors(Grads<float>& g) { return plain_tensors_of(g); }

using TrainingNet = TrainerNet<Trainer<float>>;

template <class View>
class ModelDecoder final : public models::Decoder {
 public:
  explicit ModelDecoder(View view) : kv_(view), seq_(view) {}
  const Eigen::VectorXf& forward_token(int token, int pos) override { return kv_.forward(token, pos); }
  const Mat& forward_sequence(const int* tokens, int n) override { return seq_.forward(tokens, n); }

 private:
  KvDecoder<View> kv_;
  SequenceDecoder<View> seq_;
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

 private:
  Compact m_;
};

/// A dense Llama model exported as a llama2.c file when one can hold it, else as a Hugging Face
/// "llama" directory; returns the path written.
inline std::string export_llama(const DenseModel& dense, const std::string& stem) {
  if (fits_llama2c(dense.config)) {
    write_llama2c(dense, stem + ".bin");
    return stem + ".bin";
  }
  write_hf(dense, stem + "_hf");
  return stem + "_hf";
}

/// What a family built on Llama's graph brings of its own (models/qwen2/): its name, which
/// family() returns and checkpoints are marked with, and how a dense model of it is exported.
struct Variant {
  const char* name = "llama";
  std::string (*export_dense)(const DenseModel& dense, const std::string& stem) = &export_llama;
};

class Model final : public models::Model {
 public:
  explicit Model(Weights<float> w, Variant variant = {}) : w_(std::move(w)), variant_(variant) {}

  std::string family() const override { return variant_.name; }
  ModelShape shape() const override {
    const auto& c = w_.config;
    return {c.n_layers, c.dim, c.vocab_size, c.seq_len, c.n_heads, c.n_kv_heads};
  }
  int linear_kinds() const override { return kLinearKinds; }
  std::string linear_name(int l, int kind) const override {
    return "layers." + std::to_string(l) + "." + linear_kind_name(kind);
  }
  bool attention_linear(int kind) const override { return kind <= kWo; }
  Layer& linear(int l, int kind) override { return w_.linear.at(std::size_t(l)).at(std::size_t(kind)); }
  std::vector<TensorRef> plain_params() override { return plain_tensors_of(w_); }
  std::unique_ptr<models::Model> clone() const override { return std::make_unique<Model>(w_, variant_); }
  std::unique_ptr<models::Model> truncated(const std::vector<int>& keep) const override {
    lmshrink::validate_selection(keep, w_.config.n_layers);
    Weights<float> t = w_;
    t.config.n_layers = int(keep.size());
    t.rms_att = lmshrink::keep_layers(w_.rms_att, keep);
    t.rms_ffn = lmshrink::keep_layers(w_.rms_ffn, keep);
    t.linear = lmshrink::keep_layers(w_.linear, keep);
    return std::make_unique<Model>(std::move(t), variant_);
  }
  std::unique_ptr<models::Model> from_scratch(double linear_ratio, std::uint64_t seed) const override {
    Config c = w_.config;
    const std::int64_t attention = 2 * std::int64_t(c.dim) * (c.dim + c.kv_dim()) +  // wq, wo, wk, wv
                                   (c.qkv_bias ? c.dim + 2 * c.kv_dim() : 0);         // and their biases
    const double per_block = linear_ratio * double(w_.linear_dense_parameters()) / c.n_layers;
    const auto hidden = std::int64_t(std::floor((per_block - double(attention)) / (3.0 * c.dim)));
    if (!(linear_ratio > 0 && linear_ratio <= 1) || hidden < 1)
      lmshrink::fail<lmshrink::value_error>(
          "models::Model::from_scratch", "ratio ", linear_ratio, " of the linear weights leaves no FFN width "
          "once attention's ", attention, " weights per block are kept; a larger ratio is needed");
    c.hidden_dim = int(hidden);
    // llama2.c's training init: N(0, 0.02), the residual outputs (wo, w2) scaled by 1/√(2L).
    lmshrink::SplitMix64 rng(seed);
    const auto normal = [&rng](Eigen::Index rows, Eigen::Index cols, double sd) {
      return random_normal(rng, rows, cols, sd);
    };
    const double sd = 0.02, sd_out = sd / std::sqrt(2.0 * c.n_layers);
    DenseModel m;
    m.config = c;
    m.token_embedding = normal(c.vocab_size, c.dim, sd);
    if (!c.shared_classifier) m.wcls = normal(c.vocab_size, c.dim, sd);
    m.rms_final = lmshrink::Vector<float>::Ones(c.dim);
    for (int l = 0; l < c.n_layers; ++l) {
      m.rms_att.push_back(lmshrink::Vector<float>::Ones(c.dim));
      m.rms_ffn.push_back(lmshrink::Vector<float>::Ones(c.dim));
      m.wq.push_back(normal(c.dim, c.dim, sd));
      m.wk.push_back(normal(c.kv_dim(), c.dim, sd));
      m.wv.push_back(normal(c.kv_dim(), c.dim, sd));
      m.wo.push_back(normal(c.dim, c.dim, sd_out));
      m.w1.push_back(normal(c.hidden_dim, c.dim, sd));
      m.w2.push_back(normal(c.dim, c.hidden_dim, sd_out));
      m.w3.push_back(normal(c.hidden_dim, c.dim, sd));
      if (c.qkv_bias) {
        m.bq.push_back(lmshrink::Vector<float>::Zero(c.dim));
        m.bk.push_back(lmshrink::Vector<float>::Zero(c.kv_dim()));
        m.bv.push_back(lmshrink::Vector<float>::Zero(c.kv_dim()));
      }
    }
    return std::make_unique<Model>(Weights<float>::from_model(m), variant_);
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
    save_checkpoint(w_, path, method, extra, variant_.name);
  }
  std::string export_dense(const std::string& stem) const override {
    return variant_.export_dense(w_.to_model(), stem);
  }
  std::int64_t parameters() const override { return w_.parameters(); }
  std::int64_t linear_parameters() const override { return w_.linear_parameters(); }
  std::int64_t linear_dense_parameters() const override { return w_.linear_dense_parameters(); }

 private:
  Weights<float> w_;
  Variant variant_;
};


}  // namespace llama
}  // namespace models
LMSHRINK_NAMESPACE_END
