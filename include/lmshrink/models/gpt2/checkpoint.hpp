#pragma once
// GPT-2 checkpoints in lmshrink's self-describing form, dense or compressed: the plain tensors
// under Hugging Face's names (transformer.wte, wpe, h.{l}.ln_1, ln_2, ln_f), and each linear
// layer under "transformer.h.{l}.<kind>" (attn.q, attn.k, attn.v, attn.c_proj, mlp.c_fc,
// mlp.c_proj): "<name>.weight" (out, in) and "<name>.bias" when dense, else
// lmshrink::put_compressed_layer's tensors, so the file loads without knowing ρ. The metadata
// holds the config. (A dense GPT-2 goes back to Hugging Face's own layout with
// lmshrink::models::gpt2::write_hf.)

#include <cstdio>
#include <cstdlib>
#include "../../io/safetensors.hpp"
#include <map>
#include <string>

#include "../checkpoint.hpp"
#include "trainer.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {
namespace gpt2 {

inline std::string layer_name(int l, int kind) {
  return "transformer.h." + std::to_string(l) + "." + linear_kind_name(kind);
}

/// Writes the weights atomically; `method` names how the compressed layers were made, `extra`
/// is added to the metadata.
inline void save_checkpoint(const Weights<float>& w, const std::string& path, const std::string& method,
                            const std::map<std::string, std::string>& extra = {}) {
  const auto& c = w.config;
  CheckpointWriter out("gpt2", method, extra);
  out.integer("vocab_size", c.vocab_size);
  out.integer("dim", c.dim);
  out.integer("hidden_dim", c.hidden_dim);
  out.integer("n_layers", c.n_layers);
  out.integer("n_heads", c.n_heads);
  out.integer("n_positions", c.n_positions);
  out.real("norm_eps", c.norm_eps);
  out.hf_source_keys(c.hf_source_keys);
  out.tensor("transformer.wte.weight", w.wte);
  out.tensor("transformer.wpe.weight", w.wpe);
  out.tensor("transformer.ln_f.weight", w.lnf_w);
  out.tensor("transformer.ln_f.bias", w.lnf_b);
  for (int l = 0; l < c.n_layers; ++l) {
    const std::size_t L = std::size_t(l);
    const std::string p = "transformer.h." + std::to_string(l) + ".";
    out.tensor(p + "ln_1.weight", w.ln1_w[L]);
    out.tensor(p + "ln_1.bias", w.ln1_b[L]);
    out.tensor(p + "ln_2.weight", w.ln2_w[L]);
    out.tensor(p + "ln_2.bias", w.ln2_b[L]);
    for (int k = 0; k < kLinearKinds; ++k) out.linear(layer_name(l, k), w.linear[L][std::size_t(k)]);
  }
  out.write(path);
}

/// Reads a checkpoint written by gpt2::save_checkpoint (`st` already in memory; `path` names it in
/// messages).
inline Weights<float> read_checkpoint(const lmshrink::SafeTensors& st, const std::string& path) {
  const CheckpointReader in(st, path, "gpt2");
  Weights<float> w;
  auto& c = w.config;
  const int big = 1 << 20;
  c.vocab_size = in.integer("vocab_size", 1, big);
  c.dim = in.integer("dim", 1, 1 << 16);
  c.hidden_dim = in.integer("hidden_dim", 1, 1 << 18);
  c.n_layers = in.integer("n_layers", 1, 1 << 10);
  c.n_heads = in.integer("n_heads", 1, c.dim);
  c.n_positions = in.integer("n_positions", 1, big);
  c.norm_eps = in.real("norm_eps", 1e-12, 1);
  c.hf_source_keys = in.hf_source_keys();
  if (c.dim % c.n_heads != 0) in.refuse("dim ", c.dim, " is not a multiple of n_heads ", c.n_heads);
  in.check_linear_entries(std::int64_t(c.n_layers) *
                          (4 * std::int64_t(c.dim) * c.dim + 2 * std::int64_t(c.hidden_dim) * c.dim));
  w.wte = in.matrix("transformer.wte.weight", c.vocab_size, c.dim);
  w.wpe = in.matrix("transformer.wpe.weight", c.n_positions, c.dim);
  w.lnf_w = in.vector("transformer.ln_f.weight", c.dim);
  w.lnf_b = in.vector("transformer.ln_f.bias", c.dim);
  const int outs[kLinearKinds] = {c.dim, c.dim, c.dim, c.dim, c.hidden_dim, c.dim};
  const int ins[kLinearKinds] = {c.dim, c.dim, c.dim, c.dim, c.dim, c.hidden_dim};
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "transformer.h." + std::to_string(l) + ".";
    w.ln1_w.push_back(in.vector(p + "ln_1.weight", c.dim));
    w.ln1_b.push_back(in.vector(p + "ln_1.bias", c.dim));
    w.ln2_w.push_back(in.vector(p + "ln_2.weight", c.dim));
    w.ln2_b.push_back(in.vector(p + "ln_2.bias", c.dim));
    std::array<lmshrink::LowRankSparseLinear<float>, kLinearKinds> layers;
    for (int k = 0; k < kLinearKinds; ++k) layers[std::size_t(k)] = in.linear(layer_name(l, k), outs[k], ins[k], true);
    w.linear.push_back(std::move(layers));
  }
  return w;
}

inline Weights<float> read_checkpoint(const std::string& path) {
  return read_checkpoint(lmshrink::read_safetensors(path), path);
}

}  // namespace gpt2
}  // namespace models
LMSHRINK_NAMESPACE_END
