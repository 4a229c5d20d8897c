#include <catch2/catch.hpp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <lmshrink/models/llama/llama2c.hpp>
#include <string>
#include <vector>
#include <unistd.h>

using Catch::Matchers::Contains;

namespace {

const std::string kModel = LMSHRINK_DATA_DIR "/stories260K.bin";

std::vector<char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

float float_at(const std::vector<char>& bytes, std::size_t float_index) {
  float v;
  std::memcpy(&v, bytes.data() + 28 + 4 * float_index, 4);
  return v;
}

std::string temp_path(const std::string& name) {
  return std::string(LMSHRINK_TEST_TMP) + "/" + name;
}

}  // namespace

TEST_CASE("reads the real stories260K checkpoint", "[llama2c][real]") {
  auto m = lmshrink::models::llama::read_llama2c(kModel);
  const auto& c = m.config;
  REQUIRE(c.dim == 64);
  REQUIRE(c.hidden_dim == 172);
  REQUIRE(c.n_layers == 5);
  REQUIRE(c.n_heads == 8);
  REQUIRE(c.n_kv_heads == 4);
  REQUIRE(c.vocab_size == 512);
  REQUIRE(c.seq_len == 512);
  REQUIRE(c.shared_classifier);
  REQUIRE(c.kv_dim() == 32);
  REQUIRE(c.head_size() == 8);
  REQUIRE(m.parameter_count() == 260032);
  const auto weights = m.linear_weights();
  REQUIRE(weights.size() == 35);
  REQUIRE(weights[1].name == "layers.0.attention.wk");
  REQUIRE(weights[1].matrix->rows() == 32);
  REQUIRE(weights[34].name == "layers.4.feed_forward.w3");
  REQUIRE(weights[34].matrix->rows() == 172);

  // Spot-check the layout against raw file offsets computed independently here.
  const auto bytes = read_bytes(kModel);
  const std::size_t emb = 512 * 64, rms = 5 * 64, wq = 5 * 64 * 64, wk = 5 * 32 * 64;
  REQUIRE(m.token_embedding(1, 2) == float_at(bytes, 1 * 64 + 2));
  REQUIRE(m.rms_att[3][5] == float_at(bytes, emb + 3 * 64 + 5));
  REQUIRE(m.wq[2](10, 20) == float_at(bytes, emb + rms + 2 * 4096 + 10 * 64 + 20));
  REQUIRE(m.wk[4](31, 63) == float_at(bytes, emb + rms + wq + 4 * 2048 + 31 * 64 + 63));
  const std::size_t w2_start = emb + rms + wq + 2 * wk + wq + rms + 5 * 172 * 64;
  REQUIRE(m.w2[4](63, 171) == float_at(bytes, w2_start + 4 * 64 * 172 + 63 * 172 + 171));
  REQUIRE(m.freq_cis_imag(511, 3) == float_at(bytes, (bytes.size() - 28) / 4 - 1));
  // The legacy RoPE table holds cos(pos * 10000^(-2i/head_size)).
  REQUIRE(m.freq_cis_real(7, 1) == Approx(std::cos(7 * std::pow(10000.0, -2.0 / 8))).margin(1e-6));
}

TEST_CASE("write_llama2c round-trips byte for byte, shared and separate classifier",
          "[llama2c]") {
  const std::string out = temp_path("roundtrip.bin");
  auto m = lmshrink::models::llama::read_llama2c(kModel);
  lmshrink::models::llama::write_llama2c(m, out);
  REQUIRE(read_bytes(out) == read_bytes(kModel));

  m.config.shared_classifier = false;
  m.wcls = m.token_embedding * 0.5f;
  lmshrink::models::llama::write_llama2c(m, out);
  const auto back = lmshrink::models::llama::read_llama2c(out);
  REQUIRE_FALSE(back.config.shared_classifier);
  REQUIRE(back.config.vocab_size == 512);
  REQUIRE(back.wcls == m.wcls);
  REQUIRE(read_bytes(out).size() == read_bytes(kModel).size() + 512 * 64 * 4);
  std::remove(out.c_str());
}

TEST_CASE("missing, truncated, padded and inconsistent checkpoints are rejected",
          "[llama2c][errors]") {
  REQUIRE_THROWS_WITH(lmshrink::models::llama::read_llama2c(temp_path("does-not-exist.bin")),
                      Contains("[lmshrink.io] read_llama2c: cannot open"));
  // A directory was reported as a 9223372036854775807-byte file.
  REQUIRE_THROWS_WITH(lmshrink::models::llama::read_llama2c(LMSHRINK_DATA_DIR),
                      Contains("[lmshrink.io] read_llama2c: '") && Contains("' is a directory; a file was expected"));
  REQUIRE_THROWS_WITH(lmshrink::models::llama::read_llama2c("/dev/null"), Contains("is not a regular file"));
  const auto good = read_bytes(kModel);
  const std::string bad = temp_path("bad.bin");

  write_bytes(bad, std::vector<char>(good.begin(), good.begin() + 10));
  REQUIRE_THROWS_WITH(lmshrink::models::llama::read_llama2c(bad),
                      Contains("a 28-byte header was expected, the file has 10 bytes"));
  for (std::size_t cut : {std::size_t(28), std::size_t(5000), good.size() - 1}) {
    write_bytes(bad, std::vector<char>(good.begin(), good.begin() + cut));
    REQUIRE_THROWS_WITH(lmshrink::models::llama::read_llama2c(bad),
                        Contains("bytes but its header") && Contains("describes 1056540 bytes"));
  }
  auto padded = good;
  padded.insert(padded.end(), 4, 0);
  write_bytes(bad, padded);
  REQUIRE_THROWS_AS(lmshrink::models::llama::read_llama2c(bad), lmshrink::format_error);

  const auto with_header_field = [&](int field, std::int32_t value) {
    auto b = good;
    std::memcpy(b.data() + 4 * field, &value, 4);
    write_bytes(bad, b);
  };
  with_header_field(0, 0);
  REQUIRE_THROWS_WITH(lmshrink::models::llama::read_llama2c(bad), Contains("header field dim must be in [1, 65536], got 0"));
  with_header_field(3, 7);
  REQUIRE_THROWS_WITH(lmshrink::models::llama::read_llama2c(bad),
                      Contains("dim (64) must be a multiple of n_heads (7)"));
  with_header_field(4, 3);
  REQUIRE_THROWS_WITH(lmshrink::models::llama::read_llama2c(bad),
                      Contains("n_heads (8) must be a multiple of n_kv_heads (3)"));
  with_header_field(2, -5);
  REQUIRE_THROWS_AS(lmshrink::models::llama::read_llama2c(bad), lmshrink::format_error);
  with_header_field(5, std::numeric_limits<std::int32_t>::min());  // was reported as "got 0"
  REQUIRE_THROWS_WITH(lmshrink::models::llama::read_llama2c(bad),
                      Contains("vocab_size must be in [1, 1048576]") && Contains("got -2147483648"));
  with_header_field(5, -512);  // separate classifier announced but missing
  REQUIRE_THROWS_AS(lmshrink::models::llama::read_llama2c(bad), lmshrink::format_error);
  with_header_field(1, 0x7fffffff);  // absurd hidden_dim: no overflow, no huge allocation
  REQUIRE_THROWS_AS(lmshrink::models::llama::read_llama2c(bad), lmshrink::format_error);

  auto nan = good;
  const float q = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(nan.data() + 28 + 4 * (512 * 64 + 5 * 64 + 7), &q, 4);
  write_bytes(bad, nan);
  REQUIRE_THROWS_WITH(lmshrink::models::llama::read_llama2c(bad),
                      Contains("tensor layers.0.attention.wq holds a non-finite value"));
  std::remove(bad.c_str());
}

TEST_CASE("a failed write leaves the previous checkpoint intact", "[llama2c][errors]") {
  const std::string out = temp_path("keep.bin");
  auto m = lmshrink::models::llama::read_llama2c(kModel);
  lmshrink::models::llama::write_llama2c(m, out);
  const auto before = read_bytes(out);

  auto broken = m;
  broken.w2[3].resize(10, 10);
  REQUIRE_THROWS_WITH(lmshrink::models::llama::write_llama2c(broken, out),
                      Contains("[lmshrink.shape] write_llama2c: w2 is 10x10 but 64x172"));
  REQUIRE(read_bytes(out) == before);

  // A write that fails half way (the callback reports failure) leaves no temporary behind.
  REQUIRE_THROWS_AS(lmshrink::detail::write_file_atomically("test", out,
                                                           [](std::FILE* f) {
                                                             std::fputs("partial", f);
                                                             return false;
                                                           }),
                    lmshrink::io_error);
  REQUIRE(read_bytes(out) == before);
  REQUIRE_THROWS_AS(lmshrink::detail::write_file_atomically(
                        "test", out,
                        [](std::FILE*) -> bool { throw std::runtime_error("interrupted"); }),
                    std::runtime_error);
  REQUIRE(read_bytes(out) == before);
  // No temporary of any saver is left beside the checkpoint.
  const std::string dir = out.substr(0, out.find_last_of('/'));
  const std::string prefix = out.substr(out.find_last_of('/') + 1) + ".tmp.";
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    REQUIRE(entry.path().filename().string().rfind(prefix, 0) != 0);

  REQUIRE_THROWS_WITH(lmshrink::models::llama::write_llama2c(m, temp_path("no-such-dir/x.bin")),
                      Contains("[lmshrink.io] write_llama2c: cannot write") &&
                          Contains("no-such-dir' does not exist"));
  std::remove(out.c_str());
}
