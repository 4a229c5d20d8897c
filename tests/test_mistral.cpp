// The Mistral family: a "mistral" directory is Llama's graph under its own name. stories260K
// (whose Llama forward is checked against run.c and an independent float64 reference elsewhere)
// written as a Mistral directory gives the same logits; its sliding window becomes the context;
// checkpoints, exports and conversions stay "mistral".
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <lmshrink/models/registry.hpp>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using Catch::Contains;

namespace {

const std::string kData = LMSHRINK_DATA_DIR;

/// stories260K as a Mistral directory with `sliding_window` ("null" or a number).
std::string mistral_dir(const std::string& name, const std::string& sliding_window) {
  const std::string dir = std::string(LMSHRINK_TEST_TMP) + "/mistral_" + name;
  fs::remove_all(dir);
  lmshrink::models::mistral::write_hf(lmshrink::models::llama::read_llama2c(kData + "/stories260K.bin"), dir);
  std::ifstream in(dir + "/config.json");
  std::string config((std::istreambuf_iterator<char>(in)), {});
  const std::string key = "\"sliding_window\": null";
  REQUIRE(config.find(key) != std::string::npos);  // as MistralConfig writes it for v0.2 on
  config.replace(config.find(key), key.size(), "\"sliding_window\": " + sliding_window);
  std::ofstream(dir + "/config.json", std::ios::trunc) << config;
  return dir;
}

double max_abs_diff(const lmshrink::models::Mat& a, const lmshrink::models::Mat& b) {
  return (a - b).cwiseAbs().maxCoeff();
}

}  // namespace

TEST_CASE("a Mistral directory runs Llama's forward under its own name", "[mistral]") {
  const auto llama = lmshrink::models::load_model(kData + "/stories260K.bin");
  const std::string dir = mistral_dir("full", "null");
  const auto mistral = lmshrink::models::load_model(dir);
  REQUIRE(mistral->family() == "mistral");
  REQUIRE(mistral->shape().seq_len == 512);
  std::vector<int> tokens;
  for (int t = 0; t < 64; ++t) tokens.push_back((t * 37 + 1) % 512);
  const auto want = llama->decoder()->forward_sequence(tokens.data(), 64);
  CHECK(max_abs_diff(mistral->decoder()->forward_sequence(tokens.data(), 64), want) < 1e-5);
  // Checkpoints, dense exports and conversions stay Mistral.
  const std::string path = std::string(LMSHRINK_TEST_TMP) + "/mistral.safetensors";
  mistral->save(path, "dense", {});
  const auto back = lmshrink::models::load_checkpoint(path);
  CHECK(back->family() == "mistral");
  CHECK(max_abs_diff(back->decoder()->forward_sequence(tokens.data(), 64), want) < 1e-5);
  const std::string exported = back->export_dense(std::string(LMSHRINK_TEST_TMP) + "/mistral_export");
  CHECK(lmshrink::models::load_model(exported)->family() == "mistral");
  // A conversion takes the tokenizer along: the converted directory is usable as it stands.
  fs::copy_file(kData + "/tok512.model", dir + "/tokenizer.model", fs::copy_options::overwrite_existing);
  const std::string converted = std::string(LMSHRINK_TEST_TMP) + "/mistral_bf16";
  fs::remove_all(converted);
  const auto done = lmshrink::models::convert_checkpoint(dir, converted, "bf16", 0);
  CHECK(done.from_format == "mistral");
  CHECK(done.companion_files == std::vector<std::string>{"tokenizer.model"});
  CHECK(lmshrink::models::read_hf_config(converted + "/config.json").model_type == "mistral");
  const auto converted_model = lmshrink::models::load_model(converted);
  CHECK(lmshrink::models::load_codec(*converted_model, converted, "")->description().find(converted + "/tokenizer.model") !=
        std::string::npos);
  CHECK_THROWS_WITH(lmshrink::models::convert_checkpoint(dir, converted + ".bin", "f32", 0),
                    Contains("is a Mistral model"));
}

TEST_CASE("config.json keeps every key it had through conversions, checkpoints and exports", "[mistral][hf]") {
  // A key lmshrink does not use (bos/eos ids, a model's own settings) is written back as it was
  // read: by a conversion, and by the export of a checkpoint of the model.
  const std::string dir = mistral_dir("keys", "null");
  {
    std::ifstream in(dir + "/config.json");
    std::string config((std::istreambuf_iterator<char>(in)), {});
    config.insert(config.find('{') + 1, "\n  \"bos_token_id\": 0, \"eos_token_id\": [0, 2], \"_name_or_path\": \"x/y\",\n"
                                        "  \"custom\": {\"a\": [1, 2.5e-3, null], \"b\": \"\\u00e9\"},");
    std::ofstream(dir + "/config.json", std::ios::trunc) << config;
  }
  const auto has_keys = [](const std::string& config_dir) {
    std::ifstream in(config_dir + "/config.json");
    const std::string config((std::istreambuf_iterator<char>(in)), {});
    INFO(config);
    CHECK(config.find("\"bos_token_id\": 0") != std::string::npos);
    CHECK(config.find("\"eos_token_id\": [0, 2]") != std::string::npos);
    CHECK(config.find("\"_name_or_path\": \"x/y\"") != std::string::npos);
    CHECK(config.find("\"custom\": {\"a\": [1, 2.5e-3, null], \"b\": \"\xc3\xa9\"}") != std::string::npos);
    CHECK(config.find("\"torch_dtype\": \"float32\"") != std::string::npos);
    CHECK(config.find("\"model_type\": \"mistral\"") != std::string::npos);
  };
  const std::string converted = std::string(LMSHRINK_TEST_TMP) + "/mistral_keys_converted";
  fs::remove_all(converted);
  lmshrink::models::convert_checkpoint(dir, converted, "f32", 0);
  has_keys(converted);
  const std::string path = std::string(LMSHRINK_TEST_TMP) + "/mistral_keys.safetensors";
  lmshrink::models::load_model(dir)->save(path, "dense", {});
  has_keys(lmshrink::models::load_checkpoint(path)->export_dense(std::string(LMSHRINK_TEST_TMP) + "/mistral_keys_export"));
  // The codec of the converted model starts stories with the config's BOS, 0.
  const auto model = lmshrink::models::load_model(converted);
  fs::copy_file(kData + "/tok512.model", converted + "/tokenizer.model", fs::copy_options::overwrite_existing);
  CHECK(lmshrink::models::load_codec(*model, converted, "")->story_start() == 0);
}

TEST_CASE("a sliding window shorter than the context becomes the context", "[mistral]") {
  const auto windowed = lmshrink::models::load_model(mistral_dir("window", "128"));
  CHECK(windowed->shape().seq_len == 128);  // no position past the window is ever attended
  const auto decoder = windowed->decoder();
  CHECK_NOTHROW(decoder->forward_token(1, 127));
  CHECK_THROWS_WITH(decoder->forward_token(1, 128), Contains("128"));
  CHECK(lmshrink::models::load_model(mistral_dir("wide", "4096"))->shape().seq_len == 512);
  CHECK_THROWS_WITH(lmshrink::models::load_model(mistral_dir("bad", "0")), Contains("'sliding_window' is 0"));
}
