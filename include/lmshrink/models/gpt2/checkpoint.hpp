#pragma once
// GPT-2 checkpoints in lmshrink's self-describing form, dense or compressed: the plain tensors
// under Hugging Face's names (transformer.wte, wpe, h.{l}.ln_1, ln_2, ln_f), and each linear
// layer under "transformer.h.{l}.<kind>" (attn.q, attn.k, attn.v, attn.c_proj, mlp.c_fc,
// mlp.c_proj): "<name>.weight" (out, in) and "<name>.bias" when dense, else
// lmshrink::put_compressed_layer's tensors, so the file loads without knowing ρ. The metadata
// holds the config. (A dense GPT-2 goes back to Hugging Face's own layout with
// lmshrink::write_hf_gpt2.)

#include <cstdio>
#include <cstdlib>
#include "../../io/safetensors.hpp"
#include <map>
#include <string>

#include "trainer.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {
namespace gpt2 {

inline std::string layer_name(int l, int kind) {
  return "transformer.h." + std::to_string(l) + "." + linear_kind_name(kind);
}

inline void save_checkpoint(const Weights<float>& w, const std::string& path, const std::string& method,
                                  const std::map<std::string, std::string>& extra = {}) {
  lmshrink::SafeTensors st;
  const auto& c = w.config;
  st.metadata = extra;
  st.metadata["format"] = "pt";
  st.metadata["lmshrink.checkpoint"] = "gpt2/1";
  st.metadata["vocab_size"] = std::to_string(c.vocab_size);
  st.metadata["dim"] = std::to_string(c.dim);
  st.metadata["hidden_dim"] = std::to_string(c.hidden_dim);
  st.metadata["n_layers"] = std::to_string(c.n_layers);
  st.metadata["n_heads"] = std::to_string(c.n_heads);
  st.metadata["n_positions"] = std::to_string(c.n_positions);
  char eps[32];
  std::snprintf(eps, sizeof eps, "%.17g", c.norm_eps);
  st.metadata["norm_eps"] = eps;
  st.put("transformer.wte.weight", w.wte);
  st.put("transformer.wpe.weight", w.wpe);
  st.put("transformer.ln_f.weight", w.lnf_w);
  st.put("transformer.ln_f.bias", w.lnf_b);
  for (int l = 0; l < c.n_layers; ++l) {
    const std::size_t L = std::size_t(l);
    const std::string p = "transformer.h." + std::to_string(l) + ".";
    st.put(p + "ln_1.weight", w.ln1_w[L]);
    st.put(p + "ln_1.bias", w.ln1_b[L]);
    st.put(p + "ln_2.weight", w.ln2_w[L]);
    st.put(p + "ln_2.bias", w.ln2_b[L]);
    for (int k = 0; k < kLinearKinds; ++k) {
      const auto& layer = w.linear[L][std::size_t(k)];
      const std::string name = layer_name(l, k);
      if (layer.rank() == 0 && layer.live_rows() == layer.out_features() && !layer.has_element_mask()) {
        st.put(name + ".weight", layer.S());
        st.put(name + ".bias", layer.bias());
      } else {
        lmshrink::put_compressed_layer(st, name, layer, method);
      }
    }
  }
  lmshrink::write_safetensors(st, path);
}

/// Reads a checkpoint written by gpt2::save_checkpoint (`st` already in memory; `path` names it in
/// messages).
inline Weights<float> read_checkpoint(const lmshrink::SafeTensors& st, const std::string& path) {
  static constexpr const char* where = "gpt2::read_checkpoint";
  if (st.metadata.count("lmshrink.checkpoint") == 0 || st.meta("lmshrink.checkpoint") != "gpt2/1")
    lmshrink::fail<lmshrink::format_error>(where, "'", path, "' has no 'lmshrink.checkpoint: gpt2/1' "
                                                   "metadata; it was not written by gpt2::save_checkpoint");
  Weights<float> w;
  auto& c = w.config;
  const int big = 1 << 20;
  c.vocab_size = int(st.meta_int("vocab_size", 1, big));
  c.dim = int(st.meta_int("dim", 1, 1 << 16));
  c.hidden_dim = int(st.meta_int("hidden_dim", 1, 1 << 18));
  c.n_layers = int(st.meta_int("n_layers", 1, 1 << 10));
  c.n_heads = int(st.meta_int("n_heads", 1, c.dim));
  c.n_positions = int(st.meta_int("n_positions", 1, big));
  const std::string& eps = st.meta("norm_eps");
  char* end = nullptr;
  c.norm_eps = std::strtod(eps.c_str(), &end);
  if (eps.empty() || *end != '\0' || !(c.norm_eps >= 1e-12 && c.norm_eps <= 1))
    lmshrink::fail<lmshrink::format_error>(where, "'", path, "': metadata 'norm_eps' is '", eps,
                                                   "'; a number in [1e-12, 1] was expected");
  if (c.dim % c.n_heads != 0)
    lmshrink::fail<lmshrink::format_error>(where, "'", path, "': dim ", c.dim,
                                                   " is not a multiple of n_heads ", c.n_heads);
  // A compressed layer's dense S is not justified by the file's bytes (see ReadLimits).
  const std::int64_t dense = std::int64_t(c.n_layers) * (4 * std::int64_t(c.dim) * c.dim + 2 * std::int64_t(c.hidden_dim) * c.dim);
  if (dense > (std::int64_t(1) << 31))
    lmshrink::fail<lmshrink::format_error>(where, "'", path, "' describes ", dense, " linear weights; at "
                                                   "most 2^31 are supported by the examples' model layer");
  w.wte = st.matrix<float>("transformer.wte.weight", c.vocab_size, c.dim);
  w.wpe = st.matrix<float>("transformer.wpe.weight", c.n_positions, c.dim);
  w.lnf_w = st.vector<float>("transformer.ln_f.weight", c.dim);
  w.lnf_b = st.vector<float>("transformer.ln_f.bias", c.dim);
  const int outs[kLinearKinds] = {c.dim, c.dim, c.dim, c.dim, c.hidden_dim, c.dim};
  const int ins[kLinearKinds] = {c.dim, c.dim, c.dim, c.dim, c.dim, c.hidden_dim};
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "transformer.h." + std::to_string(l) + ".";
    w.ln1_w.push_back(st.vector<float>(p + "ln_1.weight", c.dim));
    w.ln1_b.push_back(st.vector<float>(p + "ln_1.bias", c.dim));
    w.ln2_w.push_back(st.vector<float>(p + "ln_2.weight", c.dim));
    w.ln2_b.push_back(st.vector<float>(p + "ln_2.bias", c.dim));
    std::array<lmshrink::LowRankSparseLinear<float>, kLinearKinds> layers;
    for (int k = 0; k < kLinearKinds; ++k) {
      const std::string name = layer_name(l, k);
      auto& layer = layers[std::size_t(k)];
      if (lmshrink::has_compressed_layer(st, name)) {
        layer = lmshrink::get_compressed_layer<float>(st, name);
        if (layer.out_features() != outs[k] || layer.in_features() != ins[k] || !layer.has_bias())
          lmshrink::fail<lmshrink::format_error>(where, "'", path, "': layer '", name, "' is ",
                                                         layer.out_features(), "x", layer.in_features(),
                                                         layer.has_bias() ? "" : " without a bias",
                                                         " but the config needs ", outs[k], "x", ins[k], " with a bias");
      } else {
        layer = lmshrink::make_dense_layer<float>(st.matrix<float>(name + ".weight", outs[k], ins[k]), true);
        layer.bias() = st.vector<float>(name + ".bias", outs[k]);
      }
    }
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
