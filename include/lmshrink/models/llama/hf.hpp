#pragma once
// Hugging Face "llama" checkpoints: model.embed_tokens, model.layers.{i}.input_layernorm,
// .self_attn.{q,k,v,o}_proj, .post_attention_layernorm, .mlp.{gate,up,down}_proj, model.norm,
// lm_head (when not tied). Weights are (out, in). Hugging Face applies RoPE to rotate-half pairs
// (i, i + hs/2) where llama2.c uses adjacent pairs (2i, 2i + 1), so q_proj and k_proj rows are
// permuted within each head (hf_rope_source); the reader undoes it and returns a DenseModel.
// The config keys and tensor names here serve the families built on Llama too (qwen2).
//
//   lmshrink::models::llama::DenseModel m = lmshrink::models::llama::read_hf("TinyStories-llama");
//   lmshrink::models::llama::write_hf(m, "out", lmshrink::Dtype::bf16);
#include <cstdint>
#include <cmath>
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
namespace llama {

/// The keys every Llama-shaped config.json shares ("llama", and the families built on it: "qwen2"):
/// sizes, heads, RMSNorm eps, RoPE base and scaling (linear, llama3), tied embeddings, silu;
/// refused: other RoPE scalings, a head_dim other than hidden_size / heads, heads not a multiple
/// of kv heads, an odd head size.
inline lmshrink::HfConfig hf_config_keys(const lmshrink::HfConfigFields& r, const char* family) {
  lmshrink::HfConfig c;
  constexpr int big = 1 << 20;
  c.model_type = family;
  c.source_keys = r.members();
  c.vocab_size = r.integer("vocab_size", 1, big);
  c.hidden_size = r.integer("hidden_size", 2, 1 << 16);
  c.intermediate_size = r.integer("intermediate_size", 1, 1 << 18);
  c.num_layers = r.integer("num_hidden_layers", 1, 1 << 10);
  c.num_heads = r.integer("num_attention_heads", 1, 1 << 12);
  c.num_kv_heads = r.present("num_key_value_heads") ? r.integer("num_key_value_heads", 1, 1 << 12) : c.num_heads;
  c.max_positions = r.integer("max_position_embeddings", 1, big);
  c.norm_eps = r.number("rms_norm_eps", 1e-6, 1e-12, 1.0);
  c.rope_theta = r.number("rope_theta", 10000.0, 1.0, 1e12);
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", false);
  c.activation = r.text("hidden_act", "silu");
  if (c.activation != "silu")
    r.bad("'hidden_act' is '", c.activation, "'; lmshrink's ", family, " implements \"silu\"");
  if (r.present("rope_scaling")) {
    const lmshrink::HfConfigFields s = r.object("rope_scaling");
    // "rope_type" since transformers 4.43; "type" before.
    const std::string type = s.present("rope_type") ? s.text("rope_type", "") : s.text("type", "");
    if (type != "linear" && type != "llama3")
      s.bad("the type is '", type, "'; lmshrink implements \"linear\" and \"llama3\" RoPE scaling (not dynamic NTK, "
            "YaRN or LongRoPE)");
    c.rope_scaling.type = type;
    c.rope_scaling.factor = s.number("factor", 0.0, 1.0, 1e6);
    if (!s.present("factor")) s.bad("'factor' is missing");
    if (type == "llama3") {
      for (const char* key : {"low_freq_factor", "high_freq_factor", "original_max_position_embeddings"})
        if (!s.present(key)) s.bad("'", key, "' is missing; llama3 scaling needs it");
      c.rope_scaling.low_freq_factor = s.number("low_freq_factor", 1.0, 1e-6, 1e6);
      c.rope_scaling.high_freq_factor = s.number("high_freq_factor", 4.0, 1e-6, 1e6);
      c.rope_scaling.original_max_positions = s.integer("original_max_position_embeddings", 1, big);
      if (!(c.rope_scaling.high_freq_factor > c.rope_scaling.low_freq_factor))
        s.bad("high_freq_factor ", c.rope_scaling.high_freq_factor, " is not above low_freq_factor ",
              c.rope_scaling.low_freq_factor);
    }
  }
  if (c.hidden_size % c.num_heads != 0 || c.head_size() % 2 != 0)
    r.bad("hidden_size ", c.hidden_size, " and ", c.num_heads, " heads do not give an even head "
          "size");
  if (r.present("head_dim") && r.integer("head_dim", 1, 1 << 16) != c.head_size())
    r.bad("'head_dim' is ", r.integer("head_dim", 1, 1 << 16), " but hidden_size / heads is ",
          c.head_size(), "; lmshrink implements head_dim = hidden_size / num_attention_heads");
  if (c.num_heads % c.num_kv_heads != 0)
    r.bad(c.num_heads, " attention heads are not a multiple of ", c.num_kv_heads, " key/value heads");
  if (std::int64_t(c.max_positions) * (c.head_size() / 2) > (std::int64_t(1) << 28))
    r.bad("max_position_embeddings ", c.max_positions, " × head size ", c.head_size(),
          " / 2 is more than the 2^28 RoPE table entries lmshrink supports");
  return c;
}

/// config.json of a Llama-shaped model (c.model_type: "llama", or a family built on it) with
/// the keys LlamaConfig writes, `architecture` first, `extra` keys (already JSON) after
/// hidden_act, and `torch_dtype` last.
inline std::string config_json(const lmshrink::HfConfig& c, const std::string& architecture,
                                               const std::vector<std::pair<std::string, std::string>>& extra = {},
                                               const std::string& torch_dtype = "float32") {
  lmshrink::HfConfigJsonWriter w;
  w.raw("architectures", "[\"" + architecture + "\"]");
  w.text("model_type", c.model_type);
  w.integer("vocab_size", c.vocab_size);
  w.integer("hidden_size", c.hidden_size);
  w.integer("intermediate_size", c.intermediate_size);
  w.integer("num_hidden_layers", c.num_layers);
  w.integer("num_attention_heads", c.num_heads);
  w.integer("num_key_value_heads", c.num_kv_heads);
  w.integer("max_position_embeddings", c.max_positions);
  w.number("rms_norm_eps", c.norm_eps);
  w.number("rope_theta", c.rope_theta);
  if (c.rope_scaling.enabled()) {
    lmshrink::HfConfigJsonWriter s;
    s.text("rope_type", c.rope_scaling.type);
    s.number("factor", c.rope_scaling.factor);
    if (c.rope_scaling.type == "llama3") {
      s.number("low_freq_factor", c.rope_scaling.low_freq_factor);
      s.number("high_freq_factor", c.rope_scaling.high_freq_factor);
      s.integer("original_max_position_embeddings", c.rope_scaling.original_max_positions);
    }
    std::string object = s.str();
    object.pop_back();  // the object's own newline
    w.raw("rope_scaling", object);
  }
  w.text("hidden_act", c.activation.empty() ? "silu" : c.activation);
  for (const auto& [key, value] : extra) w.raw(key.c_str(), value);
  w.boolean("tie_word_embeddings", c.tie_word_embeddings);
  w.text("torch_dtype", torch_dtype);
  w.keep(c.source_keys);
  return w.str();
}


/// Row r of a Hugging Face q_proj / k_proj holds row hf_rope_source(r) of llama2.c's layout:
/// within each head, HF row j·hs/2 + i is llama2.c row 2i + j.
inline lmshrink::Index hf_rope_source(lmshrink::Index r, int head_size) {
  const lmshrink::Index h = r / head_size, w = r % head_size, half = head_size / 2;
  return h * head_size + 2 * (w % half) + w / half;
}

inline lmshrink::HfConfig hf_config_of(const Config& c) {
  lmshrink::HfConfig h;
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
  h.rope_scaling = c.rope_scaling;
  h.source_keys = c.hf_source_keys;
  h.tie_word_embeddings = c.shared_classifier;
  h.activation = "silu";
  return h;
}

// ---- Llama --------------------------------------------------------------------------------

/// The Llama config of a Llama-shaped lmshrink::HfConfig (hf_config_keys), whatever its model_type.
inline Config config_from(const lmshrink::HfConfig& h) {
  Config c;
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
  c.rope_scaling = h.rope_scaling;
  c.hf_source_keys = h.source_keys;
  return c;
}

inline Config config_of(const lmshrink::HfConfig& h, const std::string& source) {
  if (h.model_type != "llama")
    lmshrink::detail::fail<lmshrink::format_error>("read_hf", "'", source, "' is a '", h.model_type, "' model; "
                               "\"llama\" was expected");
  return config_from(h);
}

/// A Llama-shaped model from its config and its tensors in Hugging Face layout (`source` names
/// them): the tensors of "llama", and of "qwen2" when c.qkv_bias (q/k/v_proj.bias).
inline DenseModel tensors_from_hf(const Config& config, const lmshrink::SafeTensors& st,
                                          const std::string& source, const char* where = "read_hf") {
  DenseModel m;
  const auto& c = m.config = config;
  lmshrink::detail::HfTensorReader read(where, st, source);
  const auto matrix = [&](const std::string& name, int rows, int cols) { return read.matrix(name, rows, cols); };
  const auto vector = [&](const std::string& name, int size) { return read.vector(name, size); };
  m.token_embedding = matrix("model.embed_tokens.weight", c.vocab_size, c.dim);
  if (!c.shared_classifier) {
    m.wcls = matrix("lm_head.weight", c.vocab_size, c.dim);
  } else if (st.contains("lm_head.weight")) {  // some tied checkpoints save the copy
    if (matrix("lm_head.weight", c.vocab_size, c.dim) != m.token_embedding)
      lmshrink::detail::fail<lmshrink::format_error>(where, "'", source, "': tie_word_embeddings is true but "
                                 "lm_head.weight differs from model.embed_tokens.weight");
  }
  m.rms_final = vector("model.norm.weight", c.dim);
  const int hs = c.head_size(), kv = c.kv_dim();
  const auto unrope = [&](const lmshrink::RowMatrix<float>& hf_rows) {
    lmshrink::RowMatrix<float> out(hf_rows.rows(), hf_rows.cols());
    for (lmshrink::Index r = 0; r < hf_rows.rows(); ++r) out.row(hf_rope_source(r, hs)) = hf_rows.row(r);
    return out;
  };
  const auto unrope_bias = [&](const lmshrink::Vector<float>& hf_rows) {
    lmshrink::Vector<float> out(hf_rows.size());
    for (lmshrink::Index r = 0; r < hf_rows.size(); ++r) out[hf_rope_source(r, hs)] = hf_rows[r];
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
    return lmshrink::detail::ends_with(name, ".rotary_emb.inv_freq");  // a buffer older versions saved
  });
  // The legacy RoPE tables stay empty: a context of max_position_embeddings can be far longer
  // than anything run, and write_llama2c computes them when it needs them.
  return m;
}

/// A Llama model from a config and its tensors in Hugging Face layout (`source` names them).
inline DenseModel from_hf(const lmshrink::HfConfig& hf, const lmshrink::SafeTensors& st, const std::string& source) {
  return tensors_from_hf(config_of(hf, source), st, source);
}

/// The "llama" config.json's keys: hf_config_keys, and refused: attention_bias, mlp_bias.
inline lmshrink::HfConfig hf_config(const lmshrink::HfConfigFields& r) {
  lmshrink::HfConfig c = hf_config_keys(r, "llama");
  r.unsupported_unless_false("attention_bias", "biases on Llama's attention projections");
  r.unsupported_unless_false("mlp_bias", "biases on Llama's MLP");
  return c;
}

/// Reads a Llama checkpoint directory (config.json + model.safetensors or shards), from one
/// version of it even while a save replaces it.
/// The side file of a directory written from a llama2.c model: the file's own RoPE tables
/// (freq_cis_real, freq_cis_imag), which llama2.c's exporter computed with PyTorch's float32 cos
/// and sin; recomputing them differs in the last bit for ~10 % of the entries, so they are kept
/// for a byte-exact way back (write_llama2c). Hugging Face's readers ignore the file.
inline constexpr const char* kLlama2cRopeFile = "llama2c_rope.safetensors";

namespace hf_detail {
/// Reads `dir`'s kLlama2cRopeFile into m (when there is one), checked against m's shape and
/// the formula (each entry within 1e-5 of cos/sin(pos / theta^(2i / head_size))).
inline void read_llama2c_rope(const std::string& dir, DenseModel& m) {
  const std::string path = (std::filesystem::path(dir) / kLlama2cRopeFile).string();
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return;
  const lmshrink::SafeTensors st = lmshrink::read_safetensors(path);
  const Config& c = m.config;
  const int half = c.head_size() / 2;
  m.freq_cis_real = st.matrix<float>("freq_cis_real", c.seq_len, half);
  m.freq_cis_imag = st.matrix<float>("freq_cis_imag", c.seq_len, half);
  for (int p = 0; p < c.seq_len; ++p)
    for (int i = 0; i < half; ++i) {
      const double angle = p / std::pow(c.rope_theta, 2.0 * i / c.head_size());
      if (!(std::abs(m.freq_cis_real(p, i) - std::cos(angle)) < 1e-5) || !(std::abs(m.freq_cis_imag(p, i) - std::sin(angle)) < 1e-5))
        lmshrink::detail::fail<lmshrink::format_error>("read_hf", "'", path, "' entry (", p, ", ", i, ") is not the RoPE "
                                                       "table of this model (theta ", c.rope_theta, ", head size ",
                                                       c.head_size(), ")");
    }
}
}  // namespace hf_detail

inline DenseModel read_hf(const std::string& dir) {
  DenseModel m = lmshrink::read_hf_model("read_hf_llama", "llama", dir, [&](const lmshrink::HfConfigFields& fields,
                                                                             const lmshrink::SafeTensors& tensors) {
    return from_hf(hf_config(fields), tensors, dir);
  });
  hf_detail::read_llama2c_rope(dir, m);
  return m;
}

/// The tensors of `m` in Hugging Face layout, as `dtype` (with q/k/v_proj.bias when
/// m.config.qkv_bias, as "qwen2" stores them).
inline lmshrink::SafeTensors to_hf(const DenseModel& m, lmshrink::Dtype dtype = lmshrink::Dtype::f32) {
  const auto& c = m.config;
  lmshrink::SafeTensors st;
  st.metadata["format"] = "pt";
  lmshrink::detail::put_matrix_as(st, "model.embed_tokens.weight", m.token_embedding, dtype);
  if (!c.shared_classifier) lmshrink::detail::put_matrix_as(st, "lm_head.weight", m.wcls, dtype);
  lmshrink::detail::put_vector_as(st, "model.norm.weight", m.rms_final, dtype);
  const int hs = c.head_size();
  const auto rope = [&](const lmshrink::RowMatrix<float>& w) {
    lmshrink::RowMatrix<float> out(w.rows(), w.cols());
    for (lmshrink::Index r = 0; r < w.rows(); ++r) out.row(r) = w.row(hf_rope_source(r, hs));
    return out;
  };
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const std::size_t L = std::size_t(l);
    lmshrink::detail::put_vector_as(st, p + "input_layernorm.weight", m.rms_att[L], dtype);
    lmshrink::detail::put_vector_as(st, p + "post_attention_layernorm.weight", m.rms_ffn[L], dtype);
    lmshrink::detail::put_matrix_as(st, p + "self_attn.q_proj.weight", rope(m.wq[L]), dtype);
    lmshrink::detail::put_matrix_as(st, p + "self_attn.k_proj.weight", rope(m.wk[L]), dtype);
    lmshrink::detail::put_matrix_as(st, p + "self_attn.v_proj.weight", m.wv[L], dtype);
    lmshrink::detail::put_matrix_as(st, p + "self_attn.o_proj.weight", m.wo[L], dtype);
    lmshrink::detail::put_matrix_as(st, p + "mlp.gate_proj.weight", m.w1[L], dtype);
    lmshrink::detail::put_matrix_as(st, p + "mlp.down_proj.weight", m.w2[L], dtype);
    lmshrink::detail::put_matrix_as(st, p + "mlp.up_proj.weight", m.w3[L], dtype);
    if (c.qkv_bias) {
      const auto rope_bias = [&](const lmshrink::Vector<float>& b) {
        lmshrink::Vector<float> out(b.size());
        for (lmshrink::Index r = 0; r < b.size(); ++r) out[r] = b[hf_rope_source(r, hs)];
        return out;
      };
      lmshrink::detail::put_vector_as(st, p + "self_attn.q_proj.bias", rope_bias(m.bq.at(L)), dtype);
      lmshrink::detail::put_vector_as(st, p + "self_attn.k_proj.bias", rope_bias(m.bk.at(L)), dtype);
      lmshrink::detail::put_vector_as(st, p + "self_attn.v_proj.bias", m.bv.at(L), dtype);
    }
  }
  return st;
}

/// Writes `m` as a Hugging Face Llama directory (config.json + model.safetensors).
inline void write_hf(const DenseModel& m, const std::string& dir, lmshrink::Dtype dtype = lmshrink::Dtype::f32,
                           std::int64_t max_shard_bytes = 0) {
  if (m.config.qkv_bias)
    lmshrink::detail::fail<lmshrink::value_error>("write_hf", "the model's wq, wk and wv have biases, which a "
                              "\"llama\" config cannot express; write it with models::qwen2::write_hf");
  lmshrink::write_hf_directory(config_json(hf_config_of(m.config), "LlamaForCausalLM", {}, lmshrink::torch_dtype_name(dtype)),
                               to_hf(m, dtype), dir, max_shard_bytes);
  // A llama2.c model's own RoPE tables go beside it (kLlama2cRopeFile); none for any other, and
  // a stale one from an earlier save of the directory goes.
  const std::string rope = (std::filesystem::path(dir) / kLlama2cRopeFile).string();
  if (m.freq_cis_real.size() > 0 && m.freq_cis_imag.size() > 0) {
    lmshrink::SafeTensors st;
    st.metadata["lmshrink.llama2c_rope"] = "1";
    st.put("freq_cis_real", m.freq_cis_real);
    st.put("freq_cis_imag", m.freq_cis_imag);
    lmshrink::write_safetensors(st, rope);
  } else {
    std::error_code ec;
    std::filesystem::remove(rope, ec);
  }
}

}  // namespace llama
}  // namespace models
LMSHRINK_NAMESPACE_END
