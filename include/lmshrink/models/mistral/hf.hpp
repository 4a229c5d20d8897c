#pragma once
// Hugging Face "mistral" directories: Llama's tensors and block (llama/hf.hpp) under
// MistralConfig's keys. Mistral's one difference, sliding-window attention, changes nothing
// while the positions used fit in the window: a window below max_position_embeddings (Mistral
// 7B v0.1: 4096 of 32768) becomes the model's context, so that no position past it is ever
// attended (a --context beyond it is refused as beyond the context). A null window (v0.2 on)
// leaves the full context.
//
//   lmshrink::models::llama::DenseModel m = lmshrink::models::mistral::read_hf("Mistral-7B-v0.1");
//   lmshrink::models::mistral::write_hf(m, "copy", lmshrink::Dtype::bf16);
#include <algorithm>
#include <cstdint>
#include <string>

#include "../../files.hpp"
#include "../../io/hf_config.hpp"
#include "../../io/hf_directory.hpp"
#include "../../io/safetensors.hpp"
#include "../llama/dense.hpp"
#include "../llama/hf.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {
namespace mistral {

/// The model config.json describes; format_error for another model_type, a missing or
/// out-of-range key, or what lmshrink does not implement (as for Llama). The context is
/// min(max_position_embeddings, sliding_window).
inline lmshrink::models::llama::Config config_from_hf(const lmshrink::HfConfigFields& r) {
  const std::string type = r.text("model_type", "");
  if (type != "mistral") r.bad("model_type is '", type, "'; \"mistral\" was expected");
  lmshrink::models::llama::Config c =
      lmshrink::models::llama::config_from(lmshrink::models::llama::hf_config_keys(r, "mistral"));
  if (r.present("sliding_window")) c.seq_len = std::min(c.seq_len, r.integer("sliding_window", 1, 1 << 24));
  return c;
}

/// config.json for `c`, with the keys MistralConfig writes (no sliding window: the context is
/// already within it); `dtype` is the weights' (torch_dtype).
inline std::string config_json(const lmshrink::models::llama::Config& c, lmshrink::Dtype dtype = lmshrink::Dtype::f32) {
  if (c.qkv_bias)
    lmshrink::fail<lmshrink::value_error>("mistral::config_json", "the model has q/k/v biases, which a "
                                          "Mistral config cannot express; write it as \"qwen2\"");
  lmshrink::HfConfig h = llama::hf_config_of(c);
  h.model_type = "mistral";
  const char* torch_dtype = lmshrink::torch_dtype_name(dtype);
  return lmshrink::models::llama::config_json(h, "MistralForCausalLM", {{"sliding_window", "null"}}, torch_dtype);
}

/// Reads a Mistral checkpoint directory (config.json + model.safetensors or shards).
inline lmshrink::models::llama::DenseModel read_hf(const std::string& dir) {
  return lmshrink::read_hf_model("mistral::read_hf", "mistral", dir, [&](const lmshrink::HfConfigFields& fields,
                                                                          const lmshrink::SafeTensors& tensors) {
    return lmshrink::models::llama::tensors_from_hf(config_from_hf(fields), tensors, dir, "mistral::read_hf");
  });
}

/// Writes `m` as a Mistral directory, weights as `dtype`, in shards of at most `max_shard_bytes`
/// when > 0; atomically, keeping other files of the directory (a tokenizer).
inline void write_hf(const lmshrink::models::llama::DenseModel& m, const std::string& dir,
                     lmshrink::Dtype dtype = lmshrink::Dtype::f32, std::int64_t max_shard_bytes = 0) {
  lmshrink::write_hf_directory(config_json(m.config, dtype), lmshrink::models::llama::to_hf(m, dtype), dir,
                               max_shard_bytes);
}

}  // namespace mistral
}  // namespace models
LMSHRINK_NAMESPACE_END
