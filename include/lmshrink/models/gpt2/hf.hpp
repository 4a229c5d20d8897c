#pragma once
// Hugging Face "gpt2" checkpoints: [transformer.]wte, wpe, h.{i}.ln_1, .attn.c_attn, .attn.c_proj,
// .ln_2, .mlp.c_fc, .mlp.c_proj, ln_f; the head is tied to wte. Linear weights are stored
// (in, out) (Conv1D); the reader transposes them to lmshrink's (out, in) and returns a DenseModel.
//
//   lmshrink::models::gpt2::DenseModel m = lmshrink::models::gpt2::read_hf("gpt2");
//   lmshrink::models::gpt2::write_hf(m, "out", lmshrink::Dtype::f16, 64 << 20);   // shards of 64 MiB
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "../../config.hpp"
#include "../../errors.hpp"
#include "../../files.hpp"
#include "../../io/hf_config.hpp"
#include "../../io/hf_directory.hpp"
#include "../../io/safetensors.hpp"
#include "../../types.hpp"
#include "dense.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {
namespace gpt2 {

inline lmshrink::HfConfig hf_config_of(const Config& c) {
  lmshrink::HfConfig h;
  h.model_type = "gpt2";
  h.vocab_size = c.vocab_size;
  h.hidden_size = c.dim;
  h.intermediate_size = c.hidden_dim;
  h.num_layers = c.n_layers;
  h.num_heads = c.n_heads;
  h.num_kv_heads = c.n_heads;
  h.max_positions = c.n_positions;
  h.norm_eps = c.norm_eps;
  h.tie_word_embeddings = true;
  h.activation = "gelu_new";
  h.source_keys = c.hf_source_keys;
  return h;
}

// ---- GPT-2 --------------------------------------------------------------------------------

inline Config config_of(const lmshrink::HfConfig& h, const std::string& source) {
  if (h.model_type != "gpt2")
    lmshrink::detail::fail<lmshrink::format_error>("read_hf", "'", source, "' is a '", h.model_type, "' model; "
                               "\"gpt2\" was expected");
  Config c;
  c.vocab_size = h.vocab_size;
  c.dim = h.hidden_size;
  c.hidden_dim = h.intermediate_size;
  c.n_layers = h.num_layers;
  c.n_heads = h.num_heads;
  c.n_positions = h.max_positions;
  c.norm_eps = h.norm_eps;
  c.hf_source_keys = h.source_keys;
  return c;
}

/// A GPT-2 model from a config and its tensors, named with or without "transformer.".
inline DenseModel from_hf(const lmshrink::HfConfig& hf, const lmshrink::SafeTensors& st, const std::string& source) {
  static constexpr const char* where = "read_hf";
  DenseModel m;
  const auto& c = m.config = config_of(hf, source);
  const std::string prefix = st.contains("transformer.wte.weight") ? "transformer." : "";
  lmshrink::detail::HfTensorReader read(where, st, source, prefix);
  const auto matrix = [&](const std::string& name, int rows, int cols) { return read.matrix(name, rows, cols); };
  const auto conv1d = [&](const std::string& name, int out, int in) { return read.conv1d(name, out, in); };
  const auto vector = [&](const std::string& name, int size) { return read.vector(name, size); };
  m.wte = matrix("wte.weight", c.vocab_size, c.dim);
  m.wpe = matrix("wpe.weight", c.n_positions, c.dim);
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "h." + std::to_string(l) + ".";
    m.ln1_w.push_back(vector(p + "ln_1.weight", c.dim));
    m.ln1_b.push_back(vector(p + "ln_1.bias", c.dim));
    m.attn_w.push_back(conv1d(p + "attn.c_attn.weight", 3 * c.dim, c.dim));
    m.attn_b.push_back(vector(p + "attn.c_attn.bias", 3 * c.dim));
    m.proj_w.push_back(conv1d(p + "attn.c_proj.weight", c.dim, c.dim));
    m.proj_b.push_back(vector(p + "attn.c_proj.bias", c.dim));
    m.ln2_w.push_back(vector(p + "ln_2.weight", c.dim));
    m.ln2_b.push_back(vector(p + "ln_2.bias", c.dim));
    m.fc_w.push_back(conv1d(p + "mlp.c_fc.weight", c.hidden_dim, c.dim));
    m.fc_b.push_back(vector(p + "mlp.c_fc.bias", c.hidden_dim));
    m.fc_proj_w.push_back(conv1d(p + "mlp.c_proj.weight", c.dim, c.hidden_dim));
    m.fc_proj_b.push_back(vector(p + "mlp.c_proj.bias", c.dim));
  }
  m.lnf_w = vector("ln_f.weight", c.dim);
  m.lnf_b = vector("ln_f.bias", c.dim);
  if (st.contains("lm_head.weight")) {  // GPT2LMHeadModel's tied copy, when saved
    if (read.top_level_matrix("lm_head.weight", c.vocab_size, c.dim) != m.wte)
      lmshrink::detail::fail<lmshrink::format_error>(where, "'", source, "': lm_head.weight differs from wte; lmshrink's "
                                 "GPT-2 ties the head to the token embedding");
  }
  read.check_all_used([](const std::string& name) {
    // The causal-mask buffers GPT-2 checkpoints carry.
    return lmshrink::detail::ends_with(name, ".attn.bias") || lmshrink::detail::ends_with(name, ".attn.masked_bias");
  });
  return m;
}

/// The "gpt2" config.json's keys (n_embd, n_layer, n_head, n_positions or n_ctx, n_inner,
/// layer_norm_epsilon, activation_function), with what lmshrink's GPT-2 does not implement refused.
inline lmshrink::HfConfig hf_config(const lmshrink::HfConfigFields& r) {
  lmshrink::HfConfig c;
  constexpr int big = 1 << 20;
  c.model_type = "gpt2";
  c.source_keys = r.members();
  c.vocab_size = r.integer("vocab_size", 1, big);
  c.hidden_size = r.integer("n_embd", 1, 1 << 16);
  c.num_layers = r.integer("n_layer", 1, 1 << 10);
  c.num_heads = r.integer("n_head", 1, 1 << 12);
  c.num_kv_heads = c.num_heads;
  c.max_positions = r.present("n_positions") ? r.integer("n_positions", 1, big) : r.integer("n_ctx", 1, big);
  c.intermediate_size = r.present("n_inner") ? r.integer("n_inner", 1, 1 << 18) : 4 * c.hidden_size;
  c.norm_eps = r.number("layer_norm_epsilon", 1e-5, 1e-12, 1.0);
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", true);
  c.activation = r.text("activation_function", "gelu_new");
  if (c.activation != "gelu_new" && c.activation != "gelu_pytorch_tanh")
    r.bad("'activation_function' is '", c.activation, "'; lmshrink's GPT-2 implements the tanh "
          "approximation of GELU (\"gelu_new\" or \"gelu_pytorch_tanh\")");
  if (!c.tie_word_embeddings)
    r.bad("'tie_word_embeddings' is false; lmshrink's GPT-2 ties the head to wte");
  if (!r.boolean("scale_attn_weights", true))
    r.bad("'scale_attn_weights' is false; lmshrink's GPT-2 scales attention by 1/sqrt(head size)");
  r.unsupported_unless_false("scale_attn_by_inverse_layer_idx", "attention scaled by layer index");
  r.unsupported_unless_false("add_cross_attention", "cross-attention");
  if (c.hidden_size % c.num_heads != 0)
    r.bad("n_embd ", c.hidden_size, " is not a multiple of n_head ", c.num_heads);
  return c;
}

/// config.json for `c`, with the keys GPT2Config writes; `torch_dtype` names the weights' dtype.
inline std::string config_json(const lmshrink::HfConfig& c, const std::string& torch_dtype = "float32") {
  lmshrink::HfConfigJsonWriter w;
  w.raw("architectures", "[\"GPT2LMHeadModel\"]");
  w.text("model_type", "gpt2");
  w.integer("vocab_size", c.vocab_size);
  w.integer("n_embd", c.hidden_size);
  w.integer("n_inner", c.intermediate_size);
  w.integer("n_layer", c.num_layers);
  w.integer("n_head", c.num_heads);
  w.integer("n_positions", c.max_positions);
  w.integer("n_ctx", c.max_positions);
  w.number("layer_norm_epsilon", c.norm_eps);
  w.text("activation_function", c.activation.empty() ? "gelu_new" : c.activation);
  w.boolean("tie_word_embeddings", true);
  w.text("torch_dtype", torch_dtype);
  w.keep(c.source_keys);
  return w.str();
}

/// Reads a GPT-2 checkpoint directory, from one version of it even while a save replaces it.
inline DenseModel read_hf(const std::string& dir) {
  return lmshrink::read_hf_model("read_hf_gpt2", "gpt2", dir, [&](const lmshrink::HfConfigFields& fields,
                                                                   const lmshrink::SafeTensors& tensors) {
    return from_hf(hf_config(fields), tensors, dir);
  });
}

/// The tensors of `m` as GPT2LMHeadModel saves them ("transformer." names, Conv1D (in, out)).
inline lmshrink::SafeTensors to_hf(const DenseModel& m, lmshrink::Dtype dtype = lmshrink::Dtype::f32) {
  lmshrink::SafeTensors st;
  st.metadata["format"] = "pt";
  const std::string t = "transformer.";
  lmshrink::detail::put_matrix_as(st, t + "wte.weight", m.wte, dtype);
  lmshrink::detail::put_matrix_as(st, t + "wpe.weight", m.wpe, dtype);
  const auto conv1d = [&](const std::string& name, const lmshrink::RowMatrix<float>& w) {
    lmshrink::detail::put_matrix_as(st, name, lmshrink::RowMatrix<float>(w.transpose()), dtype);
  };
  for (int l = 0; l < m.config.n_layers; ++l) {
    const std::string p = t + "h." + std::to_string(l) + ".";
    const std::size_t L = std::size_t(l);
    lmshrink::detail::put_vector_as(st, p + "ln_1.weight", m.ln1_w[L], dtype);
    lmshrink::detail::put_vector_as(st, p + "ln_1.bias", m.ln1_b[L], dtype);
    conv1d(p + "attn.c_attn.weight", m.attn_w[L]);
    lmshrink::detail::put_vector_as(st, p + "attn.c_attn.bias", m.attn_b[L], dtype);
    conv1d(p + "attn.c_proj.weight", m.proj_w[L]);
    lmshrink::detail::put_vector_as(st, p + "attn.c_proj.bias", m.proj_b[L], dtype);
    lmshrink::detail::put_vector_as(st, p + "ln_2.weight", m.ln2_w[L], dtype);
    lmshrink::detail::put_vector_as(st, p + "ln_2.bias", m.ln2_b[L], dtype);
    conv1d(p + "mlp.c_fc.weight", m.fc_w[L]);
    lmshrink::detail::put_vector_as(st, p + "mlp.c_fc.bias", m.fc_b[L], dtype);
    conv1d(p + "mlp.c_proj.weight", m.fc_proj_w[L]);
    lmshrink::detail::put_vector_as(st, p + "mlp.c_proj.bias", m.fc_proj_b[L], dtype);
  }
  lmshrink::detail::put_vector_as(st, t + "ln_f.weight", m.lnf_w, dtype);
  lmshrink::detail::put_vector_as(st, t + "ln_f.bias", m.lnf_b, dtype);
  return st;
}

inline void write_hf(const DenseModel& m, const std::string& dir, lmshrink::Dtype dtype = lmshrink::Dtype::f32,
                          std::int64_t max_shard_bytes = 0) {
  lmshrink::write_hf_directory(config_json(hf_config_of(m.config), lmshrink::torch_dtype_name(dtype)), to_hf(m, dtype), dir,
                               max_shard_bytes);
}

}  // namespace gpt2
}  // namespace models
LMSHRINK_NAMESPACE_END
