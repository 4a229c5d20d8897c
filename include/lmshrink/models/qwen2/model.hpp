#pragma once
// The Qwen2 family: Hugging Face "qwen2" directories (Qwen2, Qwen2.5 and their fine-tunes).
// Qwen2's block is Llama's with biases on q_proj, k_proj and v_proj (grouped-query attention,
// tied or separate embeddings, RoPE base and RMSNorm eps from config.json), so the family runs
// Llama's one block definition (llama::block_forward) through Llama's trainer, decoders,
// compact form and checkpoint skeleton under its own name. What is Qwen2's own is its
// config.json keys, what it refuses and its directory read and written (hf.hpp), and its Model
// (here: its name and export, make_model, read_checkpoint).
//
//   lmshrink::models::llama::DenseModel m = lmshrink::models::qwen2::read_hf("Qwen2.5-0.5B");
//   std::unique_ptr<lmshrink::models::Model> teacher = lmshrink::models::qwen2::make_model(m);
//   lmshrink::models::qwen2::write_hf(m, "copy", lmshrink::Dtype::bf16);
//
// The registry (registry.hpp) recognises it by model_type "qwen2" and by checkpoints marked
// "qwen2/1".
#include <filesystem>
#include <memory>
#include <string>

#include "../../io/safetensors.hpp"
#include "../llama/model.hpp"
#include "hf.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {
namespace qwen2 {

/// A dense Qwen2 model exported for the model tier's apps: always a Hugging Face directory.
inline std::string export_dense(const lmshrink::models::llama::DenseModel& dense, const std::string& stem) {
  qwen2::write_hf(dense, stem + "_hf");
  return stem + "_hf";
}

/// Qwen2 as a variant of Llama's graph: its name and its export.
inline llama::Variant variant() { return {"qwen2", &export_dense}; }

/// A models::Model of family "qwen2" from a dense model.
inline std::unique_ptr<models::Model> make_model(const lmshrink::models::llama::DenseModel& m) {
  if (!m.config.qkv_bias)
    lmshrink::fail<lmshrink::value_error>("qwen2::make_model", "the model has no q/k/v biases; a "
                                          "Qwen2 model has them");
  return std::make_unique<llama::Model>(llama::Weights<float>::from_model(m), variant());
}

/// A checkpoint written by a Qwen2 Model's save ("lmshrink.checkpoint: qwen2/1").
inline std::unique_ptr<models::Model> read_checkpoint(const lmshrink::SafeTensors& st, const std::string& path) {
  llama::Weights<float> w = llama::read_checkpoint(st, path, "qwen2");
  if (!w.config.qkv_bias)
    lmshrink::fail<lmshrink::format_error>("qwen2::read_checkpoint", "'", path, "' has no 'qkv_bias: "
                                           "true' metadata; a Qwen2 checkpoint has q/k/v biases");
  return std::make_unique<llama::Model>(std::move(w), variant());
}

}  // namespace qwen2
}  // namespace models
LMSHRINK_NAMESPACE_END
