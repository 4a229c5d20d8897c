#pragma once
// Hugging Face "qwen2" directories: Llama's tensors (llama/hf.hpp) plus self_attn.{q,k,v}_proj.bias,
// and Qwen2Config's keys, read with what lmshrink does not implement refused, and written back.
//
//   lmshrink::models::llama::DenseModel m = lmshrink::models::qwen2::read_hf("Qwen2.5-0.5B");
//   lmshrink::models::qwen2::write_hf(m, "copy", lmshrink::Dtype::bf16);   // "torch_dtype": "bfloat16"
#include <cstdint>
#include <filesystem>
#include <string>

#include "../../files.hpp"
#include "../../io/hf_config.hpp"
#include "../../io/hf_directory.hpp"
#include "../../io/safetensors.hpp"
#include "../llama/dense.hpp"
#include "../llama/hf.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {
namespace qwen2 {

/// The model config.json describes; format_error for another model_type, a missing or
/// out-of-range key, or what lmshrink does not implement (sliding-window attention, RoPE
/// scaling, an activation other than silu, a head_dim other than hidden_size / heads).
inline lmshrink::models::llama::Config config_from_hf(const lmshrink::HfConfigFields& r) {
  const std::string type = r.text("model_type", "");
  if (type != "qwen2") r.bad("model_type is '", type, "'; \"qwen2\" was expected");
  // Qwen2Config's own default for an absent num_key_value_heads is 32, not the head count:
  // every real config states it, so it is required rather than guessed.
  r.integer("num_key_value_heads", 1, 1 << 12);
  lmshrink::models::llama::Config c = lmshrink::models::llama::config_from(lmshrink::models::llama::hf_config_keys(r, "qwen2"));
  r.unsupported_unless_false("use_sliding_window", "sliding-window attention");
  c.qkv_bias = true;
  return c;
}

/// config.json for `c`, with the keys Qwen2Config writes; `dtype` is the weights' (torch_dtype).
inline std::string config_json(const lmshrink::models::llama::Config& c, lmshrink::Dtype dtype = lmshrink::Dtype::f32) {
  if (!c.qkv_bias)
    lmshrink::fail<lmshrink::value_error>("qwen2::config_json", "the model has no q/k/v biases; a "
                                          "Qwen2 model has them (write it as \"llama\")");
  lmshrink::HfConfig h = llama::hf_config_of(c);
  h.model_type = "qwen2";
  const char* torch_dtype = lmshrink::torch_dtype_name(dtype);
  return lmshrink::models::llama::config_json(h, "Qwen2ForCausalLM", {{"use_sliding_window", "false"}}, torch_dtype);
}

/// Reads a Qwen2 checkpoint directory (config.json + model.safetensors or shards), from one
/// version of it even while a save replaces it.
inline lmshrink::models::llama::DenseModel read_hf(const std::string& dir) {
  return lmshrink::read_hf_model("qwen2::read_hf", "qwen2", dir, [&](const lmshrink::HfConfigFields& fields,
                                                                      const lmshrink::SafeTensors& tensors) {
    return lmshrink::models::llama::tensors_from_hf(config_from_hf(fields), tensors, dir, "qwen2::read_hf");
  });
}

/// Writes `m` (with q/k/v biases) as a Qwen2 directory, weights as `dtype`, in shards of at most
/// `max_shard_bytes` when > 0; atomically, keeping other files of the directory (a tokenizer).
inline void write_hf(const lmshrink::models::llama::DenseModel& m, const std::string& dir,
                     lmshrink::Dtype dtype = lmshrink::Dtype::f32, std::int64_t max_shard_bytes = 0) {
  lmshrink::write_hf_directory(config_json(m.config, dtype), lmshrink::models::llama::to_hf(m, dtype), dir,
                               max_shard_bytes);
}

}  // namespace qwen2
}  // namespace models
LMSHRINK_NAMESPACE_END
