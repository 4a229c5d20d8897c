#pragma once
// GPT-2 models with real models' shapes and synthetic (random) weights, drawn as GPT-2
// initialises them, for speed and memory measurements (bench_train) and the main job's tests:
// their outputs mean nothing, and every table that shows them says "synthetic weights".
//
//   auto dense = models::gpt2::synthetic_model(models::gpt2::small_config(), 2019);
//   auto teacher = models::gpt2::Model(models::gpt2::Weights<float>::from_model(dense));

#include <cmath>
#include <cstdint>

#include "../../random.hpp"
#include "dense.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {
namespace gpt2 {

/// GPT-2 small's configuration (Hugging Face's GPT2Config()): 768 wide, 12 blocks of 12 heads,
/// 3072 hidden, 1024 positions, vocab 50,257.
inline Config small_config() {
  Config c;
  c.vocab_size = 50257, c.dim = 768, c.hidden_dim = 3072, c.n_layers = 12, c.n_heads = 12, c.n_positions = 1024;
  return c;
}

/// A dense GPT-2 of configuration c: every weight N(0, 0.02²) but the residual projections
/// (attention's and the MLP's c_proj), N(0, residual_sd²); norms 1, biases 0. The default
/// residual_sd is GPT-2's 0.02/√(2·n_layers). Drawn from SplitMix64(seed): wte, wpe, then per
/// block c_attn, attn c_proj, c_fc, mlp c_proj, each row by row.
inline DenseModel synthetic_model(const Config& c, std::uint64_t seed, double residual_sd = -1) {
  if (residual_sd < 0) residual_sd = 0.02 / std::sqrt(2.0 * c.n_layers);
  lmshrink::SplitMix64 rng(seed);
  const auto normal = [&](Eigen::Index rows, Eigen::Index cols, double sd) {
    lmshrink::RowMatrix<float> x(rows, cols);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = float(sd * rng.normal());
    return x;
  };
  const auto ones = [](int n) { return lmshrink::Vector<float>::Ones(n); };
  const auto zeros = [](int n) { return lmshrink::Vector<float>::Zero(n); };
  DenseModel m;
  m.config = c;
  m.wte = normal(c.vocab_size, c.dim, 0.02);
  m.wpe = normal(c.n_positions, c.dim, 0.02);
  for (int l = 0; l < c.n_layers; ++l) {
    m.ln1_w.push_back(ones(c.dim));
    m.ln1_b.push_back(zeros(c.dim));
    m.attn_w.push_back(normal(3 * c.dim, c.dim, 0.02));
    m.attn_b.push_back(zeros(3 * c.dim));
    m.proj_w.push_back(normal(c.dim, c.dim, residual_sd));
    m.proj_b.push_back(zeros(c.dim));
    m.ln2_w.push_back(ones(c.dim));
    m.ln2_b.push_back(zeros(c.dim));
    m.fc_w.push_back(normal(c.hidden_dim, c.dim, 0.02));
    m.fc_b.push_back(zeros(c.hidden_dim));
    m.fc_proj_w.push_back(normal(c.dim, c.hidden_dim, residual_sd));
    m.fc_proj_b.push_back(zeros(c.dim));
  }
  m.lnf_w = ones(c.dim);
  m.lnf_b = zeros(c.dim);
  return m;
}

}  // namespace gpt2
}  // namespace models
LMSHRINK_NAMESPACE_END
