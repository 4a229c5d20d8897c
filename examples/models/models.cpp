// The examples' one file that compiles every family (lmshrink/models/registry.hpp, about 40 s):
// the apps call these wrappers, which add the bundled tokenizer files as the defaults.
#include <lmshrink/models/registry.hpp>

#include "convert.hpp"
#include "registry.hpp"

#ifndef LMSHRINK_DATA_DIR
#define LMSHRINK_DATA_DIR "examples/data"
#endif

namespace examples {

std::unique_ptr<Model> load_model(const std::string& path) { return lmshrink::models::load_model(path); }

std::unique_ptr<Model> load_checkpoint(const std::string& path) { return lmshrink::models::load_checkpoint(path); }

std::unique_ptr<Model> load_checkpoint(const std::vector<char>& bytes, const std::string& path) {
  return lmshrink::models::load_checkpoint(bytes, path);
}

std::unique_ptr<TextCodec> load_codec(const Model& model, const std::string& model_path, const std::string& path) {
  lmshrink::models::CodecDefaults bundled;
  bundled.llama = LMSHRINK_DATA_DIR "/tok512.bin";
  bundled.gpt2_vocab = LMSHRINK_DATA_DIR "/gpt2_encoder.json";
  bundled.gpt2_merges = LMSHRINK_DATA_DIR "/gpt2_vocab.bpe";
  return lmshrink::models::load_codec(model, model_path, path, bundled);
}

Converted convert_checkpoint(const std::string& in, const std::string& out, const std::string& dtype,
                             std::int64_t shard_bytes) {
  const lmshrink::models::Converted done = lmshrink::models::convert_checkpoint(in, out, dtype, shard_bytes);
  return {done.from_format, done.parameters, done.companion_files};
}

}  // namespace examples
