// Hugging Face tokenizer.json (byte-level BPE): encoding and decoding against Hugging Face's
// `tokenizers` library (tests/data/hf_tokenizer_cases.json, made by
// tools/gen_hf_tokenizer_references.js) for files shaped like Llama 3's, Qwen2's and SmolLM's;
// GPT-2's own tokenizer.json against lmshrink's GPT-2 tokenizer; special-token text; NFC against
// Python's unicodedata; bad files.
#define LMSHRINK_TESTING_INTERNALS  // the internal JSON reader and NFC are tested here
#include <catch2/catch.hpp>
#include <fstream>
#include <lmshrink/detail/json.hpp>
#include <lmshrink/detail/nfc.hpp>
#include <lmshrink/io/gpt2_tokenizer.hpp>
#include <lmshrink/io/hf_tokenizer.hpp>
#include <sstream>
#include <string>
#include <vector>

#ifndef LMSHRINK_TEST_DATA_DIR
#error "LMSHRINK_TEST_DATA_DIR (tests/data) must be defined"
#endif

namespace {

using lmshrink::detail::JsonValue;

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

const JsonValue& cases() {
  static const std::string text = read_all(LMSHRINK_TEST_DATA_DIR "/hf_tokenizer_cases.json");
  static const JsonValue root = lmshrink::detail::parse_json("test", "hf_tokenizer_cases.json", text, {64, 1 << 22});
  return root;
}

std::vector<int> ints(const JsonValue& v) {
  std::vector<int> out;
  for (const auto& x : v.items) out.push_back(int(x.integer));
  return out;
}

const char* const kKinds[] = {"llama3", "qwen2", "smollm"};

std::string path_of(const std::string& kind) { return LMSHRINK_TEST_DATA_DIR "/hf_" + kind + "_style.json"; }

/// The llama3-style file with `from` replaced by `to` (once), parsed.
lmshrink::HfTokenizer edited(const std::string& from, const std::string& to) {
  std::string json = read_all(path_of("llama3"));
  const std::size_t at = json.find(from);
  REQUIRE(at != std::string::npos);
  json.replace(at, from.size(), to);
  return lmshrink::parse_hf_tokenizer(json, "edited.json");
}

}  // namespace

TEST_CASE("tokenizer.json files read with their pre-tokenisers, normalisers and added tokens", "[hf_tokenizer]") {
  using Split = lmshrink::HfTokenizer::Split;
  const auto llama3 = lmshrink::read_hf_tokenizer(path_of("llama3"));
  CHECK(llama3.pre_tokenizer() == std::vector<Split>{Split::llama3});
  CHECK(!llama3.nfc());
  CHECK(llama3.added_tokens().size() == 4);
  CHECK(llama3.vocab_size() == llama3.added_tokens().back().id + 1);
  CHECK(llama3.is_special(llama3.find("<|begin_of_text|>")));
  const auto qwen2 = lmshrink::read_hf_tokenizer(path_of("qwen2"));
  CHECK(qwen2.pre_tokenizer() == std::vector<Split>{Split::qwen2});
  CHECK(qwen2.nfc());
  CHECK(!qwen2.is_special(qwen2.find("<tool_call>")));
  const auto smollm = lmshrink::read_hf_tokenizer(path_of("smollm"));
  CHECK(smollm.pre_tokenizer() == std::vector<Split>{Split::digits, Split::gpt2});
  CHECK(smollm.find("<|endoftext|>") == 0);
  CHECK(smollm.is_special(0));
}

TEST_CASE("pre-tokenisation equals Hugging Face's tokenizers on 230 texts per file", "[hf_tokenizer]") {
  const auto& root = cases();
  const auto& texts = root.find("texts")->items;
  const auto byte_level = [](std::string_view piece) {
    std::string out;
    for (const char b : piece)
      lmshrink::detail::append_utf8(out, lmshrink::detail::gpt2_byte_char(static_cast<unsigned char>(b)));
    return out;
  };
  for (const char* kind : kKinds) {
    const auto tok = lmshrink::read_hf_tokenizer(path_of(kind));
    const auto& ref = root.find("models")->find(kind)->find("pre_tokens")->items;
    int compared = 0, mismatches = 0;
    std::string first;
    for (std::size_t i = 0; i < texts.size(); ++i) {
      const std::string normalized = tok.nfc() ? lmshrink::detail::nfc(texts[i].text) : texts[i].text;
      std::vector<std::string> got, want;
      for (const std::string_view p : tok.pre_tokenize(normalized)) got.push_back(byte_level(p));
      for (const auto& p : ref[i].items) want.push_back(p.text);
      ++compared;
      if (got != want && mismatches++ == 0) first = texts[i].text;
    }
    INFO(kind << ": first mismatch on '" << first << "'");
    CHECK(compared == 230);
    CHECK(mismatches == 0);
  }
}

TEST_CASE("tokenizer.json encoding equals Hugging Face's tokenizers on 230 texts per file", "[hf_tokenizer]") {
  const auto& root = cases();
  const auto& texts = root.find("texts")->items;
  REQUIRE(texts.size() == 230);
  for (const char* kind : kKinds) {
    const auto tok = lmshrink::read_hf_tokenizer(path_of(kind));
    const auto& ref = *root.find("models")->find(kind);
    int compared = 0, mismatches = 0;
    std::string first;
    std::vector<int> got_first, want_first;
    for (std::size_t i = 0; i < texts.size(); ++i) {
      ++compared;
      const std::vector<int> got = tok.encode(texts[i].text, /*parse_special=*/true), want = ints(ref.find("ids")->items[i]);
      if (got != want && mismatches++ == 0) {
        first = texts[i].text;
        got_first = got;
        want_first = want;
      }
    }
    INFO(kind << ": first mismatch on '" << first << "'");
    CHECK(compared == 230);
    CHECK(mismatches == 0);
    CHECK(got_first == want_first);
  }
}

TEST_CASE("tokenizer.json decoding equals Hugging Face's tokenizers", "[hf_tokenizer]") {
  const auto& root = cases();
  const auto& texts = root.find("texts")->items;
  for (const char* kind : kKinds) {
    const auto tok = lmshrink::read_hf_tokenizer(path_of(kind));
    const auto& ref = *root.find("models")->find(kind);
    int compared = 0, mismatches = 0;
    for (std::size_t i = 0; i < texts.size(); ++i) {
      const std::vector<int> ids = ints(ref.find("ids")->items[i]);
      const JsonValue& d = ref.find("decoded")->items[i];
      const std::string decoded = d.kind == JsonValue::Kind::null ? texts[i].text : d.text;
      const JsonValue& ds = ref.find("decoded_skip_special")->items[i];
      const std::string skipped = ds.kind == JsonValue::Kind::null ? decoded : ds.text;
      compared += 2;
      mismatches += tok.decode(ids) != decoded;
      mismatches += tok.decode(ids, /*skip_special=*/true) != skipped;
    }
    INFO(kind);
    CHECK(compared == 460);
    CHECK(mismatches == 0);
  }
}

TEST_CASE("special-token text is text unless parse_special; other added tokens always split", "[hf_tokenizer]") {
  const auto tok = lmshrink::read_hf_tokenizer(path_of("qwen2"));
  const int end_of_text = tok.find("<|endoftext|>"), tool_call = tok.find("<tool_call>");
  const std::string text = "a<|endoftext|>b<tool_call>c";
  const std::vector<int> parsed = tok.encode(text, true), plain = tok.encode(text);
  CHECK(std::count(parsed.begin(), parsed.end(), end_of_text) == 1);
  CHECK(std::count(plain.begin(), plain.end(), end_of_text) == 0);
  CHECK(std::count(plain.begin(), plain.end(), tool_call) == 1);
  CHECK(tok.decode(plain) == text);
  CHECK(tok.decode(parsed) == text);
  CHECK(tok.decode(parsed, true) == "ab<tool_call>c");
  CHECK_THROWS_WITH(tok.decode({tok.vocab_size()}), Catch::Contains("is outside [0, " + std::to_string(tok.vocab_size())));
}

TEST_CASE("GPT-2's own tokenizer.json encodes as lmshrink's GPT-2 tokenizer", "[hf_tokenizer]") {
  // Hugging Face's gpt2/tokenizer.json, rebuilt from the bundled encoder.json and vocab.bpe.
  const std::string vocab = read_all(LMSHRINK_DATA_DIR "/gpt2_encoder.json");
  const std::string merges_text = read_all(LMSHRINK_DATA_DIR "/gpt2_vocab.bpe");
  std::string merges = "[";
  std::istringstream lines(merges_text);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    if (merges.size() > 1) merges += ',';
    lmshrink::detail::json_escape(merges, line);
  }
  merges += "]";
  const std::string json =
      "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":50256,\"content\":\"<|endoftext|>\",\"single_word\":false,"
      "\"lstrip\":false,\"rstrip\":false,\"normalized\":true,\"special\":true}],\"normalizer\":null,"
      "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true},"
      "\"post_processor\":null,\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"dropout\":null,"
      "\"unk_token\":null,\"continuing_subword_prefix\":\"\",\"end_of_word_suffix\":\"\",\"fuse_unk\":false,"
      "\"vocab\":" + vocab + ",\"merges\":" + merges + "}}";
  const auto hf = lmshrink::parse_hf_tokenizer(json, "gpt2/tokenizer.json");
  const auto gpt2 = lmshrink::read_gpt2_tokenizer(LMSHRINK_DATA_DIR "/gpt2_encoder.json", LMSHRINK_DATA_DIR "/gpt2_vocab.bpe");
  REQUIRE(hf.vocab_size() == 50257);
  int compared = 0, mismatches = 0;
  for (const auto& t : cases().find("texts")->items) {
    ++compared;
    mismatches += hf.encode(t.text) != gpt2.encode(t.text);  // no special token parsed: plain text
  }
  CHECK(compared == 230);
  CHECK(mismatches == 0);
  CHECK(hf.encode("Hello world<|endoftext|>", true) == std::vector<int>{15496, 995, 50256});
}

TEST_CASE("NFC equals Python's unicodedata on 600 strings dense in marks and jamo", "[hf_tokenizer]") {
  const std::string text = read_all(LMSHRINK_TEST_DATA_DIR "/nfc_cases.json");
  const JsonValue root = lmshrink::detail::parse_json("test", "nfc_cases.json", text);
  const auto& texts = root.find("texts")->items;
  const auto& nfc = root.find("nfc")->items;
  REQUIRE(texts.size() == 600);
  int mismatches = 0, changed = 0;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    mismatches += lmshrink::detail::nfc(texts[i].text) != nfc[i].text;
    changed += texts[i].text != nfc[i].text;
  }
  CHECK(mismatches == 0);
  CHECK(changed > 300);  // the cases exercise composition, not the identity
  CHECK(lmshrink::detail::nfc("a\xff\xcc\x81") == "a\xff\xcc\x81");  // no composition across a non-UTF-8 byte
}

TEST_CASE("bad tokenizer.json files are clear errors naming the field", "[hf_tokenizer][errors]") {
  using Catch::Contains;
  const auto throws = [](const std::string& from, const std::string& to, const std::string& message) {
    INFO(message);
    CHECK_THROWS_AS(edited(from, to), lmshrink::format_error);
    CHECK_THROWS_WITH(edited(from, to), Contains("edited.json") && Contains(message));
  };
  throws("\"type\":\"BPE\"", "\"type\":\"WordPiece\"", "model.type is 'WordPiece'; only \"BPE\" is read");
  throws("\"byte_fallback\":false", "\"byte_fallback\":true", "model.byte_fallback is true: a SentencePiece-style");
  throws("\"dropout\":null", "\"dropout\":0.1", "model.dropout is set");
  throws("\"continuing_subword_prefix\":null", "\"continuing_subword_prefix\":\"##\"", "model.continuing_subword_prefix is set");
  throws("\"normalizer\":null", "\"normalizer\":{\"type\":\"NFKC\"}", "normalizer.type is 'NFKC'; null or NFC");
  throws("\"pattern\":{\"Regex\":\"", "\"pattern\":{\"Regex\":\"\\\\w+|", "pre_tokenizer.pretokenizers[0].pattern.Regex is '\\w+|");
  throws("\"behavior\":\"Isolated\"", "\"behavior\":\"Removed\"", "pre_tokenizer.pretokenizers[0].behavior is 'Removed'");
  throws("{\"type\":\"ByteLevel\",\"add_prefix_space\":false", "{\"type\":\"ByteLevel\",\"add_prefix_space\":true",
         "pre_tokenizer.pretokenizers[1].add_prefix_space is true");
  throws("{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}]",
         "{\"type\":\"Metaspace\"}]", "pre_tokenizer.pretokenizers[1] is Metaspace");
  throws("{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}]",
         "{\"type\":\"Digits\"}]", "pre_tokenizer has no ByteLevel step");
  throws("\"single_word\":false", "\"single_word\":true", "added_tokens[0].single_word is true");
  throws("\"id\":", "\"id\":-", "added_tokens[0].id is -");
  throws("\"decoder\":{\"type\":\"ByteLevel\"", "\"decoder\":{\"type\":\"WordPiece\"", "decoder.type is 'WordPiece'");
  throws("\"merges\":[[", "\"merges\":[7,[", "model.merges[0] is a number");
  throws("\"merges\":[[", "\"merges\":[\"a  b\",[", "model.merges[0] is 'a  b'; two tokens separated by one space");
  throws("\"merges\":[[", "\"merges\":[[\"\\u4e00\",\"zz\"],[", "has a character that is not one of GPT-2's 256 byte characters");
  throws("\"merges\":[[", "\"merges\":[[\"a\",\"a\"],[", "'edited.json': merge 1 joins parts that are not both tokens");
  // An added token far past the vocabulary leaves ids no token has.
  throws("\"id\":", "\"id\":99", "is neither in the model's vocabulary");
  CHECK_THROWS_WITH(lmshrink::parse_hf_tokenizer("{\"model\": {\"type\": \"BPE\"", "cut.json"),
                    Contains("cut.json"));
  CHECK_THROWS_WITH(lmshrink::parse_hf_tokenizer("{}", "empty.json"), Contains("'empty.json': the file.model is missing"));
  CHECK_THROWS_AS(lmshrink::read_hf_tokenizer(LMSHRINK_TEST_TMP "/no_such_tokenizer.json"), lmshrink::io_error);
}
