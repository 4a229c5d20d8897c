#pragma once
// Checkpoint conversion between llama2.c files and Hugging Face directories, and between dtypes
// (lmshrink::models::convert_checkpoint, wrapped in models.cpp; lmshrink_convert is its command
// line). Declared apart from the registry so that a caller does not compile Eigen.
#include <cstdint>
#include <string>
#include <vector>

namespace examples {

struct Converted {
  std::string from_format;  // "llama2.c", "llama", "mistral", "qwen2" or "gpt2"
  std::int64_t parameters = 0;
  std::vector<std::string> companion_files;  // tokenizer and generation files copied along
};

/// Reads `in` (a llama2.c file or a Hugging Face directory) and writes `out`: a llama2.c file
/// when `out` ends in ".bin" (Llama models only), else a Hugging Face directory with weights of
/// `dtype` ("f32", "f16" or "bf16"), in shards of at most `shard_bytes` when > 0; from a
/// directory to a directory, with its tokenizer files.
Converted convert_checkpoint(const std::string& in, const std::string& out, const std::string& dtype,
                             std::int64_t shard_bytes);

}  // namespace examples
