// The reference decoder (examples/lmshrink/models/llama/decoder.hpp) against run.c: the greedy sample
// token for token, and the README's window-1 NLL, also through a Hugging Face checkpoint; and the
// tokenizer's encoding of the held-out stories against the reference token stream.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <lmshrink/io/hf_checkpoint.hpp>
#include <lmshrink/io/tokenizer.hpp>
#include <string>
#include <sstream>
#include <vector>

#include <lmshrink/models/llama/decoder.hpp>

#include "test_helpers.hpp"
#include <lmshrink/models/llama/llama2c.hpp>
#include <lmshrink/models/llama/hf.hpp>
#include <lmshrink/models/llama/synthetic.hpp>

namespace {

std::string read_text(const std::string& path) {
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

}  // namespace

// Here rather than in test_tokenizer (built with sanitizers at -O0, where it took 15 s): the
// tokenizer over all 1,000 held-out stories, optimised, in 0.1 s.
TEST_CASE("encoding the held-out stories with the protocol gives the reference stream exactly",
          "[tokenizer]") {
  const auto tok = lmshrink::read_tokenizer(LMSHRINK_DATA_DIR "/tok512.bin");
  const std::string text = read_text(LMSHRINK_DATA_DIR "/tinystories_valid_first1000.txt");
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

TEST_CASE("greedy generation reproduces run.c's sample token for token", "[decoder]") {
  const auto model = lmshrink::models::llama::read_llama2c(LMSHRINK_DATA_DIR "/stories260K.bin");
  const auto want = test::read_u16(LMSHRINK_DATA_DIR "/stories260K_greedy_t0.ids.u16");
  lmshrink::models::llama::DenseKvDecoder dec(model);
  int token = 1;
  for (int pos = 0; pos + 1 < int(want.size()); ++pos) {
    const auto& z = dec.forward(token, pos);
    Eigen::Index next = 0;
    z.maxCoeff(&next);
    CAPTURE(pos);
    REQUIRE(int(next) == want[std::size_t(pos) + 1]);
    token = int(next);
  }
}

TEST_CASE("the first evaluation window's NLL matches the README", "[decoder]") {
  const auto model = lmshrink::models::llama::read_llama2c(LMSHRINK_DATA_DIR "/stories260K.bin");
  const auto stream = test::read_u16(LMSHRINK_DATA_DIR "/tinystories_valid_first1000.tok512.u16");
  lmshrink::models::llama::DenseKvDecoder dec(model);
  const auto s = lmshrink::models::llama::score_window(dec, stream.data(), stream.data() + 1, 512);
  REQUIRE(s.tokens == 512);
  const double nll = s.nll_sum / double(s.tokens);
  CAPTURE(nll);
  REQUIRE(std::abs(nll - 1.239298) < 1e-4);
  REQUIRE_THROWS_AS(dec.forward(512, 0), lmshrink::value_error);
  REQUIRE_THROWS_AS(dec.forward(1, 512), lmshrink::value_error);
}

TEST_CASE("the full-sequence forward equals the KV-cache forward", "[decoder]") {
  const auto model = lmshrink::models::llama::read_llama2c(LMSHRINK_DATA_DIR "/stories260K.bin");
  const auto stream = test::read_u16(LMSHRINK_DATA_DIR "/tinystories_valid_first1000.tok512.u16");
  lmshrink::models::llama::DenseKvDecoder kv(model);
  lmshrink::models::llama::DenseSequenceDecoder seq(model);
  const auto& logits = seq.forward(stream.data(), 512);
  REQUIRE(logits.rows() == 512);
  double max_diff = 0;
  for (int pos = 0; pos < 512; ++pos)
    max_diff = std::max<double>(max_diff, (kv.forward(stream[std::size_t(pos)], pos).transpose() - logits.row(pos)).cwiseAbs().maxCoeff());
  CAPTURE(max_diff);
  REQUIRE(max_diff < 1e-3);
  const auto s = lmshrink::models::score_logits<float>(logits, stream.data() + 1);
  REQUIRE(std::abs(s.nll_sum / 512.0 - 1.239298) < 1e-4);
  REQUIRE_THROWS_AS(seq.forward(stream.data(), 513), lmshrink::value_error);
}

TEST_CASE("stories260K converted to Hugging Face layout gives the same logits and NLL", "[decoder][hf]") {
  const auto model = lmshrink::models::llama::read_llama2c(LMSHRINK_DATA_DIR "/stories260K.bin");
  const auto stream = test::read_u16(LMSHRINK_DATA_DIR "/tinystories_valid_first1000.tok512.u16");
  const std::string dir = LMSHRINK_TEST_TMP "/stories260K_hf";
  std::filesystem::remove_all(dir);
  lmshrink::models::llama::write_hf(model, dir);
  const auto hf = lmshrink::models::llama::read_hf(dir);  // no lmshrink metadata: config.json only
  lmshrink::models::llama::DenseSequenceDecoder a(model), b(hf);
  const auto& la = a.forward(stream.data(), 512);
  const auto& lb = b.forward(stream.data(), 512);
  REQUIRE(la == lb);  // the q/k row permutation round trip is exact
  const auto s = lmshrink::models::score_logits<float>(lb, stream.data() + 1);
  REQUIRE(std::abs(s.nll_sum / 512.0 - 1.239298) < 1e-4);
  // BF16 weights: close, not identical.
  std::filesystem::remove_all(dir);
  lmshrink::models::llama::write_hf(model, dir, lmshrink::Dtype::bf16);
  const auto bf16 = lmshrink::models::llama::read_hf(dir);
  lmshrink::models::llama::DenseSequenceDecoder c(bf16);
  const auto sc = lmshrink::models::score_logits<float>(c.forward(stream.data(), 512), stream.data() + 1);
  CAPTURE(sc.nll_sum / 512.0);
  REQUIRE(std::abs(sc.nll_sum / 512.0 - 1.239298) < 0.02);
  std::filesystem::remove_all(dir);
}

TEST_CASE("the decoders' RoPE table covers the positions used, not the model's whole context",
          "[decoder]") {
  lmshrink::models::llama::RopeTable rope(1 << 26, 8, 10000.0);  // a 2^26-position context: 2 GiB if sized to it
  CHECK(rope.covered() == 0);
  rope.cover(10);
  CHECK(rope.covered() == 10);
  rope.cover(11);  // grows by doubling
  CHECK(rope.covered() == 20);
  rope.cover(5);
  CHECK(rope.covered() == 20);
  // Angles as run.c computes them, whatever the order of growth.
  lmshrink::models::llama::RopeTable whole(64, 8, 10000.0);
  whole.cover(64);
  float a[8] = {1, 0, 1, 0, 1, 0, 1, 0}, b[8] = {1, 0, 1, 0, 1, 0, 1, 0};
  rope.rotate(a, 8, 17);
  whole.rotate(b, 8, 17);
  for (int i = 0; i < 8; ++i) CHECK(a[i] == b[i]);
  CHECK(a[0] == std::cos(17.0f));
}

// A Hugging Face directory with TinyLlama 1.1B's shapes and random weights (bf16, 2.2 GB), and a
// 32,000-token llama2.c tokenizer (tok512's pieces, then pieces no text contains), for the main
// job's plan, memory and time at that size (docs/compress.md). Hidden: run it by hand with
// SYNTHETIC_LLAMA_DIR set.
TEST_CASE("write a TinyLlama-shaped model with synthetic weights", "[.make_synthetic_llama]") {
  const char* out = std::getenv("SYNTHETIC_LLAMA_DIR");
  REQUIRE(out != nullptr);
  const auto c = lmshrink::models::llama::tinyllama_shape();
  lmshrink::models::llama::write_hf(lmshrink::models::llama::synthetic_model(c, 2023), out, lmshrink::Dtype::bf16);
  const auto tok512 = lmshrink::read_tokenizer(LMSHRINK_DATA_DIR "/tok512.bin");
  std::vector<std::string> pieces = tok512.pieces();
  std::vector<float> scores = tok512.scores();
  while (int(pieces.size()) < c.vocab_size) {
    pieces.push_back("<unused" + std::to_string(pieces.size()) + ">");
    scores.push_back(-1e6f);
  }
  lmshrink::write_tokenizer(lmshrink::Tokenizer(pieces, scores), std::string(out) + "/tokenizer.bin");
  REQUIRE(lmshrink::read_tokenizer(std::string(out) + "/tokenizer.bin").vocab_size() == c.vocab_size);
  REQUIRE(lmshrink::models::llama::read_hf(out).config.dim == c.dim);
}
