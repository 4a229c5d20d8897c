#pragma once
// GPT-2's dense model: its config and every weight (out, in) row-major with its bias, as Hugging
// Face "gpt2" directories hold it (hf.hpp reads and writes them).
//
//   lmshrink::models::gpt2::DenseModel m = lmshrink::models::gpt2::read_hf("gpt2");
//   for (auto& w : m.linear_weights()) ...   // c_attn, attn c_proj, c_fc, mlp c_proj
#include <Eigen/Core>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../../config.hpp"
#include "../../types.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {
namespace gpt2 {

/// GPT-2's hyperparameters.
struct Config {
  int vocab_size = 0;
  int dim = 0;         // n_embd
  int hidden_dim = 0;  // n_inner
  int n_layers = 0;
  int n_heads = 0;
  int n_positions = 0;
  double norm_eps = 1e-5;
  // The config.json the model was read from, every key (lmshrink::HfConfig::source_keys).
  std::vector<std::pair<std::string, std::string>> hf_source_keys;

  int head_size() const { return dim / n_heads; }
};

/// A GPT-2 model: every linear weight (out, in) row-major, with its bias.
struct DenseModel {
  Config config;
  lmshrink::RowMatrix<float> wte;                        // (vocab, dim); also the LM head
  lmshrink::RowMatrix<float> wpe;                        // (n_positions, dim)
  std::vector<lmshrink::Vector<float>> ln1_w, ln1_b;     // L × (dim)
  std::vector<lmshrink::RowMatrix<float>> attn_w;        // L × (3·dim, dim): q, k, v rows
  std::vector<lmshrink::Vector<float>> attn_b;           // L × (3·dim)
  std::vector<lmshrink::RowMatrix<float>> proj_w;        // L × (dim, dim)
  std::vector<lmshrink::Vector<float>> proj_b;           // L × (dim)
  std::vector<lmshrink::Vector<float>> ln2_w, ln2_b;     // L × (dim)
  std::vector<lmshrink::RowMatrix<float>> fc_w;          // L × (hidden, dim)
  std::vector<lmshrink::Vector<float>> fc_b;             // L × (hidden)
  std::vector<lmshrink::RowMatrix<float>> fc_proj_w;     // L × (dim, hidden)
  std::vector<lmshrink::Vector<float>> fc_proj_b;        // L × (dim)
  lmshrink::Vector<float> lnf_w, lnf_b;                  // (dim)

  /// The 4·n_layers linear weights (c_attn, attn c_proj, c_fc, mlp c_proj of every layer).
  std::vector<lmshrink::NamedWeight> linear_weights() {
    std::vector<lmshrink::NamedWeight> out;
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

}  // namespace gpt2
}  // namespace models
LMSHRINK_NAMESPACE_END
