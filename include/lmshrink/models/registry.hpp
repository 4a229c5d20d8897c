#pragma once
// The registry: the one place that knows every family. A family is recognised from its file
// (a llama2.c checkpoint) or its config.json's model_type, then loaded; a checkpoint written by
// Model::save is recognised by its metadata; a model's tokenizer is found beside it.
//
//   auto teacher = lmshrink::models::load_model("stories260K.bin");   // or an HF directory
//   auto codec = lmshrink::models::load_codec(*teacher, path, "", defaults);
//   auto back = lmshrink::models::load_checkpoint("student.safetensors");
//
// Including it compiles every family (about 40 s): programs include it in one file.
#include <filesystem>
#include <string_view>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../files.hpp"
#include "../io/gpt2_tokenizer.hpp"
#include "../io/hf_checkpoint.hpp"
#include "../io/safetensors.hpp"
#include "../io/tokenizer.hpp"
#include "codecs.hpp"
#include "gpt2/model.hpp"
#include "hf.hpp"
#include "llama/llama2c.hpp"
#include "llama/model.hpp"
#include "model.hpp"
#include "qwen2/model.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {

/// The tokenizer files a program falls back to when neither --tokenizer nor the model's folder
/// gives one (lmshrink ships none; its examples pass their bundled files). Empty: no fallback.
struct CodecDefaults {
  std::string llama;                      ///< a llama2.c tokenizer file
  std::string gpt2_vocab, gpt2_merges;    ///< GPT-2's encoder.json/vocab.json and vocab.bpe/merges.txt
};

/// What convert_checkpoint read.
struct Converted {
  std::string from_format;  ///< "llama2.c", "llama", "qwen2" or "gpt2"
  std::int64_t parameters = 0;
};

namespace registry_detail {
/// The type of `path` without throwing: not_found when it does not exist, io_error naming the
/// path for anything else the system reports (a symlink loop, a name too long, no permission).
inline std::filesystem::file_type path_type(const char* where, const std::filesystem::path& path) {
  std::error_code ec;
  const std::filesystem::file_status st = std::filesystem::status(path, ec);
  if (ec && ec != std::errc::no_such_file_or_directory && ec != std::errc::not_a_directory)
    lmshrink::fail<lmshrink::io_error>(where, "cannot use '", path.string(), "' (", ec.message(), ")");
  return st.type();
}

inline bool is_directory_path(const char* where, const std::filesystem::path& path) {
  return path_type(where, path) == std::filesystem::file_type::directory;
}

/// GPT-2's two tokenizer files in `dir` under Hugging Face's or OpenAI's names, or "".
inline std::pair<std::string, std::string> gpt2_files_in(const std::string& dir) {
  for (const auto& [vocab, merges] : {std::pair<const char*, const char*>{"vocab.json", "merges.txt"},
                                      {"encoder.json", "vocab.bpe"}})
    if (path_type("load_codec", std::filesystem::path(dir) / vocab) == std::filesystem::file_type::regular &&
        path_type("load_codec", std::filesystem::path(dir) / merges) == std::filesystem::file_type::regular)
      return {(std::filesystem::path(dir) / vocab).string(), (std::filesystem::path(dir) / merges).string()};
  return {"", ""};
}

inline void check_vocab(const TextCodec& codec, const Model& model, const std::string& where) {
  if (codec.vocab_size() != model.shape().vocab_size)
    lmshrink::fail<lmshrink::format_error>("load_codec", "the tokenizer ", where, " has ",
                                                   codec.vocab_size(), " tokens but the model's vocabulary has ",
                                                   model.shape().vocab_size);
}

inline std::unique_ptr<Model> make_llama_model(const lmshrink::models::llama::DenseModel& m) {
  return std::make_unique<lmshrink::models::llama::Model>(lmshrink::models::llama::Weights<float>::from_model(m));
}
inline std::unique_ptr<Model> make_gpt2_model(const lmshrink::models::gpt2::DenseModel& m) {
  return std::make_unique<lmshrink::models::gpt2::Model>(lmshrink::models::gpt2::Weights<float>::from_model(m));
}

inline std::unique_ptr<Model> checkpoint_model(const lmshrink::SafeTensors& st, const std::string& path) {
  const auto it = st.metadata.find("lmshrink.checkpoint");
  const std::string kind = it == st.metadata.end() ? "" : it->second;
  if (kind == "llama/1") return std::make_unique<lmshrink::models::llama::Model>(lmshrink::models::llama::read_checkpoint(st, path));
  if (kind == "gpt2/1") return std::make_unique<lmshrink::models::gpt2::Model>(lmshrink::models::gpt2::read_checkpoint(st, path));
  if (kind == "qwen2/1") return lmshrink::models::qwen2::read_checkpoint(st, path);
  lmshrink::fail<lmshrink::format_error>("load_checkpoint", "'", path, "' has the metadata "
                                                 "'lmshrink.checkpoint: ", kind, "'; \"llama/1\", \"qwen2/1\" or "
                                                 "\"gpt2/1\" (a checkpoint written by Model::save) was expected");
}

[[noreturn]] inline void unknown_model_type(const char* where, const std::string& config, const std::string& type) {
  lmshrink::fail<lmshrink::format_error>(where, "'", config, "' ", type.empty() ? "has no model_type" : "has model_type '" + type + "'",
                                         "; \"llama\", \"qwen2\" or \"gpt2\" was expected");
}

}  // namespace registry_detail

/// A teacher from a path: a llama2.c file, or a Hugging Face directory whose config.json names
/// the family. lmshrink::error on anything else.
inline std::unique_ptr<Model> load_model(const std::string& path) {
  static constexpr const char* where = "load_model";
  if (!registry_detail::is_directory_path(where, path)) return registry_detail::make_llama_model(lmshrink::models::llama::read_llama2c(path));
  const std::string config = (std::filesystem::path(path) / "config.json").string();
  if (registry_detail::path_type(where, config) == std::filesystem::file_type::not_found)
    lmshrink::fail<lmshrink::io_error>(where, "'", path, "' is a directory without config.json; a "
                                               "llama2.c file or a Hugging Face checkpoint directory was expected");
  const std::string type = lmshrink::read_hf_model_type(config);
  if (type == "gpt2") return registry_detail::make_gpt2_model(lmshrink::models::gpt2::read_hf(path));
  if (type == "qwen2") return lmshrink::models::qwen2::make_model(lmshrink::models::qwen2::read_hf(path));
  if (type == "llama") return registry_detail::make_llama_model(lmshrink::models::llama::read_hf(path));
  registry_detail::unknown_model_type(where, config, type);
}

/// A checkpoint written by Model::save, of any family.
inline std::unique_ptr<Model> load_checkpoint(const std::string& path) {
  return registry_detail::checkpoint_model(lmshrink::read_safetensors(path), path);
}

/// The same from the file's bytes already in memory (`path` names it in messages).
inline std::unique_ptr<Model> load_checkpoint(const std::vector<char>& bytes, const std::string& path) {
  return registry_detail::checkpoint_model(lmshrink::parse_safetensors(bytes.data(), bytes.size(), path), path);
}

/// The tokenizer for `model`: `path` when given (a llama2.c tokenizer file, or a directory with
/// GPT-2's vocab.json + merges.txt or encoder.json + vocab.bpe), else the tokenizer files in the
/// model's directory, else `defaults`' file for its family. format_error when its vocabulary is
/// not the model's.
inline std::unique_ptr<TextCodec> load_codec(const Model& model, const std::string& model_path, const std::string& path,
                                             const CodecDefaults& defaults = {}) {
  std::unique_ptr<TextCodec> codec;
  std::string source = path;
  if (model.family() == "gpt2") {
    std::pair<std::string, std::string> files;
    if (!path.empty()) {
      files = registry_detail::is_directory_path("load_codec", path) ? registry_detail::gpt2_files_in(path) : std::pair<std::string, std::string>{"", ""};
      if (files.first.empty())
        lmshrink::fail<lmshrink::io_error>("load_codec", "'", path, "' is not a directory with GPT-2's "
                                                   "vocab.json + merges.txt (or encoder.json + vocab.bpe)");
    } else {
      files = registry_detail::gpt2_files_in(model_path);
      source = model_path;
      if (files.first.empty()) {
        if (defaults.gpt2_vocab.empty())
          lmshrink::fail<lmshrink::io_error>("load_codec", "'", model_path, "' holds no GPT-2 tokenizer files "
                                             "(vocab.json + merges.txt, or encoder.json + vocab.bpe) and no "
                                             "default was given");
        files = {defaults.gpt2_vocab, defaults.gpt2_merges};
        source = "the default GPT-2 tokenizer ('" + defaults.gpt2_vocab + "')";
      }
    }
    codec = std::make_unique<lmshrink::models::gpt2::Codec>(lmshrink::read_gpt2_tokenizer(files.first, files.second));
  } else if (model.family() == "qwen2" && source.empty()) {
    lmshrink::fail<lmshrink::io_error>("load_codec", "no tokenizer was given for the Qwen2 model '", model_path,
                                       "'; Qwen2's own tokenizer.json is not read yet: give a llama2.c "
                                       "tokenizer file of its vocabulary");
  } else {
    if (source.empty()) source = defaults.llama;
    if (source.empty())
      lmshrink::fail<lmshrink::io_error>("load_codec", "no tokenizer was given for the Llama model '", model_path,
                                         "' and no default");
    codec = std::make_unique<lmshrink::models::llama::Codec>(lmshrink::read_tokenizer(source, model.shape().vocab_size));
  }
  registry_detail::check_vocab(*codec, model, "'" + source + "'");
  return codec;
}

/// Reads `in` (a llama2.c file or a Hugging Face directory) and writes `out`: a llama2.c file
/// when `out` ends in ".bin" (Llama models only), else a Hugging Face directory with weights of
/// `dtype` ("f32", "f16" or "bf16"), in shards of at most `shard_bytes` when > 0.
inline Converted convert_checkpoint(const std::string& in, const std::string& out, const std::string& dtype_name,
                             std::int64_t shard_bytes) {
  static constexpr const char* where = "convert_checkpoint";
  lmshrink::Dtype dtype = lmshrink::Dtype::f32;
  if (dtype_name == "f16") dtype = lmshrink::Dtype::f16;
  else if (dtype_name == "bf16") dtype = lmshrink::Dtype::bf16;
  else if (dtype_name != "f32")
    lmshrink::fail<lmshrink::value_error>(where, "dtype '", dtype_name, "'; f32, f16 or bf16 was expected");
  const bool to_llama2c = out.size() >= 4 && out.compare(out.size() - 4, 4, ".bin") == 0;
  if (!registry_detail::is_directory_path(where, in)) {  // a llama2.c file
    const lmshrink::models::llama::DenseModel m = lmshrink::models::llama::read_llama2c(in);
    if (to_llama2c) lmshrink::models::llama::write_llama2c(m, out);
    else lmshrink::models::llama::write_hf(m, out, dtype, shard_bytes);
    return {"llama2.c", m.parameter_count()};
  }
  const std::string config_path = (std::filesystem::path(in) / "config.json").string();
  const std::string type = lmshrink::read_hf_model_type(config_path);
  if (type == "qwen2") {
    if (to_llama2c)
      lmshrink::fail<lmshrink::value_error>(where, "'", in, "' is a Qwen2 model; llama2.c files cannot hold "
                                                    "its q/k/v biases");
    const lmshrink::models::llama::DenseModel m = lmshrink::models::qwen2::read_hf(in);
    lmshrink::models::qwen2::write_hf(m, out, dtype, shard_bytes);
    return {"qwen2", m.parameter_count()};
  }
  if (type != "gpt2" && type != "llama") registry_detail::unknown_model_type(where, config_path, type);
  if (type == "gpt2") {
    if (to_llama2c)
      lmshrink::fail<lmshrink::value_error>(where, "'", in, "' is a GPT-2 model; llama2.c files hold "
                                                    "Llama models only");
    const lmshrink::models::gpt2::DenseModel m = lmshrink::models::gpt2::read_hf(in);
    lmshrink::models::gpt2::write_hf(m, out, dtype, shard_bytes);
    return {"gpt2", m.parameter_count()};
  }
  const lmshrink::models::llama::DenseModel m = lmshrink::models::llama::read_hf(in);
  if (to_llama2c) lmshrink::models::llama::write_llama2c(m, out);
  else lmshrink::models::llama::write_hf(m, out, dtype, shard_bytes);
  return {"llama", m.parameter_count()};
}

}  // namespace models
LMSHRINK_NAMESPACE_END
