// How a model finds its tokenizer (models::load_codec): the caller's file or directory, the model
// directory's own files, the family's default; SentencePiece's tokenizer.model as a codec with
// BOS/EOS from config.json and the tokenizer; files that cannot be read named with what would do.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <lmshrink/random.hpp>
#include <filesystem>
#include <fstream>
#include <lmshrink/models/registry.hpp>
#include <string>
#include <utility>
#include <vector>

namespace fs = std::filesystem;
using Catch::Contains;

namespace {

const std::string kData = LMSHRINK_DATA_DIR;

lmshrink::models::CodecDefaults bundled() {
  lmshrink::models::CodecDefaults d;
  d.llama = kData + "/tok512.bin";
  d.gpt2_vocab = kData + "/gpt2_encoder.json";
  d.gpt2_merges = kData + "/gpt2_vocab.bpe";
  return d;
}

/// stories260K as a Hugging Face directory under the test folder, with `files` copied in
/// ({source, name in the directory}) and `config_extra` ("\"key\": value, ...") added to its
/// config.json.
std::string hf_dir(const std::string& name, const std::vector<std::pair<std::string, std::string>>& files = {},
                   const std::string& config_extra = "") {
  const std::string dir = std::string(LMSHRINK_TEST_TMP) + "/codecs_" + name;
  fs::remove_all(dir);
  lmshrink::models::llama::write_hf(lmshrink::models::llama::read_llama2c(kData + "/stories260K.bin"), dir);
  for (const auto& [source, file] : files) fs::copy_file(source, dir + "/" + file);
  if (!config_extra.empty()) {
    std::ifstream in(dir + "/config.json");
    std::string config((std::istreambuf_iterator<char>(in)), {});
    config.insert(config.find('{') + 1, "\n  " + config_extra + ",");
    std::ofstream(dir + "/config.json", std::ios::trunc) << config;
  }
  return dir;
}

}  // namespace

TEST_CASE("a llama2.c model takes the given tokenizer file, or the default", "[codecs]") {
  const auto model = lmshrink::models::load_model(kData + "/stories260K.bin");
  const auto fallback = lmshrink::models::load_codec(*model, kData + "/stories260K.bin", "", bundled());
  CHECK(fallback->description() == "llama2.c tokenizer '" + kData + "/tok512.bin' (512 tokens), the default");
  CHECK(fallback->story_start() == 1);
  CHECK(fallback->story_end() == 1);  // run.c: the next story's BOS ends a story

  const auto spm = lmshrink::models::load_codec(*model, kData + "/stories260K.bin", kData + "/tok512.model");
  REQUIRE(dynamic_cast<const lmshrink::models::llama::SentencePieceCodec*>(spm.get()) != nullptr);
  CHECK(spm->story_start() == 1);
  CHECK(spm->story_end() == 1);
  CHECK(spm->description() == "SentencePiece '" + kData + "/tok512.model' (512 pieces, BOS 1, story end 1)");
  // Both tokenizers give the same ids to ordinary text (they differ on repeated spaces only).
  const std::string story = "Once upon a time, there was a little girl named Lily. She liked 3 red apples!";
  CHECK(spm->encode_story(story) == fallback->encode_story(story));
  CHECK(spm->decode(spm->encode_story(story)) == story);

  CHECK_THROWS_WITH(lmshrink::models::load_codec(*model, kData + "/stories260K.bin", "", {}),
                    Contains("no tokenizer was given for the llama model") && Contains("there is no default"));
  CHECK_THROWS_WITH(lmshrink::models::load_codec(*model, kData + "/stories260K.bin", kData + "/tokenizer.json"),
                    Contains("cannot open '" + kData + "/tokenizer.json'"));
}

TEST_CASE("a Hugging Face directory's own tokenizer.model is used, with its config's BOS and EOS",
          "[codecs]") {
  const std::string plain = hf_dir("spm", {{kData + "/tok512.model", "tokenizer.model"}});
  const auto model = lmshrink::models::load_model(plain);
  const auto codec = lmshrink::models::load_codec(*model, plain, "", bundled());
  CHECK(codec->description() == "SentencePiece '" + plain + "/tokenizer.model' (512 pieces, BOS 1, story end 2)");
  CHECK(codec->story_start() == 1);
  CHECK(codec->story_end() == 2);  // a Hugging Face model's stories end with EOS

  // config.json's ids come first; a list of EOS ids (Llama 3.1) gives its first.
  const std::string ids = hf_dir("spm_ids", {{kData + "/tok512.model", "tokenizer.model"}}, "\"bos_token_id\": 2, \"eos_token_id\": [1, 2]");
  const auto from_config = lmshrink::models::load_codec(*model, ids, "");
  CHECK(from_config->story_start() == 2);
  CHECK(from_config->story_end() == 1);
  CHECK(from_config->encode_story("Hi").front() == 2);
  const std::string bad = hf_dir("spm_bad_ids", {{kData + "/tok512.model", "tokenizer.model"}}, "\"eos_token_id\": 512");
  CHECK_THROWS_WITH(lmshrink::models::load_codec(*model, bad, ""),
                    Contains("config.json") && Contains("'eos_token_id' holds 512; a token id in [0, 512)"));

  // A directory without tokenizer files takes the default, and says so.
  const std::string bare = hf_dir("bare");
  const auto fallback = lmshrink::models::load_codec(*model, bare, "", bundled());
  CHECK(fallback->description() == "llama2.c tokenizer '" + kData + "/tok512.bin' (512 tokens), the default: '" +
                                        bare + "' holds no tokenizer files");
  CHECK(fallback->story_end() == 1);
  // --tokenizer naming a directory uses that directory's files.
  const auto other = lmshrink::models::load_codec(*model, bare, plain);
  CHECK(dynamic_cast<const lmshrink::models::llama::SentencePieceCodec*>(other.get()) != nullptr);
}

TEST_CASE("a directory's tokenizer.json is used, with a padded embedding and the config's ids", "[codecs]") {
  // stories260K with its embedding padded to 1216 rows (19 x 64), and a Qwen2-shaped
  // tokenizer.json of 1160 ids (1156 + 4 added): the padding ids are never produced and decode
  // to nothing.
  auto m = lmshrink::models::llama::read_llama2c(kData + "/stories260K.bin");
  m.config.vocab_size = 1216;
  m.token_embedding.conservativeResize(1216, Eigen::NoChange);
  m.token_embedding.bottomRows(1216 - 512).setZero();
  const std::string dir = std::string(LMSHRINK_TEST_TMP) + "/codecs_padded";
  fs::remove_all(dir);
  lmshrink::models::llama::write_hf(m, dir);
  fs::copy_file(LMSHRINK_TEST_DATA_DIR "/hf_qwen2_style.json", dir + "/tokenizer.json");
  const auto model = lmshrink::models::load_model(dir);
  const auto fallback_ids = lmshrink::models::load_codec(*model, dir, "", bundled());
  CHECK(fallback_ids->story_start() == 1156);  // no ids in config.json: <|endoftext|> starts and ends
  CHECK(fallback_ids->story_end() == 1156);
  CHECK(fallback_ids->description() == "Hugging Face tokenizer.json '" + dir + "/tokenizer.json' (1160 ids, story start "
                                       "1156, end 1156), padded to the model's 1216 ids");
  {
    std::ifstream in(dir + "/config.json");
    std::string config((std::istreambuf_iterator<char>(in)), {});
    config.insert(config.find('{') + 1, "\n  \"bos_token_id\": 1157, \"eos_token_id\": 1158,");
    std::ofstream(dir + "/config.json", std::ios::trunc) << config;
  }
  const auto codec = lmshrink::models::load_codec(*model, dir, "", bundled());
  const auto* padded = dynamic_cast<const lmshrink::models::PaddedCodec*>(codec.get());
  REQUIRE(padded != nullptr);
  CHECK(dynamic_cast<const lmshrink::models::HfCodec*>(&padded->inner()) != nullptr);
  CHECK(codec->vocab_size() == 1216);
  CHECK(codec->story_start() == 1157);
  CHECK(codec->story_end() == 1158);
  const auto tok = lmshrink::read_hf_tokenizer(LMSHRINK_TEST_DATA_DIR "/hf_qwen2_style.json");
  const std::string story = "Once upon a time, Tom's <|endoftext|> dog ran 3 miles.";
  std::vector<int> want{1157};
  for (int id : tok.encode(story)) want.push_back(id);  // special-token text stays text
  CHECK(codec->encode_story(story) == want);
  std::vector<int> with_padding = codec->encode_story(story);
  with_padding.push_back(1200);  // a padding row: decodes to nothing
  CHECK(codec->decode(with_padding) == story);
  CHECK_THROWS_AS(codec->decode({1216}), lmshrink::value_error);
  // Padding is a few rows (under 1024 and 5 % of the tokenizer's ids), not another tokenizer:
  // tok512 for this model is refused.
  CHECK_THROWS_WITH(lmshrink::models::load_codec(*model, dir, kData + "/tok512.model"),
                    Contains("has 512 tokens but the model's vocabulary has 1216"));
}

TEST_CASE("tokenizer files that cannot be used are errors that say what would do", "[codecs][errors]") {
  const std::string bare = hf_dir("errors_bare");
  const auto model = lmshrink::models::load_model(bare);
  // A tokenizer.json is read, never passed over for the bundled files: this one is of another
  // vocabulary, which is said.
  const std::string json = hf_dir("json_only", {{LMSHRINK_TEST_DATA_DIR "/hf_llama3_style.json", "tokenizer.json"}});
  CHECK_THROWS_AS(lmshrink::models::load_codec(*model, json, "", bundled()), lmshrink::format_error);
  CHECK_THROWS_WITH(lmshrink::models::load_codec(*model, json, "", bundled()),
                    Contains(json + "/tokenizer.json' has 1") && Contains("tokens but the model's vocabulary has 512"));
  std::ofstream(json + "/tokenizer.json", std::ios::trunc) << "{}";
  CHECK_THROWS_WITH(lmshrink::models::load_codec(*model, json, "", bundled()),
                    Contains(json + "/tokenizer.json': the file.model is missing"));
  // GPT-2's files beside a Llama model are named, with what a Llama model needs.
  const std::string gpt2_files = hf_dir("gpt2_files");
  fs::copy_file(kData + "/gpt2_encoder.json", gpt2_files + "/encoder.json");
  fs::copy_file(kData + "/gpt2_vocab.bpe", gpt2_files + "/vocab.bpe");
  CHECK_THROWS_WITH(lmshrink::models::load_codec(*model, gpt2_files, "", bundled()),
                    Contains("holds encoder.json, vocab.bpe but a llama model needs tokenizer.model or tokenizer.json"));
  CHECK_THROWS_WITH(lmshrink::models::load_codec(*model, gpt2_files, bare, bundled()),
                    Contains("'" + bare + "' holds no tokenizer files but a llama model needs tokenizer.model"));
  // A tokenizer of another vocabulary names both sizes and what to give.
  const std::string big = std::string(LMSHRINK_TEST_TMP) + "/codecs_big.bin";
  {
    std::vector<std::string> pieces;
    std::vector<float> scores;
    for (int i = 0; i < 600; ++i) {
      pieces.push_back(i >= 3 && i < 259 ? "<0x00>" : "p" + std::to_string(i));
      scores.push_back(0);
    }
    lmshrink::write_tokenizer(lmshrink::Tokenizer(pieces, scores), big);
  }
  CHECK_THROWS_AS(lmshrink::models::load_codec(*model, bare, big), lmshrink::format_error);
  CHECK_THROWS_WITH(lmshrink::models::load_codec(*model, bare, big),
                    Contains("has 600 tokens but the model's vocabulary has 512; give --tokenizer the model's own"));
}

namespace {

/// A random Llama-shaped model (N(0, 0.02) weights, unit norms) of vocabulary `vocab`.
lmshrink::models::llama::DenseModel random_llama(int vocab, int dim, int hidden, int layers, int heads, int kv_heads,
                                                 bool tied, bool biases, std::uint64_t seed) {
  lmshrink::models::llama::DenseModel m;
  auto& c = m.config;
  c.dim = dim, c.hidden_dim = hidden, c.n_layers = layers, c.n_heads = heads, c.n_kv_heads = kv_heads;
  c.vocab_size = vocab, c.seq_len = 512, c.shared_classifier = tied, c.qkv_bias = biases;
  c.norm_eps = 1e-5, c.rope_theta = 10000;
  lmshrink::SplitMix64 rng(seed);
  const auto normal = [&](lmshrink::Index r, lmshrink::Index k) {
    lmshrink::RowMatrix<float> x(r, k);
    for (lmshrink::Index i = 0; i < x.size(); ++i) x.data()[i] = float(0.02 * rng.normal());
    return x;
  };
  const auto vector = [&](int n, float scale) { return lmshrink::Vector<float>(normal(n, 1).col(0) * (scale / 0.02f)); };
  m.token_embedding = normal(vocab, dim);
  if (!tied) m.wcls = normal(vocab, dim);
  for (int l = 0; l < layers; ++l) {
    m.rms_att.push_back(lmshrink::Vector<float>::Ones(dim));
    m.rms_ffn.push_back(lmshrink::Vector<float>::Ones(dim));
    m.wq.push_back(normal(dim, dim));
    m.wk.push_back(normal(c.kv_dim(), dim));
    m.wv.push_back(normal(c.kv_dim(), dim));
    m.wo.push_back(normal(dim, dim));
    m.w1.push_back(normal(hidden, dim));
    m.w2.push_back(normal(dim, hidden));
    m.w3.push_back(normal(hidden, dim));
    if (biases) {
      m.bq.push_back(vector(dim, 0.02f));
      m.bk.push_back(vector(c.kv_dim(), 0.02f));
      m.bv.push_back(vector(c.kv_dim(), 0.02f));
    }
  }
  m.rms_final = lmshrink::Vector<float>::Ones(dim);
  return m;
}

}  // namespace

// Directories shaped like the Hub's models, with random weights and the real tokenizer formats
// (the test files of tests/data): the main job's examples run on them (example_compress_*_like).
// Hidden: ctest runs it as example_make_hub_shaped, with HUB_SHAPED_DIR set.
TEST_CASE("write Hub-shaped model directories for the main job's tests", "[.make_hub_shaped]") {
  const char* out = std::getenv("HUB_SHAPED_DIR");
  REQUIRE(out != nullptr);
  const std::string root = out;
  fs::create_directories(root);
  const std::string data = LMSHRINK_TEST_DATA_DIR;
  // TinyLlama-1.1B's shape in small: untied, 8 query heads per key/value head, SentencePiece.
  const std::string tinyllama = root + "/tinyllama_like";
  lmshrink::models::llama::write_hf(random_llama(700, 64, 176, 2, 8, 1, false, false, 11), tinyllama);
  fs::copy_file(data + "/spm_llama_style.model", tinyllama + "/tokenizer.model", fs::copy_options::overwrite_existing);
  // SmolLM-135M's: tied embeddings, 3 query heads per key/value head, tokenizer.json with its
  // specials at ids 0-2.
  const std::string smollm = root + "/smollm_like";
  const int smollm_ids = lmshrink::read_hf_tokenizer(data + "/hf_smollm_style.json").vocab_size();
  lmshrink::models::llama::write_hf(random_llama(smollm_ids, 48, 128, 2, 6, 2, true, false, 12), smollm);
  fs::copy_file(data + "/hf_smollm_style.json", smollm + "/tokenizer.json", fs::copy_options::overwrite_existing);
  // Qwen2-0.5B's: q/k/v biases, grouped queries, tied, an embedding padded past the tokenizer.
  const std::string qwen2 = root + "/qwen2_like";
  lmshrink::models::qwen2::write_hf(random_llama(1216, 64, 176, 2, 4, 2, true, true, 13), qwen2);
  fs::copy_file(data + "/hf_qwen2_style.json", qwen2 + "/tokenizer.json", fs::copy_options::overwrite_existing);
  for (const std::string& dir : {tinyllama, smollm, qwen2}) {
    const auto model = lmshrink::models::load_model(dir);
    const auto codec = lmshrink::models::load_codec(*model, dir, "");
    std::printf("wrote %s (%s, %lld parameters; %s)\n", dir.c_str(), model->family().c_str(),
                static_cast<long long>(model->parameters()), codec->description().c_str());
  }
}
