#pragma once
// Hugging Face checkpoints: a directory with config.json and model.safetensors (or shards listed
// by model.safetensors.index.json), read without any lmshrink metadata, and written back in the
// same layout. Two families:
//
//  - "llama": model.embed_tokens, model.layers.{i}.input_layernorm, .self_attn.{q,k,v,o}_proj,
//    .post_attention_layernorm, .mlp.{gate,up,down}_proj, model.norm, lm_head (when not tied).
//    Weights are (out, in). Hugging Face applies RoPE to rotate-half pairs (i, i + hs/2) where
//    llama2.c uses adjacent pairs (2i, 2i + 1), so q_proj and k_proj rows are permuted within
//    each head (hf_rope_source); the reader undoes it and returns a Llama2cModel.
//  - "gpt2": [transformer.]wte, wpe, h.{i}.ln_1, .attn.c_attn, .attn.c_proj, .ln_2, .mlp.c_fc,
//    .mlp.c_proj, ln_f; the head is tied to wte. Linear weights are stored (in, out) (Conv1D);
//    the reader transposes them to lmshrink's (out, in) and returns a Gpt2Model.
//
// Weights may be F32, F16 or BF16 (F64 too). Every check is made before the model is returned:
// config values and supported features, every expected tensor present with its shape, no
// tensor left over (except the non-parameter buffers Hugging Face sometimes saves).
//
//   auto config = lmshrink::read_hf_config("gpt2/config.json");
//   if (config.model_type == "gpt2") auto model = lmshrink::read_hf_gpt2("gpt2");
//   lmshrink::write_hf_llama(llama_model, "out", lmshrink::Dtype::bf16);
//
// This header gathers the four that hold it: io/hf_config.hpp (config.json), io/hf_directory.hpp
// (tensors, shards, dtypes, atomic directory saves), io/hf_llama.hpp and io/hf_gpt2.hpp (each
// family's tensor names and conversions).

#include "hf_config.hpp"
#include "hf_directory.hpp"
#include "hf_gpt2.hpp"
#include "hf_llama.hpp"
