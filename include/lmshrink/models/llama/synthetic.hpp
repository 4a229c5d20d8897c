#pragma once
// Llama models with real models' shapes and synthetic (random) weights, for speed only: their
// outputs mean nothing, and every table that shows them says "synthetic weights".
//
//   auto dense = models::synthetic_model(models::gpt2_small_shape(), 1);
//   auto teacher = models::Compact::pack_dense(dense);
//   auto half = models::synthetic_compact(dense, {0.5});      // low-rank + kept rows at q = 0.5
//   models::KvDecoder<models::CompactView> gen(models::CompactView(half, {threads, team}));

#include <algorithm>
#include <cmath>
#include <cstdint>
#include "../../random.hpp"
#include "dense.hpp"
#include "../../low_rank_sparse_linear.hpp"
#include <string>

#include "compact.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {
namespace llama {

/// GPT-2 small's shapes as a Llama: 768 wide, 12 blocks of 12 heads, 3072 hidden, vocab 50,257.
inline Config gpt2_small_shape() {
  Config c;
  c.dim = 768, c.hidden_dim = 3072, c.n_layers = 12, c.n_heads = 12, c.n_kv_heads = 12;
  c.vocab_size = 50257, c.seq_len = 1024, c.shared_classifier = true;
  return c;
}

/// stories15M's shapes: 288 wide, 6 blocks of 6 heads, 768 hidden, vocab 32,000.
inline Config stories15m_shape() {
  Config c;
  c.dim = 288, c.hidden_dim = 768, c.n_layers = 6, c.n_heads = 6, c.n_kv_heads = 6;
  c.vocab_size = 32000, c.seq_len = 256, c.shared_classifier = true;
  return c;
}

/// TinyLlama 1.1B's shapes: 2048 wide, 22 blocks of 32 heads over 4 key/value heads, 5632
/// hidden, vocab 32,000, context 2048, a classifier of its own.
inline Config tinyllama_shape() {
  Config c;
  c.dim = 2048, c.hidden_dim = 5632, c.n_layers = 22, c.n_heads = 32, c.n_kv_heads = 4;
  c.vocab_size = 32000, c.seq_len = 2048, c.shared_classifier = false;
  return c;
}

namespace detail_synthetic {
inline void fill_normal(float* p, Eigen::Index n, float scale, lmshrink::SplitMix64& rng) {
  for (Eigen::Index i = 0; i < n; ++i) p[i] = float(rng.normal()) * scale;
}
inline RowMat random_matrix(Eigen::Index rows, Eigen::Index cols, lmshrink::SplitMix64& rng) {
  RowMat m(rows, cols);
  fill_normal(m.data(), m.size(), 1.0f / std::sqrt(float(cols)), rng);
  return m;
}
}  // namespace detail_synthetic

/// A dense model of the given shape with N(0, 1/in) weights and unit gains.
inline DenseModel synthetic_model(const Config& c, std::uint64_t seed) {
  using detail_synthetic::random_matrix;
  lmshrink::SplitMix64 rng(seed);
  DenseModel m;
  m.config = c;
  m.token_embedding = random_matrix(c.vocab_size, c.dim, rng);
  for (int l = 0; l < c.n_layers; ++l) {
    m.rms_att.push_back(Vec::Ones(c.dim));
    m.rms_ffn.push_back(Vec::Ones(c.dim));
    m.wq.push_back(random_matrix(c.dim, c.dim, rng));
    m.wk.push_back(random_matrix(c.kv_dim(), c.dim, rng));
    m.wv.push_back(random_matrix(c.kv_dim(), c.dim, rng));
    m.wo.push_back(random_matrix(c.dim, c.dim, rng));
    m.w1.push_back(random_matrix(c.hidden_dim, c.dim, rng));
    m.w2.push_back(random_matrix(c.dim, c.hidden_dim, rng));
    m.w3.push_back(random_matrix(c.hidden_dim, c.dim, rng));
    if (c.qkv_bias) {
      m.bq.push_back(0.1f * random_matrix(c.dim, 1, rng).col(0));
      m.bk.push_back(0.1f * random_matrix(c.kv_dim(), 1, rng).col(0));
      m.bv.push_back(0.1f * random_matrix(c.kv_dim(), 1, rng).col(0));
    }
  }
  m.rms_final = Vec::Ones(c.dim);
  if (!c.shared_classifier) m.wcls = random_matrix(c.vocab_size, c.dim, rng);
  return m;
}

/// How a layer of (out, in) spends a remaining ratio q: rank r and kept rows k with
/// r·(out + in) + k·in <= q·out·in, `sparse_share` of the budget (rounded down) in kept rows.
struct LayerBudget {
  Eigen::Index rank = 0, kept_rows = 0;
  Eigen::Index parameters(Eigen::Index out, Eigen::Index in) const {
    return rank * (out + in) + kept_rows * in;
  }
};

inline LayerBudget split_budget(Eigen::Index out, Eigen::Index in, double q, double sparse_share) {
  if (!(q > 0 && q < 1) || !(sparse_share >= 0 && sparse_share < 1))
    lmshrink::fail<lmshrink::value_error>("split_budget", "q must be in (0, 1) and "
                                                  "sparse_share in [0, 1), got ", q, " and ",
                                                  sparse_share);
  const double budget = q * double(out) * double(in);
  LayerBudget b;
  b.kept_rows = std::min<Eigen::Index>(out, Eigen::Index(sparse_share * budget / double(in)));
  b.rank = std::max<Eigen::Index>(
      1, Eigen::Index((budget - double(b.kept_rows * in)) / double(out + in)));
  return b;
}

struct SyntheticCompactOptions {
  double q = 0.5;               ///< remaining ratio of every compressed layer
  double sparse_share = 0.2;    ///< share of each layer's budget spent on kept rows of S
  bool compress_classifier = false;  ///< the classifier at q too (else dense, as the teacher's)
  std::uint64_t seed = 7;
};

/// One layer of (out, in) at the options' budget, random factors and evenly spread kept rows.
inline lmshrink::CompactLinear<float> synthetic_layer(Eigen::Index out, Eigen::Index in,
                                                      const SyntheticCompactOptions& o,
                                                      lmshrink::SplitMix64& rng) {
  const LayerBudget b = split_budget(out, in, o.q, o.sparse_share);
  lmshrink::LowRankSparseLinear<float> layer(out, in, b.rank);
  const float su = 1.0f / std::sqrt(float(b.rank)), sv = 1.0f / std::sqrt(float(in));
  detail_synthetic::fill_normal(layer.U().data(), layer.U().size(), su, rng);
  detail_synthetic::fill_normal(layer.V().data(), layer.V().size(), sv, rng);
  lmshrink::RowMask mask = lmshrink::RowMask::Zero(out);
  for (Eigen::Index j = 0; j < b.kept_rows; ++j) {
    const Eigen::Index row = j * out / std::max<Eigen::Index>(b.kept_rows, 1);
    mask[row] = 1;
    detail_synthetic::fill_normal(layer.S().row(row).data(), in, sv, rng);
  }
  layer.set_row_mask(mask);
  return lmshrink::CompactLinear<float>::pack(layer);
}

/// The compact form of `model` with every linear layer (and optionally the classifier) at the
/// options' budget. Its weights are random: for speed only.
inline Compact synthetic_compact(const DenseModel& model,
                                      const SyntheticCompactOptions& o) {
  lmshrink::SplitMix64 rng(o.seed);
  const auto& c = model.config;
  Compact m;
  m.config = c;
  m.embedding = model.token_embedding;
  if (!c.shared_classifier) m.classifier = model.wcls;
  m.rms_att = model.rms_att;
  m.rms_ffn = model.rms_ffn;
  m.rms_final = model.rms_final;
  const Eigen::Index shapes[kLinearKinds][2] = {
      {c.dim, c.dim}, {c.kv_dim(), c.dim}, {c.kv_dim(), c.dim}, {c.dim, c.dim},
      {c.hidden_dim, c.dim}, {c.dim, c.hidden_dim}, {c.hidden_dim, c.dim}};
  for (int l = 0; l < c.n_layers; ++l) {
    std::array<lmshrink::CompactLinear<float>, kLinearKinds> block;
    for (int k = 0; k < kLinearKinds; ++k)
      block[std::size_t(k)] = synthetic_layer(shapes[k][0], shapes[k][1], o, rng);
    m.linear.push_back(std::move(block));
  }
  if (o.compress_classifier) {
    m.packed_classifier = synthetic_layer(c.vocab_size, c.dim, o, rng);
    m.classifier_compressed = true;
  } else {
    m.pack_classifier();
  }
  return m;
}

}  // namespace llama
}  // namespace models
LMSHRINK_NAMESPACE_END
