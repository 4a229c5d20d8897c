#pragma once
// The Qwen2 family: Hugging Face "qwen2" directories (Qwen2, Qwen2.5 and their fine-tunes).
// Qwen2's block is Llama's with biases on q_proj, k_proj and v_proj (grouped-query attention,
// tied or separate embeddings, RoPE base and RMSNorm eps from config.json), so the family runs
// Llama's one block definition (llama::block_forward) through Llama's trainer, decoders,
// compact form and checkpoint skeleton under its own name. What is Qwen2's own is here: its
// config.json keys and what it refuses, its directory read and written, and its Model.
//
//   lmshrink::Llama2cModel m = lmshrink::models::qwen2::read_hf("Qwen2.5-0.5B");
//   std::unique_ptr<lmshrink::models::Model> teacher = lmshrink::models::qwen2::make_model(m);
//   lmshrink::models::qwen2::write_hf(m, "copy", lmshrink::Dtype::bf16);
//
// The registry (registry.hpp) recognises it by model_type "qwen2" and by checkpoints marked
// "qwen2/1".
#include <filesystem>
#include <memory>
#include <string>

#include "../../files.hpp"
#include "../../io/hf_config.hpp"
#include "../../io/hf_directory.hpp"
#include "../../io/hf_llama.hpp"
#include "../../io/llama2c.hpp"
#include "../../io/safetensors.hpp"
#include "../llama/model.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {
namespace qwen2 {

/// The model config.json describes; format_error for another model_type, a missing or
/// out-of-range key, or what lmshrink does not implement (sliding-window attention, RoPE
/// scaling, an activation other than silu, a head_dim other than hidden_size / heads).
inline lmshrink::Llama2cConfig config_from_hf(const lmshrink::HfConfigFields& r) {
  const std::string type = r.text("model_type", "");
  if (type != "qwen2") r.bad("model_type is '", type, "'; \"qwen2\" was expected");
  // Qwen2Config's own default for an absent num_key_value_heads is 32, not the head count:
  // every real config states it, so it is required rather than guessed.
  r.integer("num_key_value_heads", 1, 1 << 12);
  lmshrink::Llama2cConfig c = lmshrink::llama_config_from(lmshrink::llama_shaped_hf_config(r, "qwen2"));
  r.unsupported_unless_false("use_sliding_window", "sliding-window attention");
  c.qkv_bias = true;
  return c;
}

/// config.json for `c`, with the keys Qwen2Config writes; `dtype` is the weights' (torch_dtype).
inline std::string config_json(const lmshrink::Llama2cConfig& c, lmshrink::Dtype dtype = lmshrink::Dtype::f32) {
  if (!c.qkv_bias)
    lmshrink::fail<lmshrink::value_error>("qwen2::config_json", "the model has no q/k/v biases; a "
                                          "Qwen2 model has them (write it as \"llama\")");
  lmshrink::HfConfig h = lmshrink::hf_config_of(c);
  h.model_type = "qwen2";
  const char* torch_dtype = dtype == lmshrink::Dtype::bf16 ? "bfloat16" : dtype == lmshrink::Dtype::f16 ? "float16" : "float32";
  return lmshrink::llama_shaped_hf_config_json(h, "Qwen2ForCausalLM", {{"use_sliding_window", "false"}}, torch_dtype);
}

/// Reads a Qwen2 checkpoint directory (config.json + model.safetensors or shards), from one
/// version of it even while a save replaces it.
inline lmshrink::Llama2cModel read_hf(const std::string& dir) {
  static constexpr const char* where = "qwen2::read_hf";
  return lmshrink::read_directory_consistently(where, dir, [&](const std::string& path) {
    const auto fields = lmshrink::HfConfigFields::read(where, (std::filesystem::path(path) / "config.json").string());
    const lmshrink::Llama2cConfig c = config_from_hf(fields);
    return lmshrink::llama_tensors_from_hf(c, lmshrink::read_hf_tensors(path), dir, where);
  });
}

/// Writes `m` (with q/k/v biases) as a Qwen2 directory, weights as `dtype`, in shards of at most
/// `max_shard_bytes` when > 0; atomically, keeping other files of the directory (a tokenizer).
inline void write_hf(const lmshrink::Llama2cModel& m, const std::string& dir,
                     lmshrink::Dtype dtype = lmshrink::Dtype::f32, std::int64_t max_shard_bytes = 0) {
  lmshrink::write_hf_directory(config_json(m.config, dtype), lmshrink::llama_to_hf(m, dtype), dir,
                               max_shard_bytes);
}

/// A dense Qwen2 model exported for the model tier's apps: always a Hugging Face directory.
inline std::string export_dense(const lmshrink::Llama2cModel& dense, const std::string& stem) {
  write_hf(dense, stem + "_hf");
  return stem + "_hf";
}

/// Qwen2 as a variant of Llama's graph: its name and its export.
inline llama::Variant variant() { return {"qwen2", &export_dense}; }

/// A models::Model of family "qwen2" from a dense model.
inline std::unique_ptr<models::Model> make_model(const lmshrink::Llama2cModel& m) {
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
