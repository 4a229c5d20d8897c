// SentencePiece tokenizer.model files: the bundled tok512.model against tok512.bin; encoding and
// decoding against Google's sentencepiece library (tests/data/sentencepiece_cases.json, made by
// tools/gen_sentencepiece_references.py) for three models, including user-defined symbols,
// UNUSED pieces and invalid UTF-8; against llama2.c's encoding of the held-out stories; against
// a naive merge loop; and bad files.
#define LMSHRINK_TESTING_INTERNALS  // the internal JSON reader loads the reference cases
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <lmshrink/detail/json.hpp>
#include <lmshrink/io/sentencepiece.hpp>
#include <lmshrink/io/tokenizer.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "test_helpers.hpp"

#ifndef LMSHRINK_TEST_DATA_DIR
#error "LMSHRINK_TEST_DATA_DIR (tests/data) must be defined"
#endif

namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

const lmshrink::detail::JsonValue& cases() {
  static const std::string text = read_all(LMSHRINK_TEST_DATA_DIR "/sentencepiece_cases.json");
  static const lmshrink::detail::JsonValue root =
      lmshrink::detail::parse_json("test", "sentencepiece_cases.json", text, {64, std::int64_t(1) << 22});
  return root;
}

std::vector<int> ints(const lmshrink::detail::JsonValue& v) {
  std::vector<int> out;
  for (const auto& x : v.items) out.push_back(int(x.integer));
  return out;
}

std::string from_hex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) out += char(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

std::string model_path(const std::string& name) {
  return name == "tok512" ? std::string(LMSHRINK_DATA_DIR "/tok512.model")
                          : std::string(LMSHRINK_TEST_DATA_DIR "/spm_") + name + ".model";
}

const char* const kModels[] = {"tok512", "llama_style", "llama_style_unused"};

// A protobuf writer for hand-made files.
std::string varint(std::uint64_t v) {
  std::string out;
  do {
    unsigned char b = v & 0x7F;
    v >>= 7;
    if (v) b |= 0x80;
    out += char(b);
  } while (v);
  return out;
}
std::string key(int field, int wire) { return varint(std::uint64_t(field) << 3 | unsigned(wire)); }
std::string bytes_field(int field, const std::string& body) { return key(field, 2) + varint(body.size()) + body; }
std::string varint_field(int field, std::int64_t v) { return key(field, 0) + varint(std::uint64_t(v)); }
std::string piece(const std::string& text, float score, int type) {
  std::string score_bytes(4, '\0');
  std::memcpy(score_bytes.data(), &score, 4);
  return bytes_field(1, bytes_field(1, text) + key(2, 5) + score_bytes + varint_field(3, type));
}
/// A small valid BPE model: <unk>, <s>, </s>, "▁", "a", "b", "▁a", "ab", and `extra` appended.
std::string small_model(const std::string& extra = "", const std::string& trainer_extra = "",
                        const std::string& normalizer = "") {
  std::string m = piece("<unk>", 0, 2) + piece("<s>", 0, 3) + piece("</s>", 0, 3) + piece("\xE2\x96\x81", -1, 1) +
                  piece("a", -2, 1) + piece("b", -3, 1) + piece("\xE2\x96\x81" "a", -0.5f, 1) + piece("ab", -0.25f, 1);
  m += extra;
  m += bytes_field(2, varint_field(3, 2) + trainer_extra);
  m += bytes_field(3, bytes_field(1, "identity") + normalizer);
  return m;
}
lmshrink::SentencePieceTokenizer parse(const std::string& bytes) {
  return lmshrink::parse_sentencepiece(bytes.data(), bytes.size(), "test.model");
}

/// SentencePiece's BPE merge loop written for clarity (quadratic): the reference for encode() on
/// texts without user-defined or UNUSED pieces.
std::vector<int> naive_encode(const lmshrink::SentencePieceTokenizer& tok, const std::string& text) {
  const std::string normalized = tok.normalize(text);
  std::vector<std::string> symbols;
  for (std::size_t at = 0; at < normalized.size();) {
    std::size_t n = 1;
    while (at + n < normalized.size() && (static_cast<unsigned char>(normalized[at + n]) & 0xC0) == 0x80) ++n;
    symbols.push_back(normalized.substr(at, n));
    at += n;
  }
  while (true) {
    int best = -1;
    float best_score = 0;
    for (std::size_t i = 0; i + 1 < symbols.size(); ++i) {
      const int id = tok.find(symbols[i] + symbols[i + 1]);
      if (id < 0 || tok.type(id) != lmshrink::PieceType::normal) continue;
      if (best < 0 || tok.score(id) > best_score) {
        best = int(i);
        best_score = tok.score(id);
      }
    }
    if (best < 0) break;
    symbols[std::size_t(best)] += symbols[std::size_t(best) + 1];
    symbols.erase(symbols.begin() + best + 1);
  }
  std::vector<int> ids;
  for (const std::string& s : symbols) {
    const int id = tok.find(s);
    if (id >= 0) {
      ids.push_back(id);
    } else {
      for (unsigned char c : s) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "<0x%02X>", c);
        ids.push_back(tok.find(hex));
      }
    }
  }
  return ids;
}

}  // namespace

TEST_CASE("tok512.model reads with the pieces and scores of tok512.bin", "[sentencepiece]") {
  const auto tok = lmshrink::read_sentencepiece(LMSHRINK_DATA_DIR "/tok512.model");
  const auto bin = lmshrink::read_tokenizer(LMSHRINK_DATA_DIR "/tok512.bin");
  REQUIRE(tok.vocab_size() == 512);
  CHECK(tok.unk_id() == 0);
  CHECK(tok.bos_id() == 1);
  CHECK(tok.eos_id() == 2);
  CHECK(tok.pad_id() == -1);
  CHECK(tok.settings().byte_fallback);
  CHECK(tok.settings().add_dummy_prefix);
  CHECK(tok.settings().remove_extra_whitespaces);
  CHECK(tok.type(3) == lmshrink::PieceType::byte);
  CHECK(tok.piece(3 + 0x41) == "<0x41>");
  int same = 0;
  for (int i = 0; i < 512; ++i) {
    std::string p = tok.piece(i);
    for (std::size_t at; (at = p.find("\xE2\x96\x81")) != std::string::npos;) p.replace(at, 3, " ");
    if (i < 3) continue;  // llama2.c writes <unk>, <s>, </s> as "\n<s>\n" and "\n</s>\n"
    same += p == bin.piece(i) && tok.score(i) == bin.score(i);
  }
  CHECK(same == 509);
  CHECK(tok.find("\xE2\x96\x81" "a") == 261);
  CHECK(tok.find("no such piece") == -1);
}

TEST_CASE("SentencePiece encoding equals Google's library on 260 texts per model", "[sentencepiece]") {
  const auto& root = cases();
  const auto& texts = root.find("texts")->items;
  const auto& byte_texts = root.find("byte_texts_hex")->items;
  REQUIRE(texts.size() == 230);
  REQUIRE(byte_texts.size() == 30);
  for (const char* name : kModels) {
    const auto tok = lmshrink::read_sentencepiece(model_path(name));
    const auto& ref = *root.find("models")->find(name);
    int compared = 0, mismatches = 0;
    std::string first;
    const auto compare = [&](const std::string& text, const lmshrink::detail::JsonValue& ids) {
      ++compared;
      if (tok.encode(text) != ints(ids) && mismatches++ == 0) first = text;
    };
    for (std::size_t i = 0; i < texts.size(); ++i) compare(texts[i].text, ref.find("ids")->items[i]);
    for (std::size_t i = 0; i < byte_texts.size(); ++i)
      compare(from_hex(byte_texts[i].text), ref.find("byte_ids")->items[i]);
    INFO(name << ": first mismatch on '" << first << "'");
    CHECK(compared == 260);
    CHECK(mismatches == 0);
  }
}

TEST_CASE("SentencePiece decoding equals Google's library", "[sentencepiece]") {
  const auto& root = cases();
  for (const char* name : kModels) {
    const auto tok = lmshrink::read_sentencepiece(model_path(name));
    const auto& ref = *root.find("models")->find(name);
    int compared = 0, mismatches = 0;
    std::string first_got, first_expected;
    const auto compare = [&](const lmshrink::detail::JsonValue& ids, const lmshrink::detail::JsonValue& text) {
      ++compared;
      const std::string got = tok.decode(ints(ids));
      if (got != text.text && mismatches++ == 0) {
        first_got = got;
        first_expected = text.text;
      }
    };
    const auto& ids = ref.find("ids")->items;
    for (std::size_t i = 0; i < ids.size(); ++i) compare(ids[i], ref.find("decoded")->items[i]);
    const auto& sequences = ref.find("sequences")->items;
    for (std::size_t i = 0; i < sequences.size(); ++i) compare(sequences[i], ref.find("decoded_sequences")->items[i]);
    INFO(name);
    CHECK(compared == 294);
    CHECK(mismatches == 0);
    CHECK(first_got == first_expected);
  }
}

TEST_CASE("tok512.model encodes the held-out stories as llama2.c did, but for repeated spaces",
          "[sentencepiece]") {
  // The bundled stream was encoded by llama2.c's encoder, which keeps repeated spaces; a
  // SentencePiece model with remove_extra_whitespaces collapses them (4 of the 1000 stories).
  const auto tok = lmshrink::read_sentencepiece(LMSHRINK_DATA_DIR "/tok512.model");
  const std::vector<int> stream = test::read_u16(LMSHRINK_DATA_DIR "/tinystories_valid_first1000.tok512.u16");
  const std::string text = read_all(LMSHRINK_DATA_DIR "/tinystories_valid_first1000.txt");
  std::size_t at = 0, begin = 0;
  int stories = 0, compared = 0, mismatches = 0;
  while (begin < text.size()) {
    std::size_t end = text.find("<|endoftext|>", begin);
    if (end == std::string::npos) end = text.size();
    std::string story = text.substr(begin, end - begin);
    begin = end + 13;
    const auto first = story.find_first_not_of(" \n\t\r"), last = story.find_last_not_of(" \n\t\r");
    if (first == std::string::npos) continue;
    story = story.substr(first, last - first + 1);
    for (std::size_t p = 0; (p = story.find("\n\n", p)) != std::string::npos; ++p) story.replace(p, 2, "\n");
    ++stories;
    const std::vector<int> ids = tok.encode(story, true);
    REQUIRE(at < stream.size());
    REQUIRE(stream[at] == 1);
    std::size_t next = at + 1;
    while (next < stream.size() && stream[next] != 1) ++next;
    if (story.find("  ") != std::string::npos) {
      at = next;
      continue;
    }
    ++compared;
    if (std::vector<int>(stream.begin() + std::ptrdiff_t(at), stream.begin() + std::ptrdiff_t(next)) != ids &&
        mismatches++ == 0)
      WARN("first mismatch: story " << stories << ": '" << story << "'");
    at = next;
  }
  CHECK(stories == 1000);
  CHECK(compared == 996);
  CHECK(mismatches == 0);
}

TEST_CASE("SentencePiece encoding equals a naive merge loop, and long texts round-trip",
          "[sentencepiece]") {
  const auto tok = lmshrink::read_sentencepiece(LMSHRINK_TEST_DATA_DIR "/spm_llama_style.model");
  std::mt19937 rng(7);
  const std::vector<std::string> pool = {"a", "b", "e", "the", " ", "  ", "\n", "\t", "1", "é", "日", "🙂", ".",
                                         "\xE2\x96\x81", "s", "t", "o", "n"};
  int compared = 0;
  for (int n = 0; n < 300; ++n) {
    std::string text;
    const int len = int(rng() % 40);
    for (int i = 0; i < len; ++i) text += pool[rng() % pool.size()];
    REQUIRE(tok.encode(text) == naive_encode(tok, text));
    ++compared;
  }
  CHECK(compared == 300);
  // A 1 MB text without spaces: the priority-queue encoder is O(n log n), the naive loop would
  // take hours. Whitespace is kept as typed by this model, so the text comes back.
  std::string long_text;
  while (long_text.size() < (1u << 20)) long_text += "thesunwasbright1234éé日🙂\t";
  const std::vector<int> ids = tok.encode(long_text);
  CHECK(ids.size() > 100000);
  CHECK(tok.decode(ids) == long_text);
}

TEST_CASE("BOS and EOS are the model's control pieces", "[sentencepiece]") {
  const auto tok = lmshrink::read_sentencepiece(LMSHRINK_DATA_DIR "/tok512.model");
  const std::vector<int> ids = tok.encode("Hi", true, true);
  REQUIRE(ids.size() >= 3);
  CHECK(ids.front() == 1);
  CHECK(ids.back() == 2);
  CHECK(tok.decode(ids) == "Hi");
  // A model whose BOS piece is named differently has no BOS: asking for one is an error.
  const auto other = parse(small_model("", bytes_field(46, "<bos>")));
  CHECK(other.bos_id() == -1);
  CHECK(other.eos_id() == 2);
  CHECK_THROWS_WITH(other.encode("a", true), Catch::Contains("no BOS control piece '<bos>'"));
  CHECK(other.encode("ab") == std::vector<int>{3, 7});  // "▁" + "ab" outscores "▁a" + "b"
  CHECK_THROWS_WITH(other.decode({8}), Catch::Contains("token 8 is outside [0, 8)"));
}

TEST_CASE("bad tokenizer.model files are clear errors", "[sentencepiece][errors]") {
  using Catch::Contains;
  REQUIRE_NOTHROW(parse(small_model()));
  const auto throws = [](const std::string& bytes, const std::string& message) {
    INFO(message);
    CHECK_THROWS_AS(parse(bytes), lmshrink::format_error);
    CHECK_THROWS_WITH(parse(bytes), Contains("test.model") && Contains(message));
  };
  throws("", "holds no pieces");
  throws(small_model("", varint_field(3, 1)), "model_type 1 (unigram); only BPE models (2)");
  throws(small_model("", "", bytes_field(2, "charsmap")), "precompiled character map (normalizer 'identity')");
  throws(small_model("", varint_field(24, 1)), "treat_whitespace_as_suffix");
  throws(small_model(piece("a", 0, 1)), "piece 8 'a' is defined twice");
  throws(small_model(piece("", 0, 1)), "piece 8 is empty");
  throws(small_model(piece("<x>", 0, 2)), "two <unk> pieces: 0 and 8");
  throws(small_model(piece("c", 0, 9)), "piece 8 has type 9; 1 to 6 was expected");
  throws(small_model(piece("<0x41>", 0, 6)), "is a byte piece but byte_fallback is off");
  throws(small_model(piece("<0x41>", 0, 6), varint_field(35, 1)), "byte_fallback on but 1 of the 256 byte pieces");
  throws(small_model(piece("<0x4g>", 0, 6), varint_field(35, 1)), "byte piece 8 is '<0x4g>'");
  const float nan = std::numeric_limits<float>::quiet_NaN();
  throws(small_model(piece("c", nan, 1)), "piece 8 has a non-finite score");
  std::string no_unk = small_model();
  no_unk.replace(0, piece("<unk>", 0, 2).size(), piece("<unk>", 0, 3));
  throws(no_unk, "has no <unk> piece");
  // Wire-level damage.
  throws(key(1, 3), "wire type 3");
  throws(key(1, 2) + varint(1000) + "abc", "declares 1000 bytes but 3 remain");
  throws(key(9, 0) + std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 10), "overflows 64 bits");
  throws(key(9, 0) + std::string("\xff\xff", 2), "a varint is truncated");
  throws(key(0, 0) + varint(1), "a field number in [1, 2^29)");
  throws(bytes_field(1, key(2, 5) + "ab"), "a 32-bit value needs 4 bytes, 2 remain");
  throws(bytes_field(1, varint_field(2, 1)), "field 2 has wire type 0 but a 32-bit value was expected");
  throws(bytes_field(2, varint_field(3, std::int64_t(1) << 40)), "outside int32");
  throws(small_model().substr(0, small_model().find(bytes_field(3, bytes_field(1, "identity")))),
         "has no normalizer_spec (field 3): it is truncated");
  // Every truncation of the bundled model is refused, never read as a smaller model.
  const std::string real = read_all(LMSHRINK_DATA_DIR "/tok512.model");
  int refused = 0;
  for (std::size_t n = 0; n < real.size(); n += 7) {
    try {
      (void)parse(real.substr(0, n));
    } catch (const lmshrink::format_error&) {
      ++refused;
    }
  }
  CHECK(refused == int((real.size() + 6) / 7));
  CHECK_THROWS_WITH(lmshrink::parse_sentencepiece(real.data(), real.size(), "tok512.model", 32000),
                    Contains("'tok512.model' has 512 pieces but the model's vocabulary has 32000"));
  CHECK_THROWS_AS(lmshrink::read_sentencepiece(LMSHRINK_TEST_TMP "/no_such.model"), lmshrink::io_error);
  CHECK_THROWS_WITH(lmshrink::read_sentencepiece(LMSHRINK_TEST_TMP), Contains("is a directory"));
}
