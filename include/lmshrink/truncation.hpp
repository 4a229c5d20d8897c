#pragma once
// Layer truncation: a student built from a teacher by keeping a subset of its blocks.
//
//   auto keep = lmshrink::every_other_layer(12);              // {0, 2, 4, 6, 8, 10}
//   auto blocks = lmshrink::keep_layers(teacher_blocks, keep);  // any per-block vector
//   auto renamed = lmshrink::truncate_tensor_names(names, keep, 12);  // any named checkpoint
//
// A family's dense model is truncated by its own function (lmshrink::models::llama::truncate_layers)
// and its trainable model by models::Model::truncated, both on these.
//
// Strategies: first k, last k, every other (the best of the truncation study), DistilGPT-2's
// {0, 2, 4, 7, 9, 11}, or an explicit list. The kept blocks are renumbered 0..k-1 in the order
// given; embeddings, the final norm and the head are copied unchanged.

#include <algorithm>
#include <cmath>
#include <cctype>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config.hpp"
#include "errors.hpp"

LMSHRINK_NAMESPACE_BEGIN

using LayerSelection = std::vector<int>;

namespace detail {
inline void check_layer_count(const char* where, int n_layers) {
  if (n_layers <= 0) fail<value_error>(where, "n_layers must be positive, got ", n_layers);
}
inline void check_k(const char* where, int n_layers, int k) {
  check_layer_count(where, n_layers);
  if (k < 1 || k > n_layers)
    fail<value_error>(where, "k must be in [1, ", n_layers, "], got ", k);
}
}  // namespace detail

inline LayerSelection first_layers(int n_layers, int k) {
  detail::check_k("first_layers", n_layers, k);
  LayerSelection s(static_cast<std::size_t>(k));
  for (int i = 0; i < k; ++i) s[std::size_t(i)] = i;
  return s;
}

inline LayerSelection last_layers(int n_layers, int k) {
  detail::check_k("last_layers", n_layers, k);
  LayerSelection s(static_cast<std::size_t>(k));
  for (int i = 0; i < k; ++i) s[std::size_t(i)] = n_layers - k + i;
  return s;
}

/// 0, 2, 4, …: ceil(n/2) blocks.
inline LayerSelection every_other_layer(int n_layers) {
  detail::check_layer_count("every_other_layer", n_layers);
  LayerSelection s;
  for (int i = 0; i < n_layers; i += 2) s.push_back(i);
  return s;
}

/// DistilGPT-2's initialization: half the blocks, spread evenly from the first to the last,
/// block round(i·(n − 1)/(k − 1)) for i < k = n/2 (at least 1). For GPT-2 small's 12 blocks, its
/// published {0, 2, 4, 7, 9, 11}; for 24, {0, 2, 4, 6, 8, 10, 13, 15, 17, 19, 21, 23}.
inline LayerSelection distilgpt2_layers(int n_layers = 12) {
  detail::check_layer_count("distilgpt2_layers", n_layers);
  const int k = std::max(1, n_layers / 2);
  LayerSelection s;
  for (int i = 0; i < k; ++i)
    s.push_back(k == 1 ? 0 : int(std::lround(double(i) * (n_layers - 1) / double(k - 1))));
  return s;
}

/// Throws value_error unless `keep` is a non-empty list of distinct blocks in [0, n_layers);
/// with `require_sorted`, also ascending (the order blocks run in must not change).
inline void validate_selection(const LayerSelection& keep, int n_layers,
                               bool require_sorted = true) {
  static constexpr const char* where = "validate_selection";
  detail::check_layer_count(where, n_layers);
  if (keep.empty()) detail::fail<value_error>(where, "the selection is empty; at least one block was expected");
  for (std::size_t i = 0; i < keep.size(); ++i) {
    if (keep[i] < 0 || keep[i] >= n_layers)
      detail::fail<value_error>(where, "block ", keep[i], " (entry ", i, ") is out of range [0, ",
                                n_layers, ")");
    for (std::size_t j = 0; j < i; ++j)
      if (keep[j] == keep[i])
        detail::fail<value_error>(where, "block ", keep[i], " is selected twice (entries ", j,
                                  " and ", i, ")");
    if (require_sorted && i > 0 && keep[i] < keep[i - 1])
      detail::fail<value_error>(where, "blocks must be in ascending order, but entry ", i, " (",
                                keep[i], ") follows ", keep[i - 1]);
  }
}

/// The blocks of an in-memory model, kept in selection order.
template <class Block>
std::vector<Block> keep_layers(const std::vector<Block>& blocks, const LayerSelection& keep,
                               bool require_sorted = true) {
  validate_selection(keep, static_cast<int>(blocks.size()), require_sorted);
  std::vector<Block> out;
  out.reserve(keep.size());
  for (int i : keep) out.push_back(blocks[std::size_t(i)]);
  return out;
}

/// The block index in a tensor name such as "layers.3.attention.wq", "model.layers.3.mlp…",
/// "h.3.attn.c_attn.weight" or "transformer.h.3.ln_1.bias": the position and length of the
/// number and its value; nullopt for names outside the blocks (embeddings, final norm, head).
struct LayerIndexInName {
  std::size_t pos, len;
  int layer;
};
inline std::optional<LayerIndexInName> find_layer_index(const std::string& name) {
  for (const char* prefix : {"layers.", "h."}) {
    const std::string p = prefix;
    for (std::size_t at = name.find(p); at != std::string::npos; at = name.find(p, at + 1)) {
      if (at > 0 && name[at - 1] != '.') continue;  // a whole path component
      std::size_t i = at + p.size(), j = i;
      while (j < name.size() && std::isdigit(static_cast<unsigned char>(name[j]))) ++j;
      if (j == i || j >= name.size() || name[j] != '.') continue;
      if (j - i > 9) continue;
      return LayerIndexInName{i, j - i, std::stoi(name.substr(i, j - i))};
    }
  }
  return std::nullopt;
}

/// For a checkpoint's tensor names: the names to keep, each paired with its new name (block
/// numbers remapped to 0..k-1 in selection order). Names outside the blocks are kept as they
/// are. A block name with an index ≥ n_layers is a format_error.
inline std::vector<std::pair<std::string, std::string>> truncate_tensor_names(
    const std::vector<std::string>& names, const LayerSelection& keep, int n_layers,
    bool require_sorted = true) {
  validate_selection(keep, n_layers, require_sorted);
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& name : names) {
    const auto at = find_layer_index(name);
    if (!at) {
      out.emplace_back(name, name);
      continue;
    }
    if (at->layer >= n_layers)
      detail::fail<format_error>("truncate_tensor_names", "tensor '", name, "' names block ",
                                 at->layer, " but the model has ", n_layers, " blocks");
    const auto it = std::find(keep.begin(), keep.end(), at->layer);
    if (it == keep.end()) continue;
    std::string renamed = name;
    renamed.replace(at->pos, at->len, std::to_string(it - keep.begin()));
    out.emplace_back(name, renamed);
  }
  return out;
}

LMSHRINK_NAMESPACE_END
