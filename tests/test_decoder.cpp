// The reference decoder (examples/models/llama/llama_decoder.hpp) against run.c: the greedy sample
// token for token, and the README's window-1 NLL, also through a Hugging Face checkpoint.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <lmshrink/io/hf_checkpoint.hpp>
#include <sstream>
#include <vector>

#include "../examples/models/llama/llama_decoder.hpp"

#include "test_helpers.hpp"

TEST_CASE("greedy generation reproduces run.c's sample token for token", "[decoder]") {
  const auto model = lmshrink::read_llama2c(LMSHRINK_DATA_DIR "/stories260K.bin");
  const auto want = test::read_u16(LMSHRINK_DATA_DIR "/stories260K_greedy_t0.ids.u16");
  examples::LlamaKvDecoder dec(model);
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
  const auto model = lmshrink::read_llama2c(LMSHRINK_DATA_DIR "/stories260K.bin");
  const auto stream = test::read_u16(LMSHRINK_DATA_DIR "/tinystories_valid_first1000.tok512.u16");
  examples::LlamaKvDecoder dec(model);
  const auto s = examples::score_window(dec, stream.data(), stream.data() + 1, 512);
  REQUIRE(s.tokens == 512);
  const double nll = s.nll_sum / double(s.tokens);
  CAPTURE(nll);
  REQUIRE(std::abs(nll - 1.239298) < 1e-4);
  REQUIRE_THROWS_AS(dec.forward(512, 0), lmshrink::value_error);
  REQUIRE_THROWS_AS(dec.forward(1, 512), lmshrink::value_error);
}

TEST_CASE("the full-sequence forward equals the KV-cache forward", "[decoder]") {
  const auto model = lmshrink::read_llama2c(LMSHRINK_DATA_DIR "/stories260K.bin");
  const auto stream = test::read_u16(LMSHRINK_DATA_DIR "/tinystories_valid_first1000.tok512.u16");
  examples::LlamaKvDecoder kv(model);
  examples::LlamaSequenceDecoder seq(model);
  const auto& logits = seq.forward(stream.data(), 512);
  REQUIRE(logits.rows() == 512);
  double max_diff = 0;
  for (int pos = 0; pos < 512; ++pos)
    max_diff = std::max<double>(max_diff, (kv.forward(stream[std::size_t(pos)], pos).transpose() - logits.row(pos)).cwiseAbs().maxCoeff());
  CAPTURE(max_diff);
  REQUIRE(max_diff < 1e-3);
  const auto s = examples::score_logits(logits, stream.data() + 1);
  REQUIRE(std::abs(s.nll_sum / 512.0 - 1.239298) < 1e-4);
  REQUIRE_THROWS_AS(seq.forward(stream.data(), 513), lmshrink::value_error);
}

TEST_CASE("stories260K converted to Hugging Face layout gives the same logits and NLL", "[decoder][hf]") {
  const auto model = lmshrink::read_llama2c(LMSHRINK_DATA_DIR "/stories260K.bin");
  const auto stream = test::read_u16(LMSHRINK_DATA_DIR "/tinystories_valid_first1000.tok512.u16");
  const std::string dir = LMSHRINK_TEST_TMP "/stories260K_hf";
  std::filesystem::remove_all(dir);
  lmshrink::write_hf_llama(model, dir);
  const auto hf = lmshrink::read_hf_llama(dir);  // no lmshrink metadata: config.json only
  examples::LlamaSequenceDecoder a(model), b(hf);
  const auto& la = a.forward(stream.data(), 512);
  const auto& lb = b.forward(stream.data(), 512);
  REQUIRE(la == lb);  // the q/k row permutation round trip is exact
  const auto s = examples::score_logits(lb, stream.data() + 1);
  REQUIRE(std::abs(s.nll_sum / 512.0 - 1.239298) < 1e-4);
  // BF16 weights: close, not identical.
  std::filesystem::remove_all(dir);
  lmshrink::write_hf_llama(model, dir, lmshrink::Dtype::bf16);
  const auto bf16 = lmshrink::read_hf_llama(dir);
  examples::LlamaSequenceDecoder c(bf16);
  const auto sc = examples::score_logits(c.forward(stream.data(), 512), stream.data() + 1);
  CAPTURE(sc.nll_sum / 512.0);
  REQUIRE(std::abs(sc.nll_sum / 512.0 - 1.239298) < 0.02);
  std::filesystem::remove_all(dir);
}
