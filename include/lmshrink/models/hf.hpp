#pragma once
// Hugging Face directories of any family the model tier has, chosen by config.json's model_type:
// the config's keys as HfConfig (parse_hf_config, read_hf_config), config.json written back
// (hf_config_json, write_hf_directory) and a directory read whole (read_hf_directory). Each
// family's own keys and tensor names are in lmshrink/models/<family>/hf.hpp; this header includes
// only those, not the families' trainers (registry.hpp has the rest).
//
//   lmshrink::HfConfig c = lmshrink::models::read_hf_config("gpt2/config.json");  // model_type, sizes …
//   lmshrink::models::HfCheckpoint ck = lmshrink::models::read_hf_directory("gpt2");
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "../errors.hpp"
#include "../files.hpp"
#include "../io/hf_config.hpp"
#include "../io/hf_directory.hpp"
#include "../io/safetensors.hpp"
#include "gpt2/hf.hpp"
#include "llama/hf.hpp"
#include "mistral/hf.hpp"
#include "qwen2/hf.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {

/// config.json's text parsed by its family's reader (`source` names it in messages): the keys
/// lmshrink uses, as HfConfig. format_error for a missing or out-of-range value, a model_type no
/// family reads, or a feature its family does not implement.
inline lmshrink::HfConfig parse_hf_config(std::string_view text, const std::string& source) {
  const lmshrink::HfConfigFields r("read_hf_config", source, text);
  const std::string type = r.text("model_type", "");
  if (type == "llama") return llama::hf_config(r);
  if (type == "gpt2") return gpt2::hf_config(r);
  if (type == "qwen2") {
    lmshrink::HfConfig c = llama::hf_config_of(qwen2::config_from_hf(r));
    c.model_type = "qwen2";
    return c;
  }
  if (type == "mistral") {
    lmshrink::HfConfig c = llama::hf_config_of(mistral::config_from_hf(r));
    c.model_type = "mistral";
    return c;
  }
  if (type.empty()) r.bad("the key 'model_type' is missing; \"llama\", \"mistral\", \"qwen2\" or \"gpt2\" was expected");
  r.bad("model_type '", type, "' is not supported; \"llama\", \"mistral\", \"qwen2\" or \"gpt2\" was expected");
}

inline lmshrink::HfConfig read_hf_config(const std::string& path) {
  const std::vector<char> bytes = lmshrink::read_file_bytes(
      "read_hf_config", path, 2, "a JSON object", std::int64_t(1) << 20,
      "more than the 1 MiB a config.json may have");
  return parse_hf_config(std::string_view(bytes.data(), bytes.size()), path);
}

/// config.json for `c`, as its family writes it.
inline std::string hf_config_json(const lmshrink::HfConfig& c) {
  if (c.model_type == "llama") return llama::config_json(c, "LlamaForCausalLM");
  if (c.model_type == "gpt2") return gpt2::config_json(c);
  if (c.model_type == "qwen2") {
    lmshrink::models::llama::Config q = llama::config_from(c);
    q.qkv_bias = true;
    return qwen2::config_json(q);
  }
  if (c.model_type == "mistral") return mistral::config_json(llama::config_from(c));
  lmshrink::fail<lmshrink::value_error>("hf_config_json", "model_type '", c.model_type, "'; \"llama\", "
                                        "\"mistral\", \"qwen2\" or \"gpt2\" was expected");
}

/// Writes a directory (io/hf_directory.hpp) with config.json made from `config` (refused before
/// anything is written when no family writes it).
inline void write_hf_directory(const lmshrink::HfConfig& config, const lmshrink::SafeTensors& st,
                               const std::string& dir, std::int64_t max_shard_bytes = 0) {
  lmshrink::write_hf_directory(hf_config_json(config), st, dir, max_shard_bytes);
}

/// A checkpoint directory's config and tensors, of any family, read from one version of the
/// directory even when a save replaces it meanwhile.
struct HfCheckpoint {
  lmshrink::HfConfig config;
  lmshrink::SafeTensors tensors;
};

inline HfCheckpoint read_hf_directory(const std::string& dir) {
  return lmshrink::read_directory_consistently("read_hf", dir, [](const std::string& path) {
    HfCheckpoint c;
    c.config = read_hf_config((std::filesystem::path(path) / "config.json").string());
    c.tensors = lmshrink::read_hf_tensors(path);
    return c;
  });
}

}  // namespace models
LMSHRINK_NAMESPACE_END
