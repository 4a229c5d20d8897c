#pragma once
// What every family's weights do with their blocks of linear layers (a vector of one array of
// layers per block): count their live and dense parameters, and pack them for inference.

#include <array>
#include <cstdint>
#include <vector>

#include "../config.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {

/// What a Net is for. A forward-only net (calibration's, reconstruction's) holds no gradients,
/// no backward workspace and one attention-probability buffer shared by its blocks: the memory
/// of its forward, every block's activations kept (linear_input reads them). An outputs net (a
/// distillation teacher's) keeps only the logits and every block's output, its blocks' other
/// activations in one buffer that each block reuses (linear_input is a state_error). Backward is
/// a state_error for both. A recompute net trains (gradients, backward) while keeping only each
/// block's input, as an outputs net does: its backward runs each block's forward again, one
/// block at a time, and then that block's backward (activation checkpointing). It costs about
/// one more forward of the blocks and holds one block's activations instead of all of them; its
/// gradients are the bits of a training net's.
enum class NetMode { training, forward_only, outputs, recompute };

/// Whether a net in `mode` holds gradients and runs backward.
inline bool net_trains(NetMode mode) { return mode == NetMode::training || mode == NetMode::recompute; }
/// Whether it keeps only each block's input, its blocks' other activations in one reused buffer.
inline bool net_keeps_block_inputs_only(NetMode mode) {
  return mode == NetMode::outputs || mode == NetMode::recompute;
}

/// Σ live_parameters() over every block's layers.
template <class Blocks>
std::int64_t live_linear_parameters(const Blocks& blocks) {
  std::int64_t n = 0;
  for (const auto& block : blocks)
    for (const auto& layer : block) n += layer.live_parameters();
  return n;
}

/// Σ dense_parameters() (out·in + bias) over every block's layers.
template <class Blocks>
std::int64_t dense_linear_parameters(const Blocks& blocks) {
  std::int64_t n = 0;
  for (const auto& block : blocks)
    for (const auto& layer : block) n += layer.dense_parameters();
  return n;
}

/// Every block's layers packed with Compact::pack (lmshrink::CompactLinear<float>), in order.
template <class Compact, std::size_t Kinds, class Blocks, class Options>
std::vector<std::array<Compact, Kinds>> pack_blocks(const Blocks& blocks, const Options& options) {
  std::vector<std::array<Compact, Kinds>> out;
  out.reserve(blocks.size());
  for (const auto& block : blocks) {
    std::array<Compact, Kinds> packed;
    for (std::size_t k = 0; k < Kinds; ++k) packed[k] = Compact::pack(block[k], options);
    out.push_back(std::move(packed));
  }
  return out;
}

/// The form of every packed layer, block by block.
template <class PackedBlocks>
auto packed_forms(const PackedBlocks& blocks) {
  std::vector<decltype(blocks[0][0].form())> forms;
  for (const auto& block : blocks)
    for (const auto& layer : block) forms.push_back(layer.form());
  return forms;
}

}  // namespace models
LMSHRINK_NAMESPACE_END
