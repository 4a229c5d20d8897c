// The llama2.c tokenizer: the bundled tok512.bin, the held-out token stream reproduced exactly,
// decoding the reference greedy sample, atomic round trip and bad files.
#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <lmshrink/io/tokenizer.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "test_helpers.hpp"

namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}


std::string strip(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  const auto b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

}  // namespace

TEST_CASE("tok512.bin reads as the README describes", "[tokenizer]") {
  const auto tok = lmshrink::read_tokenizer(LMSHRINK_DATA_DIR "/tok512.bin", 512);
  REQUIRE(tok.vocab_size() == 512);
  REQUIRE(tok.max_token_length() == 7);
  REQUIRE(tok.piece(1) == "\n<s>\n");
  REQUIRE(tok.piece(2) == "\n</s>\n");
  REQUIRE(tok.piece(3) == "<0x00>");
  REQUIRE(tok.piece(258) == "<0xFF>");
  REQUIRE(tok.find(" ") == 410);
  REQUIRE(tok.score(259) == 0.0f);
  REQUIRE(tok.score(511) == -252.0f);
}

TEST_CASE("encoding the held-out stories with the protocol gives the reference stream exactly",
          "[tokenizer]") {
  const auto tok = lmshrink::read_tokenizer(LMSHRINK_DATA_DIR "/tok512.bin");
  const std::string text = read_all(LMSHRINK_DATA_DIR "/tinystories_valid_first1000.txt");
  const std::vector<int> want = test::read_u16(LMSHRINK_DATA_DIR "/tinystories_valid_first1000.tok512.u16");
  REQUIRE(want.size() == 387036);
  std::vector<int> got;
  const std::string sep = "<|endoftext|>";
  std::size_t at = 0, stories = 0;
  while (true) {
    const std::size_t next = text.find(sep, at);
    std::string story = strip(text.substr(at, next == std::string::npos ? std::string::npos : next - at));
    if (!story.empty()) {
      for (std::size_t p = story.find("\n\n"); p != std::string::npos; p = story.find("\n\n", p + 1))
        story.replace(p, 2, "\n");
      const auto ids = tok.encode(story, true, false);
      got.insert(got.end(), ids.begin(), ids.end());
      ++stories;
    }
    if (next == std::string::npos) break;
    at = next + sep.size();
  }
  REQUIRE(stories == 1000);
  REQUIRE(got.size() == want.size());
  std::size_t first_diff = 0;
  while (first_diff < got.size() && got[first_diff] == want[first_diff]) ++first_diff;
  CAPTURE(first_diff);
  REQUIRE(got == want);
}

TEST_CASE("decoding the reference greedy ids gives run.c's text", "[tokenizer]") {
  const auto tok = lmshrink::read_tokenizer(LMSHRINK_DATA_DIR "/tok512.bin");
  const auto ids = test::read_u16(LMSHRINK_DATA_DIR "/stories260K_greedy_t0.ids.u16");
  REQUIRE(ids.size() == 257);
  REQUIRE(ids[0] == lmshrink::Tokenizer::kBos);
  const std::string text = read_all(LMSHRINK_DATA_DIR "/stories260K_greedy_t0.txt");
  REQUIRE(tok.decode(ids) + "\n" == text);
  // Encoding a short text and decoding it back.
  const auto e = tok.encode("Once upon a time, Lily saw a café.", true, true);
  REQUIRE(e.front() == 1);
  REQUIRE(e.back() == 2);
  REQUIRE(tok.decode(std::vector<int>(e.begin(), e.end() - 1)) == "Once upon a time, Lily saw a café.");
  REQUIRE(tok.encode("", true, false) == std::vector<int>{1});
}

TEST_CASE("a tokenizer written and read back is identical", "[tokenizer]") {
  const auto tok = lmshrink::read_tokenizer(LMSHRINK_DATA_DIR "/tok512.bin");
  const std::string path = LMSHRINK_TEST_TMP "/tok512_roundtrip.bin";
  lmshrink::write_tokenizer(tok, path);
  REQUIRE(read_all(path) == read_all(LMSHRINK_DATA_DIR "/tok512.bin"));
  std::remove(path.c_str());
}

TEST_CASE("missing, truncated and foreign tokenizer files are clear errors", "[tokenizer][errors]") {
  REQUIRE_THROWS_AS(lmshrink::read_tokenizer(LMSHRINK_TEST_TMP "/missing.bin"), lmshrink::io_error);
  const std::string good = read_all(LMSHRINK_DATA_DIR "/tok512.bin");
  const std::string path = LMSHRINK_TEST_TMP "/tok_bad.bin";
  write_bytes(path, good.substr(0, good.size() - 3));
  REQUIRE_THROWS_WITH(lmshrink::read_tokenizer(path),
                      Catch::Contains("[lmshrink.format] read_tokenizer") && Catch::Contains("truncated"));
  write_bytes(path, good.substr(0, 2));
  REQUIRE_THROWS_AS(lmshrink::read_tokenizer(path), lmshrink::format_error);
  // A model checkpoint is not a tokenizer.
  REQUIRE_THROWS_AS(lmshrink::read_tokenizer(LMSHRINK_DATA_DIR "/stories260K.bin"), lmshrink::format_error);
  REQUIRE_THROWS_WITH(lmshrink::read_tokenizer(LMSHRINK_DATA_DIR "/tok512.bin", 32000),
                      Catch::Contains("has 512 tokens but the model's vocabulary has 32000"));
  std::remove(path.c_str());
  const auto tok = lmshrink::read_tokenizer(LMSHRINK_DATA_DIR "/tok512.bin");
  REQUIRE_THROWS_AS(tok.decode(1, 512), lmshrink::value_error);
}
