#pragma once
// Hugging Face "llama" checkpoints: model.embed_tokens, model.layers.{i}.input_layernorm,
// .self_attn.{q,k,v,o}_proj, .post_attention_layernorm, .mlp.{gate,up,down}_proj, model.norm,
// lm_head (when not tied). Weights are (out, in). Hugging Face applies RoPE to rotate-half pairs
// (i, i + hs/2) where llama2.c uses adjacent pairs (2i, 2i + 1), so q_proj and k_proj rows are
// permuted within each head (hf_rope_source); the reader undoes it and returns a Llama2cModel.
//
//   lmshrink::Llama2cModel m = lmshrink::read_hf_llama("TinyStories-llama");
//   lmshrink::write_hf_llama(m, "out", lmshrink::Dtype::bf16);
#include <cstdint>
#include <string>
#include <vector>

#include "../config.hpp"
#include "../errors.hpp"
#include "../types.hpp"
#include "hf_config.hpp"
#include "hf_directory.hpp"
#include "llama2c.hpp"
#include "safetensors.hpp"

LMSHRINK_NAMESPACE_BEGIN

/// Row r of a Hugging Face q_proj / k_proj holds row hf_rope_source(r) of llama2.c's layout:
/// within each head, HF row j·hs/2 + i is llama2.c row 2i + j.
inline Index hf_rope_source(Index r, int head_size) {
  const Index h = r / head_size, w = r % head_size, half = head_size / 2;
  return h * head_size + 2 * (w % half) + w / half;
}

inline HfConfig hf_config_of(const Llama2cConfig& c) {
  HfConfig h;
  h.model_type = "llama";
  h.vocab_size = c.vocab_size;
  h.hidden_size = c.dim;
  h.intermediate_size = c.hidden_dim;
  h.num_layers = c.n_layers;
  h.num_heads = c.n_heads;
  h.num_kv_heads = c.n_kv_heads;
  h.max_positions = c.seq_len;
  h.norm_eps = c.norm_eps;
  h.rope_theta = c.rope_theta;
  h.tie_word_embeddings = c.shared_classifier;
  h.activation = "silu";
  return h;
}

// ---- Llama --------------------------------------------------------------------------------

/// The Llama config of a Llama-shaped HfConfig (llama_shaped_hf_config), whatever its model_type.
inline Llama2cConfig llama_config_from(const HfConfig& h) {
  Llama2cConfig c;
  c.dim = h.hidden_size;
  c.hidden_dim = h.intermediate_size;
  c.n_layers = h.num_layers;
  c.n_heads = h.num_heads;
  c.n_kv_heads = h.num_kv_heads;
  c.vocab_size = h.vocab_size;
  c.seq_len = h.max_positions;
  c.shared_classifier = h.tie_word_embeddings;
  c.norm_eps = h.norm_eps;
  c.rope_theta = h.rope_theta;
  return c;
}

inline Llama2cConfig llama_config_of(const HfConfig& h, const std::string& source) {
  if (h.model_type != "llama")
    detail::fail<format_error>("read_hf_llama", "'", source, "' is a '", h.model_type, "' model; "
                               "\"llama\" was expected");
  return llama_config_from(h);
}

/// A Llama-shaped model from its config and its tensors in Hugging Face layout (`source` names
/// them): the tensors of "llama", and of "qwen2" when c.qkv_bias (q/k/v_proj.bias).
inline Llama2cModel llama_tensors_from_hf(const Llama2cConfig& config, const SafeTensors& st,
                                          const std::string& source, const char* where = "read_hf_llama") {
  Llama2cModel m;
  const auto& c = m.config = config;
  detail::HfTensorReader read(where, st, source);
  const auto matrix = [&](const std::string& name, int rows, int cols) { return read.matrix(name, rows, cols); };
  const auto vector = [&](const std::string& name, int size) { return read.vector(name, size); };
  m.token_embedding = matrix("model.embed_tokens.weight", c.vocab_size, c.dim);
  if (!c.shared_classifier) {
    m.wcls = matrix("lm_head.weight", c.vocab_size, c.dim);
  } else if (st.contains("lm_head.weight")) {  // some tied checkpoints save the copy
    if (matrix("lm_head.weight", c.vocab_size, c.dim) != m.token_embedding)
      detail::fail<format_error>(where, "'", source, "': tie_word_embeddings is true but "
                                 "lm_head.weight differs from model.embed_tokens.weight");
  }
  m.rms_final = vector("model.norm.weight", c.dim);
  const int hs = c.head_size(), kv = c.kv_dim();
  const auto unrope = [&](const RowMatrix<float>& hf_rows) {
    RowMatrix<float> out(hf_rows.rows(), hf_rows.cols());
    for (Index r = 0; r < hf_rows.rows(); ++r) out.row(hf_rope_source(r, hs)) = hf_rows.row(r);
    return out;
  };
  const auto unrope_bias = [&](const Vector<float>& hf_rows) {
    Vector<float> out(hf_rows.size());
    for (Index r = 0; r < hf_rows.size(); ++r) out[hf_rope_source(r, hs)] = hf_rows[r];
    return out;
  };
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    m.rms_att.push_back(vector(p + "input_layernorm.weight", c.dim));
    m.rms_ffn.push_back(vector(p + "post_attention_layernorm.weight", c.dim));
    m.wq.push_back(unrope(matrix(p + "self_attn.q_proj.weight", c.dim, c.dim)));
    m.wk.push_back(unrope(matrix(p + "self_attn.k_proj.weight", kv, c.dim)));
    m.wv.push_back(matrix(p + "self_attn.v_proj.weight", kv, c.dim));
    m.wo.push_back(matrix(p + "self_attn.o_proj.weight", c.dim, c.dim));
    m.w1.push_back(matrix(p + "mlp.gate_proj.weight", c.hidden_dim, c.dim));
    m.w2.push_back(matrix(p + "mlp.down_proj.weight", c.dim, c.hidden_dim));
    m.w3.push_back(matrix(p + "mlp.up_proj.weight", c.hidden_dim, c.dim));
    if (c.qkv_bias) {
      m.bq.push_back(unrope_bias(vector(p + "self_attn.q_proj.bias", c.dim)));
      m.bk.push_back(unrope_bias(vector(p + "self_attn.k_proj.bias", kv)));
      m.bv.push_back(vector(p + "self_attn.v_proj.bias", kv));
    }
  }
  read.check_all_used([](const std::string& name) {
    return detail::ends_with(name, ".rotary_emb.inv_freq");  // a buffer older versions saved
  });
  // The legacy RoPE tables stay empty: a context of max_position_embeddings can be far longer
  // than anything run, and write_llama2c computes them when it needs them.
  return m;
}

/// A Llama model from a config and its tensors in Hugging Face layout (`source` names them).
inline Llama2cModel llama_from_hf(const HfConfig& hf, const SafeTensors& st, const std::string& source) {
  return llama_tensors_from_hf(llama_config_of(hf, source), st, source);
}

/// Reads a Llama checkpoint directory (config.json + model.safetensors or shards).
inline Llama2cModel read_hf_llama(const std::string& dir) {
  llama_config_of(read_hf_config((std::filesystem::path(dir) / "config.json").string()), dir);  // the family first
  const HfCheckpoint c = read_hf_directory(dir);
  return llama_from_hf(c.config, c.tensors, dir);
}

/// The tensors of `m` in Hugging Face layout, as `dtype` (with q/k/v_proj.bias when
/// m.config.qkv_bias, as "qwen2" stores them).
inline SafeTensors llama_to_hf(const Llama2cModel& m, Dtype dtype = Dtype::f32) {
  const auto& c = m.config;
  SafeTensors st;
  st.metadata["format"] = "pt";
  detail::put_matrix_as(st, "model.embed_tokens.weight", m.token_embedding, dtype);
  if (!c.shared_classifier) detail::put_matrix_as(st, "lm_head.weight", m.wcls, dtype);
  detail::put_vector_as(st, "model.norm.weight", m.rms_final, dtype);
  const int hs = c.head_size();
  const auto rope = [&](const RowMatrix<float>& w) {
    RowMatrix<float> out(w.rows(), w.cols());
    for (Index r = 0; r < w.rows(); ++r) out.row(r) = w.row(hf_rope_source(r, hs));
    return out;
  };
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const std::size_t L = std::size_t(l);
    detail::put_vector_as(st, p + "input_layernorm.weight", m.rms_att[L], dtype);
    detail::put_vector_as(st, p + "post_attention_layernorm.weight", m.rms_ffn[L], dtype);
    detail::put_matrix_as(st, p + "self_attn.q_proj.weight", rope(m.wq[L]), dtype);
    detail::put_matrix_as(st, p + "self_attn.k_proj.weight", rope(m.wk[L]), dtype);
    detail::put_matrix_as(st, p + "self_attn.v_proj.weight", m.wv[L], dtype);
    detail::put_matrix_as(st, p + "self_attn.o_proj.weight", m.wo[L], dtype);
    detail::put_matrix_as(st, p + "mlp.gate_proj.weight", m.w1[L], dtype);
    detail::put_matrix_as(st, p + "mlp.down_proj.weight", m.w2[L], dtype);
    detail::put_matrix_as(st, p + "mlp.up_proj.weight", m.w3[L], dtype);
    if (c.qkv_bias) {
      const auto rope_bias = [&](const Vector<float>& b) {
        Vector<float> out(b.size());
        for (Index r = 0; r < b.size(); ++r) out[r] = b[hf_rope_source(r, hs)];
        return out;
      };
      detail::put_vector_as(st, p + "self_attn.q_proj.bias", rope_bias(m.bq.at(L)), dtype);
      detail::put_vector_as(st, p + "self_attn.k_proj.bias", rope_bias(m.bk.at(L)), dtype);
      detail::put_vector_as(st, p + "self_attn.v_proj.bias", m.bv.at(L), dtype);
    }
  }
  return st;
}

/// Writes `m` as a Hugging Face Llama directory (config.json + model.safetensors).
inline void write_hf_llama(const Llama2cModel& m, const std::string& dir, Dtype dtype = Dtype::f32,
                           std::int64_t max_shard_bytes = 0) {
  if (m.config.qkv_bias)
    detail::fail<value_error>("write_hf_llama", "the model's wq, wk and wv have biases, which a "
                              "\"llama\" config cannot express; write it with models::qwen2::write_hf");
  write_hf_directory(hf_config_of(m.config), llama_to_hf(m, dtype), dir, max_shard_bytes);
}

LMSHRINK_NAMESPACE_END
