#pragma once
// The GPT-2 family behind examples::Model (model.hpp): Hugging Face "gpt2" directories, trained
// by Gpt2Trainer, packed as CompactGpt2, checkpointed by gpt2_checkpoint.hpp. Header-only like the
// rest of the family; gpt2_model.cpp registers it.
#include <lmshrink/io/hf_checkpoint.hpp>
#include <lmshrink/truncation.hpp>
#include <mutex>

#include "../model.hpp"
#include "gpt2_checkpoint.hpp"
#include "gpt2_decoder.hpp"
#include "gpt2_trainer.hpp"

namespace examples {

/// The plain tensors of Gpt2Weights or Gpt2Grads (the same fields), in one order: wte, wpe,
/// the final norm, then each block's two norms.
template <class T>
std::vector<TensorRef> gpt2_plain_tensors(T& x) {
  std::vector<TensorRef> out{{x.wte.data(), x.wte.size()}, {x.wpe.data(), x.wpe.size()},
                             {x.lnf_w.data(), x.lnf_w.size()}, {x.lnf_b.data(), x.lnf_b.size()}};
  for (std::size_t l = 0; l < x.ln1_w.size(); ++l)
    for (auto* v : {&x.ln1_w[l], &x.ln1_b[l], &x.ln2_w[l], &x.ln2_b[l]}) out.push_back({v->data(), v->size()});
  return out;
}
inline std::vector<TensorRef> plain_tensors(Gpt2Grads<float>& g) { return gpt2_plain_tensors(g); }

using Gpt2Net = TrainerNet<Gpt2Trainer<float>>;

class Gpt2PackedDecoder final : public Decoder {
 public:
  Gpt2PackedDecoder(const CompactGpt2& m, int threads) : d_(m, threads) {}
  const Eigen::VectorXf& forward_token(int token, int pos) override { return d_.forward(token, pos); }
  const Mat& forward_sequence(const int* tokens, int n) override { return d_.forward_sequence(tokens, n); }

 private:
  Gpt2Decoder d_;
};

class Gpt2Packed final : public Packed {
 public:
  explicit Gpt2Packed(CompactGpt2 m) : m_(std::move(m)) {}
  std::unique_ptr<Decoder> decoder(int threads) const override {
    return std::make_unique<Gpt2PackedDecoder>(m_, threads);
  }
  std::int64_t parameters() const override { return m_.parameters(); }
  std::int64_t bytes() const override { return m_.bytes(); }
  const CompactGpt2& model() const { return m_; }

 private:
  CompactGpt2 m_;
};

class Gpt2TrainableModel final : public Model {
 public:
  explicit Gpt2TrainableModel(Gpt2Weights<float> w) : w_(std::move(w)) {}

  std::string family() const override { return "gpt2"; }
  ModelShape shape() const override {
    const auto& c = w_.config;
    return {c.n_layers, c.dim, c.vocab_size, c.n_positions, c.n_heads, c.n_heads};
  }
  int linear_kinds() const override { return kGpt2LinearKinds; }
  std::string linear_name(int l, int kind) const override {
    return "h." + std::to_string(l) + "." + gpt2_linear_kind_name(kind);
  }
  Layer& linear(int l, int kind) override { return w_.linear.at(std::size_t(l)).at(std::size_t(kind)); }
  std::vector<TensorRef> plain_params() override { return gpt2_plain_tensors(w_); }
  std::unique_ptr<Model> clone() const override { return std::make_unique<Gpt2TrainableModel>(w_); }
  std::unique_ptr<Model> truncated(const std::vector<int>& keep) const override {
    lmshrink::validate_selection(keep, w_.config.n_layers);
    Gpt2Weights<float> t = w_;
    t.config.n_layers = int(keep.size());
    t.ln1_w = lmshrink::keep_layers(w_.ln1_w, keep);
    t.ln1_b = lmshrink::keep_layers(w_.ln1_b, keep);
    t.ln2_w = lmshrink::keep_layers(w_.ln2_w, keep);
    t.ln2_b = lmshrink::keep_layers(w_.ln2_b, keep);
    t.linear = lmshrink::keep_layers(w_.linear, keep);
    return std::make_unique<Gpt2TrainableModel>(std::move(t));
  }
  std::unique_ptr<Net> net(int batch, int n) override { return std::make_unique<Gpt2Net>(w_, batch, n); }
  std::unique_ptr<Packed> pack() const override { return std::make_unique<Gpt2Packed>(CompactGpt2::pack(w_)); }
  std::unique_ptr<Decoder> reference_decoder() const override {
    std::lock_guard<std::mutex> lock(packed_mutex_);  // decoders are made on several threads
    if (!packed_) packed_ = std::make_unique<CompactGpt2>(CompactGpt2::pack(w_));
    return std::make_unique<Gpt2PackedDecoder>(*packed_, 1);
  }
  void save(const std::string& path, const std::string& method,
            const std::map<std::string, std::string>& extra) const override {
    save_gpt2_checkpoint(w_, path, method, extra);
  }
  std::string export_dense(const std::string& stem) const override {
    lmshrink::write_hf_gpt2(w_.to_model(), stem + "_hf");
    return stem + "_hf";
  }
  std::int64_t parameters() const override { return w_.parameters(); }
  std::int64_t linear_parameters() const override { return w_.linear_parameters(); }
  std::int64_t linear_dense_parameters() const override { return w_.linear_dense_parameters(); }

 private:
  Gpt2Weights<float> w_;
  mutable std::unique_ptr<CompactGpt2> packed_;  // the reference decoder's model (dense, packed)
  mutable std::mutex packed_mutex_;
};


}  // namespace examples
