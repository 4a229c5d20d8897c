#pragma once
// The Llama family's dense model: its config (sizes, RMSNorm eps, RoPE base, whether q/k/v carry
// biases) and every weight as a float matrix, as llama2.c files and Hugging Face "llama" and
// "qwen2" directories hold it (llama2c.hpp, hf.hpp read and write them).
//
//   lmshrink::models::llama::DenseModel m = lmshrink::models::llama::read_llama2c("stories260K.bin");
//   for (auto& w : m.linear_weights()) svd_init<float>(*w.matrix, layer, opt);
//   auto small = lmshrink::models::llama::truncate_layers(m, {0, 2, 4});
#include <Eigen/Core>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../../config.hpp"
#include "../../io/hf_config.hpp"
#include "../../truncation.hpp"
#include "../../types.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {
namespace llama {

/// A Llama model's sizes and constants (llama2.c's header, plus what other formats add).
struct Config {
  int dim = 0;
  int hidden_dim = 0;
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int vocab_size = 0;  // always positive here; the sign of the file's field is shared_classifier
  int seq_len = 0;
  bool shared_classifier = true;
  // Not in llama2.c files, which always mean these (run.c's constants); other sources set them.
  double norm_eps = 1e-5;      // RMSNorm epsilon
  double rope_theta = 10000;   // RoPE base
  lmshrink::RopeScaling rope_scaling;  // none unless a Hugging Face config sets it
  // The config.json the model was read from, every key (lmshrink::HfConfig::source_keys): an
  // export writes back those its writer does not set itself.
  std::vector<std::pair<std::string, std::string>> hf_source_keys;
  bool qkv_bias = false;       // wq, wk, wv carry a bias (Qwen2's shape; never in llama2.c files)

  int head_size() const { return dim / n_heads; }
  int kv_dim() const { return dim * n_kv_heads / n_heads; }
};

/// A dense Llama model: every weight as a float matrix, (out, in) row-major.
struct DenseModel {
  Config config;
  lmshrink::RowMatrix<float> token_embedding;        // (vocab, dim)
  std::vector<lmshrink::Vector<float>> rms_att;      // L × (dim)
  std::vector<lmshrink::RowMatrix<float>> wq, wk, wv, wo;  // L × (dim|kv_dim, dim)
  std::vector<lmshrink::Vector<float>> rms_ffn;      // L × (dim)
  std::vector<lmshrink::RowMatrix<float>> w1, w2, w3;  // L × (hidden, dim), (dim, hidden), (hidden, dim)
  lmshrink::Vector<float> rms_final;                 // (dim)
  // (seq_len, head_size/2): the legacy RoPE tables of a llama2.c file. Empty for a model from
  // elsewhere (a Hugging Face directory); write_llama2c then computes them (legacy_rope_table).
  lmshrink::RowMatrix<float> freq_cis_real, freq_cis_imag;
  lmshrink::RowMatrix<float> wcls;                   // (vocab, dim); empty when the embedding is shared
  std::vector<lmshrink::Vector<float>> bq, bk, bv;   // L × (dim|kv_dim) when config.qkv_bias, else empty

  /// The 7·n_layers linear weights (wq, wk, wv, wo, w1, w2, w3 of every layer), in file order
  /// within each layer.
  std::vector<lmshrink::NamedWeight> linear_weights() {
    std::vector<lmshrink::NamedWeight> out;
    for (int l = 0; l < config.n_layers; ++l) {
      const std::string p = "layers." + std::to_string(l) + ".";
      out.push_back({p + "attention.wq", &wq[l]});
      out.push_back({p + "attention.wk", &wk[l]});
      out.push_back({p + "attention.wv", &wv[l]});
      out.push_back({p + "attention.wo", &wo[l]});
      out.push_back({p + "feed_forward.w1", &w1[l]});
      out.push_back({p + "feed_forward.w2", &w2[l]});
      out.push_back({p + "feed_forward.w3", &w3[l]});
    }
    return out;
  }

  /// Parameters (the RoPE tables are not parameters).
  std::int64_t parameter_count() const {
    std::int64_t n = token_embedding.size() + rms_final.size() + wcls.size();
    for (int l = 0; l < config.n_layers; ++l)
      n += rms_att[l].size() + rms_ffn[l].size() + wq[l].size() + wk[l].size() + wv[l].size() +
           wo[l].size() + w1[l].size() + w2[l].size() + w3[l].size();
    for (const auto* b : {&bq, &bk, &bv})
      for (const auto& v : *b) n += v.size();
    return n;
  }
};

/// A dense Llama model with only the selected blocks; embeddings, norms, RoPE tables and the
/// classifier are copied.
inline DenseModel truncate_layers(const DenseModel& model, const lmshrink::LayerSelection& keep,
                                    bool require_sorted = true) {
  lmshrink::validate_selection(keep, model.config.n_layers, require_sorted);
  DenseModel out;
  out.config = model.config;
  out.config.n_layers = static_cast<int>(keep.size());
  out.token_embedding = model.token_embedding;
  out.rms_final = model.rms_final;
  out.freq_cis_real = model.freq_cis_real;
  out.freq_cis_imag = model.freq_cis_imag;
  out.wcls = model.wcls;
  out.rms_att = lmshrink::keep_layers(model.rms_att, keep, require_sorted);
  out.wq = lmshrink::keep_layers(model.wq, keep, require_sorted);
  out.wk = lmshrink::keep_layers(model.wk, keep, require_sorted);
  out.wv = lmshrink::keep_layers(model.wv, keep, require_sorted);
  out.wo = lmshrink::keep_layers(model.wo, keep, require_sorted);
  out.rms_ffn = lmshrink::keep_layers(model.rms_ffn, keep, require_sorted);
  out.w1 = lmshrink::keep_layers(model.w1, keep, require_sorted);
  out.w2 = lmshrink::keep_layers(model.w2, keep, require_sorted);
  out.w3 = lmshrink::keep_layers(model.w3, keep, require_sorted);
  if (model.config.qkv_bias) {
    out.bq = lmshrink::keep_layers(model.bq, keep, require_sorted);
    out.bk = lmshrink::keep_layers(model.bk, keep, require_sorted);
    out.bv = lmshrink::keep_layers(model.bv, keep, require_sorted);
  }
  return out;
}

}  // namespace llama
}  // namespace models
LMSHRINK_NAMESPACE_END
