#pragma once
// Hugging Face "gpt2" checkpoints: [transformer.]wte, wpe, h.{i}.ln_1, .attn.c_attn, .attn.c_proj,
// .ln_2, .mlp.c_fc, .mlp.c_proj, ln_f; the head is tied to wte. Linear weights are stored
// (in, out) (Conv1D); the reader transposes them to lmshrink's (out, in) and returns a Gpt2Model.
//
//   lmshrink::Gpt2Model m = lmshrink::read_hf_gpt2("gpt2");
//   lmshrink::write_hf_gpt2(m, "out", lmshrink::Dtype::f16, 64 << 20);   // shards of 64 MiB
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

/// GPT-2's hyperparameters.
struct Gpt2Config {
  int vocab_size = 0;
  int dim = 0;         // n_embd
  int hidden_dim = 0;  // n_inner
  int n_layers = 0;
  int n_heads = 0;
  int n_positions = 0;
  double norm_eps = 1e-5;

  int head_size() const { return dim / n_heads; }
};

/// A GPT-2 model: every linear weight (out, in) row-major, with its bias.
struct Gpt2Model {
  Gpt2Config config;
  RowMatrix<float> wte;                        // (vocab, dim); also the LM head
  RowMatrix<float> wpe;                        // (n_positions, dim)
  std::vector<Vector<float>> ln1_w, ln1_b;     // L × (dim)
  std::vector<RowMatrix<float>> attn_w;        // L × (3·dim, dim): q, k, v rows
  std::vector<Vector<float>> attn_b;           // L × (3·dim)
  std::vector<RowMatrix<float>> proj_w;        // L × (dim, dim)
  std::vector<Vector<float>> proj_b;           // L × (dim)
  std::vector<Vector<float>> ln2_w, ln2_b;     // L × (dim)
  std::vector<RowMatrix<float>> fc_w;          // L × (hidden, dim)
  std::vector<Vector<float>> fc_b;             // L × (hidden)
  std::vector<RowMatrix<float>> fc_proj_w;     // L × (dim, hidden)
  std::vector<Vector<float>> fc_proj_b;        // L × (dim)
  Vector<float> lnf_w, lnf_b;                  // (dim)

  /// The 4·n_layers linear weights (c_attn, attn c_proj, c_fc, mlp c_proj of every layer).
  std::vector<NamedWeight> linear_weights() {
    std::vector<NamedWeight> out;
    for (int l = 0; l < config.n_layers; ++l) {
      const std::string p = "h." + std::to_string(l) + ".";
      const std::size_t L = std::size_t(l);
      out.push_back({p + "attn.c_attn", &attn_w[L]});
      out.push_back({p + "attn.c_proj", &proj_w[L]});
      out.push_back({p + "mlp.c_fc", &fc_w[L]});
      out.push_back({p + "mlp.c_proj", &fc_proj_w[L]});
    }
    return out;
  }

  std::int64_t parameter_count() const {
    std::int64_t n = wte.size() + wpe.size() + lnf_w.size() + lnf_b.size();
    for (std::size_t l = 0; l < attn_w.size(); ++l)
      n += ln1_w[l].size() + ln1_b[l].size() + attn_w[l].size() + attn_b[l].size() +
           proj_w[l].size() + proj_b[l].size() + ln2_w[l].size() + ln2_b[l].size() +
           fc_w[l].size() + fc_b[l].size() + fc_proj_w[l].size() + fc_proj_b[l].size();
    return n;
  }
};

inline HfConfig hf_config_of(const Gpt2Config& c) {
  HfConfig h;
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
  return h;
}

// ---- GPT-2 --------------------------------------------------------------------------------

inline Gpt2Config gpt2_config_of(const HfConfig& h, const std::string& source) {
  if (h.model_type != "gpt2")
    detail::fail<format_error>("read_hf_gpt2", "'", source, "' is a '", h.model_type, "' model; "
                               "\"gpt2\" was expected");
  Gpt2Config c;
  c.vocab_size = h.vocab_size;
  c.dim = h.hidden_size;
  c.hidden_dim = h.intermediate_size;
  c.n_layers = h.num_layers;
  c.n_heads = h.num_heads;
  c.n_positions = h.max_positions;
  c.norm_eps = h.norm_eps;
  return c;
}

/// A GPT-2 model from a config and its tensors, named with or without "transformer.".
inline Gpt2Model gpt2_from_hf(const HfConfig& hf, const SafeTensors& st, const std::string& source) {
  static constexpr const char* where = "read_hf_gpt2";
  Gpt2Model m;
  const auto& c = m.config = gpt2_config_of(hf, source);
  const std::string prefix = st.contains("transformer.wte.weight") ? "transformer." : "";
  detail::HfTensorReader read(where, st, source, prefix);
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
      detail::fail<format_error>(where, "'", source, "': lm_head.weight differs from wte; lmshrink's "
                                 "GPT-2 ties the head to the token embedding");
  }
  read.check_all_used([](const std::string& name) {
    // The causal-mask buffers GPT-2 checkpoints carry.
    return detail::ends_with(name, ".attn.bias") || detail::ends_with(name, ".attn.masked_bias");
  });
  return m;
}

inline Gpt2Model read_hf_gpt2(const std::string& dir) {
  gpt2_config_of(read_hf_config((std::filesystem::path(dir) / "config.json").string()), dir);  // the family first
  const HfCheckpoint c = read_hf_directory(dir);
  return gpt2_from_hf(c.config, c.tensors, dir);
}

/// The tensors of `m` as GPT2LMHeadModel saves them ("transformer." names, Conv1D (in, out)).
inline SafeTensors gpt2_to_hf(const Gpt2Model& m, Dtype dtype = Dtype::f32) {
  SafeTensors st;
  st.metadata["format"] = "pt";
  const std::string t = "transformer.";
  detail::put_matrix_as(st, t + "wte.weight", m.wte, dtype);
  detail::put_matrix_as(st, t + "wpe.weight", m.wpe, dtype);
  const auto conv1d = [&](const std::string& name, const RowMatrix<float>& w) {
    detail::put_matrix_as(st, name, RowMatrix<float>(w.transpose()), dtype);
  };
  for (int l = 0; l < m.config.n_layers; ++l) {
    const std::string p = t + "h." + std::to_string(l) + ".";
    const std::size_t L = std::size_t(l);
    detail::put_vector_as(st, p + "ln_1.weight", m.ln1_w[L], dtype);
    detail::put_vector_as(st, p + "ln_1.bias", m.ln1_b[L], dtype);
    conv1d(p + "attn.c_attn.weight", m.attn_w[L]);
    detail::put_vector_as(st, p + "attn.c_attn.bias", m.attn_b[L], dtype);
    conv1d(p + "attn.c_proj.weight", m.proj_w[L]);
    detail::put_vector_as(st, p + "attn.c_proj.bias", m.proj_b[L], dtype);
    detail::put_vector_as(st, p + "ln_2.weight", m.ln2_w[L], dtype);
    detail::put_vector_as(st, p + "ln_2.bias", m.ln2_b[L], dtype);
    conv1d(p + "mlp.c_fc.weight", m.fc_w[L]);
    detail::put_vector_as(st, p + "mlp.c_fc.bias", m.fc_b[L], dtype);
    conv1d(p + "mlp.c_proj.weight", m.fc_proj_w[L]);
    detail::put_vector_as(st, p + "mlp.c_proj.bias", m.fc_proj_b[L], dtype);
  }
  detail::put_vector_as(st, t + "ln_f.weight", m.lnf_w, dtype);
  detail::put_vector_as(st, t + "ln_f.bias", m.lnf_b, dtype);
  return st;
}

inline void write_hf_gpt2(const Gpt2Model& m, const std::string& dir, Dtype dtype = Dtype::f32,
                          std::int64_t max_shard_bytes = 0) {
  write_hf_directory(hf_config_of(m.config), gpt2_to_hf(m, dtype), dir, max_shard_bytes);
}

LMSHRINK_NAMESPACE_END
