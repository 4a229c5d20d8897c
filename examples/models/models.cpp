// The one place that knows every family: loading a teacher, a checkpoint, and a tokenizer. The
// families are header-only and compiled here, once (one file: they share CompactLinear's and
// the trainers' heavy instances).
#include <filesystem>
#include <lmshrink/io/gpt2_tokenizer.hpp>
#include <lmshrink/io/hf_checkpoint.hpp>
#include <lmshrink/io/llama2c.hpp>
#include <lmshrink/io/safetensors.hpp>
#include <lmshrink/io/tokenizer.hpp>

#include <lmshrink/models/codecs.hpp>
#include <lmshrink/models/gpt2/model.hpp>
#include <lmshrink/models/llama/model.hpp>

#include "convert.hpp"
#include "registry.hpp"

#ifndef LMSHRINK_DATA_DIR
#define LMSHRINK_DATA_DIR "examples/data"
#endif

namespace examples {
namespace {

namespace fs = std::filesystem;

/// GPT-2's two tokenizer files in `dir` under Hugging Face's or OpenAI's names, or "".
/// The type of `path` without throwing: not_found when it does not exist, io_error naming the
/// path for anything else the system reports (a symlink loop, a name too long, no permission).
fs::file_type path_type(const char* where, const fs::path& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec && ec != std::errc::no_such_file_or_directory && ec != std::errc::not_a_directory)
    lmshrink::fail<lmshrink::io_error>(where, "cannot use '", path.string(), "' (", ec.message(), ")");
  return st.type();
}

bool is_directory_path(const char* where, const fs::path& path) {
  return path_type(where, path) == fs::file_type::directory;
}

std::pair<std::string, std::string> gpt2_files_in(const std::string& dir) {
  for (const auto& [vocab, merges] : {std::pair<const char*, const char*>{"vocab.json", "merges.txt"},
                                      {"encoder.json", "vocab.bpe"}})
    if (path_type("load_codec", fs::path(dir) / vocab) == fs::file_type::regular &&
        path_type("load_codec", fs::path(dir) / merges) == fs::file_type::regular)
      return {(fs::path(dir) / vocab).string(), (fs::path(dir) / merges).string()};
  return {"", ""};
}

void check_vocab(const TextCodec& codec, const Model& model, const std::string& where) {
  if (codec.vocab_size() != model.shape().vocab_size)
    lmshrink::fail<lmshrink::format_error>("load_codec", "the tokenizer ", where, " has ",
                                                   codec.vocab_size(), " tokens but the model's vocabulary has ",
                                                   model.shape().vocab_size);
}

}  // namespace

namespace {

std::unique_ptr<Model> make_llama_model(const lmshrink::Llama2cModel& m) {
  return std::make_unique<lmshrink::models::llama::Model>(lmshrink::models::llama::Weights<float>::from_model(m));
}
std::unique_ptr<Model> make_gpt2_model(const lmshrink::Gpt2Model& m) {
  return std::make_unique<lmshrink::models::gpt2::Model>(lmshrink::models::gpt2::Weights<float>::from_model(m));
}

}  // namespace

std::unique_ptr<Model> load_model(const std::string& path) {
  static constexpr const char* where = "load_model";
  if (!is_directory_path(where, path)) return make_llama_model(lmshrink::read_llama2c(path));
  const std::string config = (fs::path(path) / "config.json").string();
  if (path_type(where, config) == fs::file_type::not_found)
    lmshrink::fail<lmshrink::io_error>(where, "'", path, "' is a directory without config.json; a "
                                               "llama2.c file or a Hugging Face checkpoint directory was expected");
  const lmshrink::HfConfig c = lmshrink::read_hf_config(config);
  if (c.model_type == "gpt2") return make_gpt2_model(lmshrink::read_hf_gpt2(path));
  return make_llama_model(lmshrink::read_hf_llama(path));
}

namespace {

std::unique_ptr<Model> checkpoint_model(const lmshrink::SafeTensors& st, const std::string& path) {
  const auto it = st.metadata.find("lmshrink.checkpoint");
  const std::string kind = it == st.metadata.end() ? "" : it->second;
  if (kind == "llama/1") return std::make_unique<lmshrink::models::llama::Model>(lmshrink::models::llama::read_checkpoint(st, path));
  if (kind == "gpt2/1") return std::make_unique<lmshrink::models::gpt2::Model>(lmshrink::models::gpt2::read_checkpoint(st, path));
  lmshrink::fail<lmshrink::format_error>("load_checkpoint", "'", path, "' has the metadata "
                                                 "'lmshrink.checkpoint: ", kind, "'; \"llama/1\" or \"gpt2/1\" "
                                                 "(a checkpoint written by Model::save) was expected");
}

}  // namespace

std::unique_ptr<Model> load_checkpoint(const std::string& path) {
  return checkpoint_model(lmshrink::read_safetensors(path), path);
}

std::unique_ptr<Model> load_checkpoint(const std::vector<char>& bytes, const std::string& path) {
  return checkpoint_model(lmshrink::parse_safetensors(bytes.data(), bytes.size(), path), path);
}

std::unique_ptr<TextCodec> load_codec(const Model& model, const std::string& model_path, const std::string& path) {
  std::unique_ptr<TextCodec> codec;
  std::string source = path;
  if (model.family() == "gpt2") {
    std::pair<std::string, std::string> files;
    if (!path.empty()) {
      files = is_directory_path("load_codec", path) ? gpt2_files_in(path) : std::pair<std::string, std::string>{"", ""};
      if (files.first.empty())
        lmshrink::fail<lmshrink::io_error>("load_codec", "'", path, "' is not a directory with GPT-2's "
                                                   "vocab.json + merges.txt (or encoder.json + vocab.bpe)");
    } else {
      files = gpt2_files_in(model_path);
      source = model_path;
      if (files.first.empty()) {
        files = {LMSHRINK_DATA_DIR "/gpt2_encoder.json", LMSHRINK_DATA_DIR "/gpt2_vocab.bpe"};
        source = "bundled with lmshrink (GPT-2's)";
      }
    }
    codec = std::make_unique<lmshrink::models::gpt2::Codec>(lmshrink::read_gpt2_tokenizer(files.first, files.second));
  } else {
    if (source.empty()) source = LMSHRINK_DATA_DIR "/tok512.bin";
    codec = std::make_unique<lmshrink::models::llama::Codec>(lmshrink::read_tokenizer(source, model.shape().vocab_size));
  }
  check_vocab(*codec, model, "'" + source + "'");
  return codec;
}

Converted convert_checkpoint(const std::string& in, const std::string& out, const std::string& dtype_name,
                             std::int64_t shard_bytes) {
  static constexpr const char* where = "convert_checkpoint";
  lmshrink::Dtype dtype = lmshrink::Dtype::f32;
  if (dtype_name == "f16") dtype = lmshrink::Dtype::f16;
  else if (dtype_name == "bf16") dtype = lmshrink::Dtype::bf16;
  else if (dtype_name != "f32")
    lmshrink::fail<lmshrink::value_error>(where, "dtype '", dtype_name, "'; f32, f16 or bf16 was expected");
  const bool to_llama2c = out.size() >= 4 && out.compare(out.size() - 4, 4, ".bin") == 0;
  Converted done;
  if (!is_directory_path(where, in)) {  // a llama2.c file
    const lmshrink::Llama2cModel m = lmshrink::read_llama2c(in);
    if (to_llama2c) lmshrink::write_llama2c(m, out);
    else lmshrink::write_hf_llama(m, out, dtype, shard_bytes);
    return {"llama2.c", m.parameter_count()};
  }
  const lmshrink::HfConfig config = lmshrink::read_hf_config((fs::path(in) / "config.json").string());
  if (config.model_type == "gpt2") {
    if (to_llama2c)
      lmshrink::fail<lmshrink::value_error>(where, "'", in, "' is a GPT-2 model; llama2.c files hold "
                                                    "Llama models only");
    const lmshrink::Gpt2Model m = lmshrink::read_hf_gpt2(in);
    lmshrink::write_hf_gpt2(m, out, dtype, shard_bytes);
    return {"gpt2", m.parameter_count()};
  }
  const lmshrink::Llama2cModel m = lmshrink::read_hf_llama(in);
  if (to_llama2c) lmshrink::write_llama2c(m, out);
  else lmshrink::write_hf_llama(m, out, dtype, shard_bytes);
  return {"llama", m.parameter_count()};
}

}  // namespace examples
