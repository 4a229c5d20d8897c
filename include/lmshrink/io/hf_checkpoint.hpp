#pragma once
// Hugging Face checkpoints, whatever the family: a directory with config.json and model.safetensors
// (or shards listed by model.safetensors.index.json), read without any lmshrink metadata and
// written back in the same layout. This header gathers the two that hold it: io/hf_config.hpp
// (config.json's keys, typed and bounded) and io/hf_directory.hpp (tensors, shards, dtypes,
// atomic directory saves). What each family's keys and tensors are is the model tier's
// (lmshrink/models/llama/hf.hpp, gpt2/hf.hpp, qwen2/hf.hpp); lmshrink/models/hf.hpp
// reads any of them by model_type.
//
//   std::string type = lmshrink::read_hf_model_type("gpt2/config.json");          // "gpt2"
//   lmshrink::SafeTensors tensors = lmshrink::read_hf_tensors("gpt2");             // shards joined
//   lmshrink::write_hf_directory(config_json_text, tensors, "out", 2 << 30);     // replaced whole

#include "hf_config.hpp"
#include "hf_directory.hpp"
