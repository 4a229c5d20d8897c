#pragma once
// Llama checkpoints as safetensors with Hugging Face names, dense or compressed:
//
//   model.embed_tokens.weight, lm_head.weight (only when not tied), model.norm.weight,
//   model.layers.{l}.input_layernorm.weight, .post_attention_layernorm.weight,
//   model.layers.{l}.self_attn.{q,k,v,o}_proj, model.layers.{l}.mlp.{gate,down,up}_proj
//
// A dense linear layer is stored as "<name>.weight" (out, in). A compressed one is stored by
// lmshrink::put_compressed_layer under "<name>" (U, V, kept rows of S and their indices, rank
// and method in the metadata), so the file loads without knowing ρ. The rows of q_proj and
// k_proj are permuted to Hugging Face's rotate-half RoPE layout, as its llama2.c converter
// does; loading undoes it. The metadata also holds the llama2.c config.

#include "hf.hpp"
#include "../../io/safetensors.hpp"
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "../checkpoint.hpp"
#include "trainer.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {
namespace llama {

inline std::string hf_linear_name(int layer, int kind) {
  static const char* names[kLinearKinds] = {"self_attn.q_proj", "self_attn.k_proj",
                                            "self_attn.v_proj", "self_attn.o_proj",
                                            "mlp.gate_proj",    "mlp.down_proj",
                                            "mlp.up_proj"};
  return "model.layers." + std::to_string(layer) + "." + names[kind];
}


/// Permutes the output rows of a layer (U, S, the row mask, the element mask and the bias):
/// new row r = old row source(r), or the inverse when `inverse`.
template <class Scalar, class Source>
void permute_output_rows(lmshrink::LowRankSparseLinear<Scalar>& layer, Source source, bool inverse) {
  const Eigen::Index out = layer.out_features();
  std::vector<Eigen::Index> from(static_cast<std::size_t>(out));
  for (Eigen::Index r = 0; r < out; ++r) {
    if (inverse)
      from[std::size_t(source(r))] = r;
    else
      from[std::size_t(r)] = source(r);
  }
  auto U = layer.U();
  auto S = layer.S();
  const lmshrink::RowMask rows = layer.row_mask();
  const lmshrink::ElementMask elements = layer.element_mask();
  const auto bias = layer.bias();
  lmshrink::RowMask new_rows(out);
  lmshrink::ElementMask new_elements(elements.rows(), elements.cols());
  for (Eigen::Index r = 0; r < out; ++r) {
    const Eigen::Index f = from[std::size_t(r)];
    layer.U().row(r) = U.row(f);
    if (S.size() != 0) layer.S().row(r) = S.row(f);  // (a released S stays empty)
    new_rows[r] = rows[f];
    if (elements.size()) new_elements.row(r) = elements.row(f);
    if (bias.size()) layer.bias()[r] = bias[f];
  }
  // The old element mask goes first: set_row_mask applies every mask the layer holds, and the
  // unpermuted one would zero live entries of the permuted S.
  layer.clear_element_mask();
  layer.set_row_mask(new_rows);
  if (elements.size()) layer.set_element_mask(new_elements);
}

/// Writes the weights atomically; `method` names how the compressed layers were made, `extra`
/// is added to the metadata. `family` marks the file ("lmshrink.checkpoint: <family>/1"): a
/// family built on Llama's graph (qwen2) saves through here under its own name.
inline void save_checkpoint(const Weights<float>& w, const std::string& path,
                            const std::string& method,
                            const std::map<std::string, std::string>& extra = {},
                            const std::string& family = "llama") {
  const auto& c = w.config;
  CheckpointWriter out(family, method, extra);
  out.text("lmshrink.rope_layout", "hf");
  out.integer("dim", c.dim);
  out.integer("hidden_dim", c.hidden_dim);
  out.integer("n_layers", c.n_layers);
  out.integer("n_heads", c.n_heads);
  out.integer("n_kv_heads", c.n_kv_heads);
  out.integer("vocab_size", c.vocab_size);
  out.integer("seq_len", c.seq_len);
  out.text("tie_word_embeddings", c.shared_classifier ? "true" : "false");
  out.real("norm_eps", c.norm_eps);
  out.real("rope_theta", c.rope_theta);
  if (c.rope_scaling.enabled()) {
    out.text("rope_scaling_type", c.rope_scaling.type);
    out.real("rope_scaling_factor", c.rope_scaling.factor);
    out.real("rope_scaling_low_freq_factor", c.rope_scaling.low_freq_factor);
    out.real("rope_scaling_high_freq_factor", c.rope_scaling.high_freq_factor);
    out.integer("rope_scaling_original_max_positions", c.rope_scaling.original_max_positions);
  }
  if (c.qkv_bias) out.text("qkv_bias", "true");
  out.hf_source_keys(c.hf_source_keys);
  out.tensor("model.embed_tokens.weight", w.embedding);
  if (!c.shared_classifier) out.tensor("lm_head.weight", w.classifier);
  out.tensor("model.norm.weight", w.rms_final);
  const int hs = c.head_size();
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    out.tensor(p + "input_layernorm.weight", w.rms_att[std::size_t(l)]);
    out.tensor(p + "post_attention_layernorm.weight", w.rms_ffn[std::size_t(l)]);
    for (int k = 0; k < kLinearKinds; ++k) {
      lmshrink::LowRankSparseLinear<float> layer = w.linear[std::size_t(l)][std::size_t(k)];
      if (k == kWq || k == kWk)
        permute_output_rows(layer, [hs](Eigen::Index r) { return hf_rope_source(r, hs); }, false);
      out.linear(hf_linear_name(l, k), layer);
    }
  }
  out.write(path);
}

/// Whether a llama2.c file can hold the model (it implies RMSNorm eps 1e-5 and RoPE base 10000).
inline bool fits_llama2c(const Config& c) {
  return c.norm_eps == 1e-5 && c.rope_theta == 10000 && !c.qkv_bias && !c.rope_scaling.enabled();
}

/// Reads a checkpoint written by llama::save_checkpoint: every layer as stored, dense or compressed
/// (`st` already in memory; `path` names it in messages; `family` as it was saved under).
inline Weights<float> read_checkpoint(const lmshrink::SafeTensors& st, const std::string& path,
                                      const std::string& family = "llama") {
  const CheckpointReader in(st, path, family);
  Weights<float> w;
  auto& c = w.config;
  const int big = 1 << 20;
  c.dim = in.integer("dim", 2, big);
  c.hidden_dim = in.integer("hidden_dim", 1, big);
  c.n_layers = in.integer("n_layers", 1, 4096);
  c.n_heads = in.integer("n_heads", 1, c.dim);
  c.n_kv_heads = in.integer("n_kv_heads", 1, c.n_heads);
  c.vocab_size = in.integer("vocab_size", 1, big);
  c.seq_len = in.integer("seq_len", 1, big);
  c.shared_classifier = in.flag("tie_word_embeddings");
  // Absent from checkpoints written before they were recorded: llama2.c's values.
  const double llama2c_eps = 1e-5, llama2c_theta = 10000;
  c.norm_eps = in.real("norm_eps", 1e-12, 1.0, &llama2c_eps);
  c.rope_theta = in.real("rope_theta", 1.0, 1e12, &llama2c_theta);
  c.qkv_bias = st.metadata.count("qkv_bias") != 0 && in.flag("qkv_bias");
  c.hf_source_keys = in.hf_source_keys();
  if (st.metadata.count("rope_scaling_type")) {
    c.rope_scaling.type = st.meta("rope_scaling_type");
    if (c.rope_scaling.type != "linear" && c.rope_scaling.type != "llama3")
      in.refuse("rope_scaling_type is '", c.rope_scaling.type, "'; \"linear\" or \"llama3\" was expected");
    c.rope_scaling.factor = in.real("rope_scaling_factor", 1.0, 1e6);
    c.rope_scaling.low_freq_factor = in.real("rope_scaling_low_freq_factor", 1e-6, 1e6);
    c.rope_scaling.high_freq_factor = in.real("rope_scaling_high_freq_factor", 1e-6, 1e6);
    c.rope_scaling.original_max_positions = in.integer("rope_scaling_original_max_positions", 0, big);
  }
  if (c.dim % c.n_heads != 0 || c.head_size() % 2 != 0 || c.n_heads % c.n_kv_heads != 0)
    in.refuse("dim ", c.dim, ", ", c.n_heads, " heads and ", c.n_kv_heads,
              " kv heads do not give an even head size shared by whole groups");
  in.check_linear_entries(std::int64_t(c.n_layers) *
                          (2 * std::int64_t(c.dim) * c.dim + 2 * std::int64_t(c.kv_dim()) * c.dim +
                           3 * std::int64_t(c.hidden_dim) * c.dim));
  w.embedding = in.matrix("model.embed_tokens.weight", c.vocab_size, c.dim);
  if (!c.shared_classifier) w.classifier = in.matrix("lm_head.weight", c.vocab_size, c.dim);
  w.rms_final = in.vector("model.norm.weight", c.dim);
  const int outs[kLinearKinds] = {c.dim, c.kv_dim(), c.kv_dim(), c.dim, c.hidden_dim, c.dim, c.hidden_dim};
  const int ins[kLinearKinds] = {c.dim, c.dim, c.dim, c.dim, c.dim, c.hidden_dim, c.dim};
  const int hs = c.head_size();
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    w.rms_att.push_back(in.vector(p + "input_layernorm.weight", c.dim));
    w.rms_ffn.push_back(in.vector(p + "post_attention_layernorm.weight", c.dim));
    std::array<lmshrink::LowRankSparseLinear<float>, kLinearKinds> layers;
    for (int k = 0; k < kLinearKinds; ++k) {
      auto& layer = layers[std::size_t(k)];
      layer = in.linear(hf_linear_name(l, k), outs[k], ins[k], c.qkv_bias && k <= kWv);
      if (k == kWq || k == kWk)
        permute_output_rows(layer, [hs](Eigen::Index r) { return hf_rope_source(r, hs); }, true);
    }
    w.linear.push_back(std::move(layers));
  }
  return w;
}

inline Weights<float> read_checkpoint(const std::string& path, const std::string& family = "llama") {
  return read_checkpoint(lmshrink::read_safetensors(path), path, family);
}

}  // namespace llama
}  // namespace models
LMSHRINK_NAMESPACE_END
