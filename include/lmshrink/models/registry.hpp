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
#include <tuple>
#include <utility>
#include <vector>

#include "../files.hpp"
#include "../io/gpt2_tokenizer.hpp"
#include "../io/hf_checkpoint.hpp"
#include "../io/hf_config.hpp"
#include "../io/hf_tokenizer.hpp"
#include "../io/sentencepiece.hpp"
#include "../io/safetensors.hpp"
#include "../io/tokenizer.hpp"
#include "codecs.hpp"
#include "gpt2/model.hpp"
#include "hf.hpp"
#include "llama/llama2c.hpp"
#include "llama/model.hpp"
#include "model.hpp"
#include "mistral/model.hpp"
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
  std::string from_format;  ///< "llama2.c", "llama", "mistral", "qwen2" or "gpt2"
  std::int64_t parameters = 0;
  std::vector<std::string> companion_files;  ///< tokenizer and generation files copied along
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

/// Whether a model of `model_vocab` ids with a tokenizer of `tokens` is a padded vocabulary: a
/// few unused rows past the tokenizer's ids (fewer than 1024 and 5 % of them; Qwen2-0.5B has
/// 271, GPT-2 at 50,304 has 47), not another tokenizer.
inline bool padded_vocabulary(int tokens, int model_vocab) {
  return model_vocab > tokens && model_vocab - tokens < 1024 && std::int64_t(model_vocab - tokens) * 20 < tokens;
}

inline void check_vocab_size(int tokens, int model_vocab, const std::string& where) {
  if (tokens != model_vocab && !padded_vocabulary(tokens, model_vocab))
    lmshrink::fail<lmshrink::format_error>("load_codec", "the tokenizer ", where, " has ", tokens,
                                           " tokens but the model's vocabulary has ", model_vocab,
                                           "; give --tokenizer the model's own tokenizer (tokenizer.model, a "
                                           "llama2.c tokenizer file, or GPT-2's vocab.json + merges.txt)");
}

inline bool ends_with(const std::string& s, const char* suffix) {
  const std::size_t n = std::char_traits<char>::length(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

/// The tokenizer files a directory holds ("" for each one absent).
struct TokenizerFiles {
  std::string sentencepiece;          // tokenizer.model
  std::string hf_json;                // tokenizer.json
  std::string gpt2_vocab, gpt2_merges;
  bool any() const { return !sentencepiece.empty() || !hf_json.empty() || !gpt2_vocab.empty(); }
  std::string listing() const {
    std::string out;
    for (const std::string* f : {&sentencepiece, &hf_json, &gpt2_vocab, &gpt2_merges})
      if (!f->empty()) out += (out.empty() ? "" : ", ") + std::filesystem::path(*f).filename().string();
    return out;
  }
};

inline TokenizerFiles tokenizer_files_in(const std::string& dir) {
  TokenizerFiles files;
  const auto regular = [&](const char* name) {
    const std::filesystem::path p = std::filesystem::path(dir) / name;
    return path_type("load_codec", p) == std::filesystem::file_type::regular ? p.string() : std::string();
  };
  files.sentencepiece = regular("tokenizer.model");
  files.hf_json = regular("tokenizer.json");
  std::tie(files.gpt2_vocab, files.gpt2_merges) = gpt2_files_in(dir);
  return files;
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
  if (kind == "mistral/1") return lmshrink::models::mistral::read_checkpoint(st, path);
  lmshrink::fail<lmshrink::format_error>("load_checkpoint", "'", path, "' has the metadata "
                                                 "'lmshrink.checkpoint: ", kind, "'; \"llama/1\", \"qwen2/1\", \"mistral/1\" or "
                                                 "\"gpt2/1\" (a checkpoint written by Model::save) was expected");
}

[[noreturn]] inline void unknown_model_type(const char* where, const std::string& config, const std::string& type) {
  lmshrink::fail<lmshrink::format_error>(where, "'", config, "' ", type.empty() ? "has no model_type" : "has model_type '" + type + "'",
                                         "; \"llama\", \"mistral\", \"qwen2\" or \"gpt2\" was expected");
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
  if (type == "mistral") return lmshrink::models::mistral::make_model(lmshrink::models::mistral::read_hf(path));
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

/// The tokenizer for `model`, from the first of:
///  - `path`: a tokenizer file (tokenizer.json for a name ending in ".json", SentencePiece's
///    tokenizer.model for ".model", else llama2.c's tokenizer.bin) or a directory holding them;
///  - the model's own directory, when it is one (a Hugging Face checkpoint);
///  - `defaults`' files for its family, when the model is a file (llama2.c, or a checkpoint
///    written by Model::save) or its directory holds no tokenizer files at all; the codec's
///    description says so.
/// A directory is read for tokenizer.model (the Llama family first), vocab.json + merges.txt /
/// encoder.json + vocab.bpe (GPT-2 first), then tokenizer.json (lmshrink/io/hf_tokenizer.hpp);
/// a directory with other files only is an io_error naming what is there and what would do;
/// format_error when the vocabulary is not the model's (a tokenizer.json may have fewer ids than
/// a padded embedding). A story starts with BOS (the config's bos_token_id first, then the
/// tokenizer's) and ends with the config's or tokenizer's EOS for a Hugging Face model, with the
/// next BOS for llama2.c files and checkpoints (run.c's convention, which stories260K was
/// trained with); with tokenizer.json and no ids in the config, <|endoftext|> does both.
namespace registry_detail {
inline std::unique_ptr<TextCodec> load_codec_of_size(const Model& model, const std::string& model_path,
                                                     const std::string& path, const CodecDefaults& defaults);
}  // namespace registry_detail

inline std::unique_ptr<TextCodec> load_codec(const Model& model, const std::string& model_path, const std::string& path,
                                             const CodecDefaults& defaults = {}) {
  std::unique_ptr<TextCodec> codec = registry_detail::load_codec_of_size(model, model_path, path, defaults);
  const int vocab = model.shape().vocab_size;
  if (codec->vocab_size() < vocab) return std::make_unique<PaddedCodec>(std::move(codec), vocab);
  return codec;
}

namespace registry_detail {
/// load_codec's tokenizer, of its own size (≤ the model's when padded).
inline std::unique_ptr<TextCodec> load_codec_of_size(const Model& model, const std::string& model_path,
                                                     const std::string& path, const CodecDefaults& defaults) {
  static constexpr const char* where = "load_codec";
  const bool gpt2 = model.family() == "gpt2";
  const int vocab = model.shape().vocab_size;
  const bool hf_model = is_directory_path(where, model_path);
  std::vector<int> config_bos, config_eos;
  if (hf_model) {
    const auto config = lmshrink::HfConfigFields::read(where, (std::filesystem::path(model_path) / "config.json").string());
    config_bos = config.token_ids("bos_token_id", vocab);
    config_eos = config.token_ids("eos_token_id", vocab);
  }
  const auto sentencepiece = [&](const std::string& file, const std::string& why) -> std::unique_ptr<TextCodec> {
    lmshrink::SentencePieceTokenizer tok = lmshrink::read_sentencepiece(file);
    check_vocab_size(tok.vocab_size(), vocab, "'" + file + "'");
    const int start = config_bos.empty() ? tok.bos_id() : config_bos.front();
    const int end = !hf_model ? start : !config_eos.empty() ? config_eos.front() : tok.eos_id();
    std::string text = "SentencePiece '" + file + "' (" + std::to_string(tok.vocab_size()) + " pieces, BOS " +
                       std::to_string(start) + ", story end " + std::to_string(end) + ")" + why;
    return std::make_unique<lmshrink::models::llama::SentencePieceCodec>(std::move(tok), start, end, std::move(text));
  };
  const auto llama2c = [&](const std::string& file, const std::string& why) -> std::unique_ptr<TextCodec> {
    lmshrink::Tokenizer tok = lmshrink::read_tokenizer(file);
    check_vocab_size(tok.vocab_size(), vocab, "'" + file + "'");
    const int end = hf_model && !config_eos.empty() ? config_eos.front() : lmshrink::Tokenizer::kBos;
    return std::make_unique<lmshrink::models::llama::Codec>(
        std::move(tok), "llama2.c tokenizer '" + file + "' (" + std::to_string(vocab) + " tokens)" + why, end);
  };
  const auto hf_json = [&](const std::string& file) -> std::unique_ptr<TextCodec> {
    lmshrink::HfTokenizer tok = lmshrink::read_hf_tokenizer(file);
    check_vocab_size(tok.vocab_size(), vocab, "'" + file + "'");
    int start = config_bos.empty() ? -1 : config_bos.front();
    int end = config_eos.empty() ? -1 : config_eos.front();
    if (gpt2 || (start < 0 && end < 0)) {  // GPT-2's convention: <|endoftext|> between texts
      const int eot = tok.find("<|endoftext|>");
      if (start < 0) start = eot;
      if (end < 0) end = eot;
    }
    if (start < 0) start = end;
    if (end < 0) end = start;
    if (start < 0)
      lmshrink::fail<lmshrink::format_error>(where, "'", model_path, "/config.json' gives no bos_token_id or "
                                             "eos_token_id and '", file, "' has no <|endoftext|>: a story needs a start token");
    std::string text = "Hugging Face tokenizer.json '" + file + "' (" + std::to_string(tok.vocab_size()) +
                       " ids, story start " + std::to_string(start) + ", end " + std::to_string(end) + ")";
    return std::make_unique<lmshrink::models::HfCodec>(std::move(tok), start, end, std::move(text));
  };
  const auto gpt2_codec = [&](const std::string& vocab_file, const std::string& merges, const std::string& why) -> std::unique_ptr<TextCodec> {
    auto codec = std::make_unique<lmshrink::models::gpt2::Codec>(
        lmshrink::read_gpt2_tokenizer(vocab_file, merges), "GPT-2 BPE '" + vocab_file + "' + '" + merges + "'" + why);
    check_vocab_size(codec->vocab_size(), vocab, "'" + vocab_file + "'");
    return codec;
  };
  // 1. A tokenizer given by the caller.
  if (!path.empty() && !is_directory_path(where, path)) {
    if (ends_with(path, ".json")) return hf_json(path);
    if (gpt2)
      lmshrink::fail<lmshrink::io_error>(where, "'", path, "' is neither tokenizer.json nor a directory with GPT-2's "
                                         "vocab.json + merges.txt (or encoder.json + vocab.bpe)");
    return ends_with(path, ".model") ? sentencepiece(path, "") : llama2c(path, "");
  }
  // 2. A directory's tokenizer files: the caller's, or the model's own.
  if (!path.empty() || hf_model) {
    const std::string dir = path.empty() ? model_path : path;
    const TokenizerFiles files = tokenizer_files_in(dir);
    if (gpt2 && !files.gpt2_vocab.empty()) return gpt2_codec(files.gpt2_vocab, files.gpt2_merges, "");
    if (!gpt2 && !files.sentencepiece.empty()) return sentencepiece(files.sentencepiece, "");
    if (!files.hf_json.empty()) return hf_json(files.hf_json);
    const std::string wanted = gpt2 ? "vocab.json + merges.txt (or encoder.json + vocab.bpe, or tokenizer.json)"
                                    : "tokenizer.model or tokenizer.json";
    if (files.any() || !path.empty())
      lmshrink::fail<lmshrink::io_error>(where, "'", dir, "' holds ", files.any() ? files.listing() : "no tokenizer files",
                                         " but a ", model.family(), " model needs ", wanted);
  }
  // 3. The family's default.
  const std::string why = hf_model ? ", the default: '" + model_path + "' holds no tokenizer files" : ", the default";
  if (gpt2) {
    if (defaults.gpt2_vocab.empty())
      lmshrink::fail<lmshrink::io_error>(where, "no tokenizer was given for the GPT-2 model '", model_path,
                                         "' and there is no default: give a directory with vocab.json + merges.txt");
    return gpt2_codec(defaults.gpt2_vocab, defaults.gpt2_merges, why);
  }
  if (defaults.llama.empty())
    lmshrink::fail<lmshrink::io_error>(where, "no tokenizer was given for the ", model.family(), " model '", model_path,
                                       "' and there is no default: give a tokenizer.model or a llama2.c tokenizer file");
  return ends_with(defaults.llama, ".model") ? sentencepiece(defaults.llama, why) : llama2c(defaults.llama, why);
}
}  // namespace registry_detail

namespace registry_detail {
/// convert_checkpoint's weights and config (below).
inline Converted convert_weights(const std::string& in, const std::string& out, const std::string& dtype_name,
                                 std::int64_t shard_bytes) {
  static constexpr const char* where = "convert_checkpoint";
  lmshrink::Dtype dtype = lmshrink::Dtype::f32;
  if (dtype_name == "f16") dtype = lmshrink::Dtype::f16;
  else if (dtype_name == "bf16") dtype = lmshrink::Dtype::bf16;
  else if (dtype_name != "f32")
    lmshrink::fail<lmshrink::value_error>(where, "dtype '", dtype_name, "'; f32, f16 or bf16 was expected");
  const bool to_llama2c = out.size() >= 4 && out.compare(out.size() - 4, 4, ".bin") == 0;
  if (!is_directory_path(where, in)) {  // a llama2.c file
    const lmshrink::models::llama::DenseModel m = lmshrink::models::llama::read_llama2c(in);
    if (to_llama2c) lmshrink::models::llama::write_llama2c(m, out);
    else lmshrink::models::llama::write_hf(m, out, dtype, shard_bytes);
    return {"llama2.c", m.parameter_count(), {}};
  }
  const std::string config_path = (std::filesystem::path(in) / "config.json").string();
  const std::string type = lmshrink::read_hf_model_type(config_path);
  if (type == "qwen2") {
    if (to_llama2c)
      lmshrink::fail<lmshrink::value_error>(where, "'", in, "' is a Qwen2 model; llama2.c files cannot hold "
                                                    "its q/k/v biases");
    const lmshrink::models::llama::DenseModel m = lmshrink::models::qwen2::read_hf(in);
    lmshrink::models::qwen2::write_hf(m, out, dtype, shard_bytes);
    return {"qwen2", m.parameter_count(), {}};
  }
  if (type == "mistral") {
    if (to_llama2c)
      lmshrink::fail<lmshrink::value_error>(where, "'", in, "' is a Mistral model; convert it to a Hugging Face "
                                                    "directory (a llama2.c file holds model_type \"llama\")");
    const lmshrink::models::llama::DenseModel m = lmshrink::models::mistral::read_hf(in);
    lmshrink::models::mistral::write_hf(m, out, dtype, shard_bytes);
    return {"mistral", m.parameter_count(), {}};
  }
  if (type != "gpt2" && type != "llama") registry_detail::unknown_model_type(where, config_path, type);
  if (type == "gpt2") {
    if (to_llama2c)
      lmshrink::fail<lmshrink::value_error>(where, "'", in, "' is a GPT-2 model; llama2.c files hold "
                                                    "Llama models only");
    const lmshrink::models::gpt2::DenseModel m = lmshrink::models::gpt2::read_hf(in);
    lmshrink::models::gpt2::write_hf(m, out, dtype, shard_bytes);
    return {"gpt2", m.parameter_count(), {}};
  }
  const lmshrink::models::llama::DenseModel m = lmshrink::models::llama::read_hf(in);
  if (to_llama2c) lmshrink::models::llama::write_llama2c(m, out);
  else lmshrink::models::llama::write_hf(m, out, dtype, shard_bytes);
  return {"llama", m.parameter_count(), {}};
}
}  // namespace registry_detail

/// Reads `in` (a llama2.c file or a Hugging Face directory) and writes `out`: a llama2.c file
/// when `out` ends in ".bin" (Llama models only), else a Hugging Face directory with weights of
/// `dtype` ("f32", "f16" or "bf16"), in shards of at most `shard_bytes` when > 0. From directory to
/// directory, the tokenizer and generation files go along (io/hf_directory.hpp's
/// kHfCompanionFiles).
inline Converted convert_checkpoint(const std::string& in, const std::string& out, const std::string& dtype_name,
                                    std::int64_t shard_bytes) {
  Converted c = registry_detail::convert_weights(in, out, dtype_name, shard_bytes);
  if (registry_detail::is_directory_path("convert_checkpoint", in) && registry_detail::is_directory_path("convert_checkpoint", out))
    c.companion_files = lmshrink::copy_hf_companion_files(in, out);
  return c;
}

}  // namespace models
LMSHRINK_NAMESPACE_END
