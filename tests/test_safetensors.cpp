// safetensors: round trips of every dtype and of compressed layers, and hostile files. Hugging
// Face checkpoint directories: Llama and GPT-2, F32/F16/BF16, shards, and bad configs and files.
#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <lmshrink/compact.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <lmshrink/random.hpp>
#include <lmshrink/io/hf_checkpoint.hpp>
#include <lmshrink/io/safetensors.hpp>
#include <lmshrink/pruner.hpp>
#include <lmshrink/svd_init.hpp>
#include <string>
#include <lmshrink/models/hf.hpp>
#include <lmshrink/models/llama/llama2c.hpp>

namespace {

std::string tmp(const std::string& name) { return std::string(LMSHRINK_TEST_TMP) + "/st_" + name; }

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// A file with the given JSON header and data bytes.
std::string file_with(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[std::size_t(i)] = char((std::uint64_t(header.size()) >> (8 * i)) & 0xff);
  return out + header + data;
}

template <class E>
void require_error(const std::string& bytes, const std::string& fragment) {
  const std::string path = tmp("hostile.safetensors");
  spit(path, bytes);
  try {
    lmshrink::read_safetensors(path);
    FAIL("no error for: " << fragment);
  } catch (const E& e) {
    CAPTURE(e.what());
    REQUIRE(std::string(e.what()).find(fragment) != std::string::npos);
  }
}

}  // namespace

TEST_CASE("safetensors round trip: tensors, dtypes and metadata", "[safetensors]") {
  lmshrink::SafeTensors st;
  lmshrink::RowMatrix<float> m = lmshrink::RowMatrix<float>::Random(3, 5);
  Eigen::VectorXd v = Eigen::VectorXd::Random(7);
  st.put("a.weight", m);
  st.put("b", v);
  st.put_int32("idx", {4, -1, 9});
  st.metadata["format"] = "pt";
  st.metadata["quote \" and \\ and\nnewline"] = "ünïcode ✓";
  const std::string path = tmp("round.safetensors");
  lmshrink::write_safetensors(st, path);
  const auto bytes = slurp(path);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[std::size_t(i)]);
  REQUIRE((8 + n) % 8 == 0);  // data aligned
  REQUIRE(bytes.substr(8, 14) == "{\"__metadata__");

  const auto back = lmshrink::read_safetensors(path);
  REQUIRE(back.matrix<float>("a.weight", 3, 5) == m);
  REQUIRE(back.vector<double>("b", 7) == v);
  REQUIRE(back.vector<float>("b", 7).isApprox(v.cast<float>()));
  REQUIRE(back.int32s("idx", 3) == std::vector<std::int32_t>{4, -1, 9});
  REQUIRE(back.meta("format") == "pt");
  REQUIRE(back.meta("quote \" and \\ and\nnewline") == "ünïcode ✓");
  REQUIRE_THROWS_WITH(back.matrix<float>("a.weight", 5, 3), Catch::Contains("has shape [3x5] but [5x3] was expected"));
  REQUIRE_THROWS_WITH(back.matrix<float>("nope", 1, 1), Catch::Contains("tensor 'nope' is missing"));
  REQUIRE_THROWS_WITH(back.matrix<float>("idx", 3, 1), Catch::Contains("has shape [3]"));
  REQUIRE_THROWS_WITH(back.vector<float>("idx", 3), Catch::Contains("is I32; a floating-point dtype was expected"));
  REQUIRE_THROWS_WITH(back.meta("missing"), Catch::Contains("metadata key 'missing' is missing"));
  REQUIRE_THROWS_WITH(back.meta_int("format", 0, 9), Catch::Contains("metadata 'format' is 'pt'; an integer in [0, 9]"));
}

TEST_CASE("safetensors metadata integers are plain decimals, nothing around them", "[safetensors]") {
  lmshrink::SafeTensors st;
  st.metadata = {{"ok", "42"}, {"negative", "-3"}, {"nul", std::string("3\0\0", 3)}, {"space", " 3"},
                 {"after", "3 "}, {"plus", "+3"}, {"hex", "0x10"}, {"empty", ""},
                 {"huge", "99999999999999999999"}, {"high", "10"}};
  REQUIRE(st.meta_int("ok", 0, 100) == 42);
  REQUIRE(st.meta_int("negative", -5, 0) == -3);
  for (const char* key : {"nul", "space", "after", "plus", "hex", "empty", "huge"})
    REQUIRE_THROWS_WITH(st.meta_int(key, -100, 100),
                        Catch::Contains(std::string("metadata '") + key) &&
                            Catch::Contains("an integer in [-100, 100] was expected"));
  REQUIRE_THROWS_WITH(st.meta_int("high", 0, 9), Catch::Contains("metadata 'high' is '10'; an integer in [0, 9]"));
}

TEST_CASE("safetensors reads F16 and BF16 (as Hugging Face checkpoints store them)", "[safetensors]") {
  // F16: 1.0 = 0x3c00, -2.5 = 0xc100, 65504 = 0x7bff, smallest subnormal 2^-24 = 0x0001.
  // BF16: 1.0 = 0x3f80, -0.15625 = 0xbe20.
  const std::string header =
      R"({"h":{"dtype":"F16","shape":[4],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]}})";
  const std::string data("\x00\x3c\x00\xc1\xff\x7b\x01\x00\x80\x3f\x20\xbe", 12);
  spit(tmp("half.safetensors"), file_with(header, data));
  const auto st = lmshrink::read_safetensors(tmp("half.safetensors"));
  const auto h = st.vector<float>("h", 4);
  REQUIRE(h[0] == 1.0f);
  REQUIRE(h[1] == -2.5f);
  REQUIRE(h[2] == 65504.0f);
  REQUIRE(h[3] == std::ldexp(1.0f, -24));
  const auto b = st.vector<double>("b", 2);
  REQUIRE(b[0] == 1.0);
  REQUIRE(b[1] == -0.15625);
}

TEST_CASE("compressed layers store U, V, kept rows and indices, and load without knowing the rank",
          "[safetensors]") {
  lmshrink::RowMatrix<float> w = lmshrink::RowMatrix<float>::Random(12, 9);
  lmshrink::LowRankSparseLinear<float> a;
  lmshrink::SvdInitOptions opt;
  opt.rank = 3;
  lmshrink::svd_init<float>(w, a, opt);
  lmshrink::RowMask keep = lmshrink::RowMask::Zero(12);
  keep[1] = keep[2] = keep[7] = keep[11] = 1;
  a.set_row_mask(keep);
  a.apply_masks();

  lmshrink::LowRankSparseLinear<float> b(6, 4, 0, /*with_bias=*/true);  // ITP with elements
  b.S() = lmshrink::RowMatrix<float>::Random(6, 4);
  b.bias() = Eigen::VectorXf::Random(6);
  lmshrink::ElementMask em = lmshrink::ElementMask::Ones(6, 4);
  em(0, 1) = em(3, 3) = 0;
  lmshrink::RowMask rows_b = lmshrink::RowMask::Ones(6);
  rows_b[4] = 0;
  b.set_row_mask(rows_b);
  b.set_element_mask(em);
  b.apply_masks();

  lmshrink::LowRankSparseLinear<float> c;  // low-rank only
  lmshrink::svd_init<float>(w, c, opt);
  lmshrink::make_low_rank_only(c);

  lmshrink::SafeTensors st;
  lmshrink::put_compressed_layer(st, "l.a", a, "losparse");
  lmshrink::put_compressed_layer(st, "l.b", b, "itp");
  lmshrink::put_compressed_layer(st, "l.c", c, "lowrank");
  REQUIRE(st.tensors.at("l.a.S_rows").shape == std::vector<std::int64_t>{4, 9});
  REQUIRE(st.tensors.at("l.c.S_rows").shape == std::vector<std::int64_t>{0, 9});
  REQUIRE(!st.contains("l.b.U"));
  const std::string path = tmp("layers.safetensors");
  lmshrink::write_safetensors(st, path);
  const auto back = lmshrink::read_safetensors(path);
  REQUIRE(back.meta("l.a.rank") == "3");
  REQUIRE(back.meta("l.a.method") == "losparse");
  for (const char* name : {"l.a", "l.b", "l.c"}) {
    const auto& orig = std::string(name) == "l.a" ? a : std::string(name) == "l.b" ? b : c;
    const auto got = lmshrink::get_compressed_layer<float>(back, name);
    CAPTURE(name);
    REQUIRE(lmshrink::has_compressed_layer(back, name));
    REQUIRE(got.rank() == orig.rank());
    REQUIRE(got.row_mask() == orig.row_mask());
    REQUIRE(got.has_element_mask() == orig.has_element_mask());
    REQUIRE(got.to_dense() == orig.to_dense());
    REQUIRE(got.live_parameters() == orig.live_parameters());
    REQUIRE(got.bias() == orig.bias());
    // The packed forms agree bit for bit.
    const auto pa = lmshrink::CompactLinear<float>::pack(orig), pb = lmshrink::CompactLinear<float>::pack(got);
    REQUIRE(pa.to_dense() == pb.to_dense());
  }
  // A bad index list is a format error, not a crash.
  lmshrink::SafeTensors broken = back;
  broken.put_int32("l.a.S_index", {1, 7, 2, 11});
  REQUIRE_THROWS_WITH(lmshrink::get_compressed_layer<float>(broken, "l.a"), Catch::Contains("strictly increasing rows in [0, 12)"));
  broken.put_int32("l.a.S_index", {1, 2, 7, 12});
  REQUIRE_THROWS_WITH(lmshrink::get_compressed_layer<float>(broken, "l.a"), Catch::Contains("entry 3 is 12"));
  broken.metadata["l.a.rank"] = "99";
  REQUIRE_THROWS_WITH(lmshrink::get_compressed_layer<float>(broken, "l.a"), Catch::Contains("'l.a.rank' is '99'; an integer in [0, 9]"));
}

TEST_CASE("hostile and damaged safetensors files give clear errors", "[safetensors]") {
  const std::string ok_header = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string data(8, '\0');
  spit(tmp("ok.safetensors"), file_with(ok_header, data));
  REQUIRE(lmshrink::read_safetensors(tmp("ok.safetensors")).vector<float>("t", 2).isZero());

  REQUIRE_THROWS_WITH(lmshrink::read_safetensors(tmp("missing.safetensors")), Catch::Contains("cannot open"));
  require_error<lmshrink::format_error>("abc", "truncated: an 8-byte header length");
  require_error<lmshrink::format_error>(file_with(ok_header, data).substr(0, 30), "declares a");
  require_error<lmshrink::format_error>(file_with(ok_header, data.substr(0, 5)), "outside the 5 data bytes");
  require_error<lmshrink::format_error>(file_with(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data),
                                        "has 8 bytes but its shape and dtype need 12");
  require_error<lmshrink::format_error>(file_with(R"({"t":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", data),
                                        "the dtype 'Q4'");
  require_error<lmshrink::format_error>(file_with(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data),
                                        "tensor 't' appears twice");
  require_error<lmshrink::format_error>(file_with(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"u":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})", data),
                                        "two tensors share bytes");
  require_error<lmshrink::format_error>(file_with(R"({"t":{"dtype":"F32","shape":[2]}})", data), "lacks dtype, shape or data_offsets");
  require_error<lmshrink::format_error>(file_with(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", data), "ends early");
  require_error<lmshrink::format_error>(file_with(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data), "non-negative integer");
  require_error<lmshrink::format_error>(file_with(R"({"t":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,8]}})", data), "overflows");
  require_error<lmshrink::format_error>(file_with(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", data), "impossible shape");
  require_error<lmshrink::format_error>(file_with(ok_header + "x", data), "trailing bytes");
  require_error<lmshrink::format_error>(file_with(R"({"t\q":{}})", data), "invalid escape");
  // NaN payloads are caught when the values are used.
  std::string nan_data(8, '\0');
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(&nan_data[4], &nan, 4);
  spit(tmp("nan.safetensors"), file_with(ok_header, nan_data));
  const auto st = lmshrink::read_safetensors(tmp("nan.safetensors"));
  REQUIRE_THROWS_WITH(st.vector<float>("t", 2), Catch::Contains("tensor 't' has a non-finite value at entry 1"));
}

TEST_CASE("a failed safetensors write leaves the previous file intact", "[safetensors]") {
  lmshrink::SafeTensors st;
  st.put("x", Eigen::VectorXf::Ones(3).eval());
  const std::string path = tmp("keep.safetensors");
  lmshrink::write_safetensors(st, path);
  const std::string before = slurp(path);
  REQUIRE_THROWS_AS(lmshrink::write_safetensors(st, tmp("no_such_dir/x.safetensors")), lmshrink::io_error);
  REQUIRE(slurp(path) == before);
}

// ---- Hugging Face checkpoint directories (io/hf_checkpoint.hpp) -----------------------------

namespace {

namespace fs = std::filesystem;

lmshrink::RowMatrix<float> rand_matrix(lmshrink::Index r, lmshrink::Index c, std::uint64_t seed) {
  lmshrink::SplitMix64 rng(seed);
  lmshrink::RowMatrix<float> m(r, c);
  for (lmshrink::Index i = 0; i < m.size(); ++i) m.data()[i] = float(rng.normal());
  return m;
}
lmshrink::Vector<float> rand_vector(lmshrink::Index n, std::uint64_t seed) {
  return rand_matrix(n, 1, seed).col(0);
}

lmshrink::models::llama::DenseModel tiny_llama(bool tied) {
  lmshrink::models::llama::DenseModel m;
  auto& c = m.config;
  c.dim = 8; c.hidden_dim = 12; c.n_layers = 2; c.n_heads = 2;
  c.n_kv_heads = 1; c.vocab_size = 16; c.seq_len = 8; c.shared_classifier = tied;
  c.norm_eps = 1e-6;
  c.rope_theta = 500000;
  std::uint64_t seed = 100;
  m.token_embedding = rand_matrix(16, 8, ++seed);
  if (!tied) m.wcls = rand_matrix(16, 8, ++seed);
  m.rms_final = rand_vector(8, ++seed);
  for (int l = 0; l < 2; ++l) {
    m.rms_att.push_back(rand_vector(8, ++seed));
    m.rms_ffn.push_back(rand_vector(8, ++seed));
    m.wq.push_back(rand_matrix(8, 8, ++seed));
    m.wk.push_back(rand_matrix(4, 8, ++seed));
    m.wv.push_back(rand_matrix(4, 8, ++seed));
    m.wo.push_back(rand_matrix(8, 8, ++seed));
    m.w1.push_back(rand_matrix(12, 8, ++seed));
    m.w2.push_back(rand_matrix(8, 12, ++seed));
    m.w3.push_back(rand_matrix(12, 8, ++seed));
  }
  return m;
}

lmshrink::models::gpt2::DenseModel tiny_gpt2() {
  lmshrink::models::gpt2::DenseModel m;
  auto& c = m.config;
  c.vocab_size = 20, c.dim = 8, c.hidden_dim = 32, c.n_layers = 2, c.n_heads = 2, c.n_positions = 6;
  std::uint64_t seed = 200;
  m.wte = rand_matrix(20, 8, ++seed);
  m.wpe = rand_matrix(6, 8, ++seed);
  for (int l = 0; l < 2; ++l) {
    m.ln1_w.push_back(rand_vector(8, ++seed));
    m.ln1_b.push_back(rand_vector(8, ++seed));
    m.attn_w.push_back(rand_matrix(24, 8, ++seed));
    m.attn_b.push_back(rand_vector(24, ++seed));
    m.proj_w.push_back(rand_matrix(8, 8, ++seed));
    m.proj_b.push_back(rand_vector(8, ++seed));
    m.ln2_w.push_back(rand_vector(8, ++seed));
    m.ln2_b.push_back(rand_vector(8, ++seed));
    m.fc_w.push_back(rand_matrix(32, 8, ++seed));
    m.fc_b.push_back(rand_vector(32, ++seed));
    m.fc_proj_w.push_back(rand_matrix(8, 32, ++seed));
    m.fc_proj_b.push_back(rand_vector(8, ++seed));
  }
  m.lnf_w = rand_vector(8, ++seed);
  m.lnf_b = rand_vector(8, ++seed);
  return m;
}

bool same_llama(const lmshrink::models::llama::DenseModel& a, const lmshrink::models::llama::DenseModel& b) {
  const auto& x = a.config;
  const auto& y = b.config;
  bool same = x.dim == y.dim && x.hidden_dim == y.hidden_dim && x.n_layers == y.n_layers &&
              x.n_heads == y.n_heads && x.n_kv_heads == y.n_kv_heads && x.vocab_size == y.vocab_size &&
              x.seq_len == y.seq_len && x.shared_classifier == y.shared_classifier &&
              x.norm_eps == y.norm_eps && x.rope_theta == y.rope_theta &&
              a.token_embedding == b.token_embedding && a.wcls == b.wcls && a.rms_final == b.rms_final;
  for (int l = 0; l < x.n_layers; ++l) {
    const std::size_t L = std::size_t(l);
    same = same && a.rms_att[L] == b.rms_att[L] && a.rms_ffn[L] == b.rms_ffn[L] && a.wq[L] == b.wq[L] &&
           a.wk[L] == b.wk[L] && a.wv[L] == b.wv[L] && a.wo[L] == b.wo[L] && a.w1[L] == b.w1[L] &&
           a.w2[L] == b.w2[L] && a.w3[L] == b.w3[L];
  }
  return same;
}

bool same_gpt2(const lmshrink::models::gpt2::DenseModel& a, const lmshrink::models::gpt2::DenseModel& b) {
  bool same = a.wte == b.wte && a.wpe == b.wpe && a.lnf_w == b.lnf_w && a.lnf_b == b.lnf_b &&
              a.config.norm_eps == b.config.norm_eps && a.attn_w.size() == b.attn_w.size();
  for (std::size_t l = 0; same && l < a.attn_w.size(); ++l)
    same = a.ln1_w[l] == b.ln1_w[l] && a.ln1_b[l] == b.ln1_b[l] && a.attn_w[l] == b.attn_w[l] &&
           a.attn_b[l] == b.attn_b[l] && a.proj_w[l] == b.proj_w[l] && a.proj_b[l] == b.proj_b[l] &&
           a.ln2_w[l] == b.ln2_w[l] && a.ln2_b[l] == b.ln2_b[l] && a.fc_w[l] == b.fc_w[l] &&
           a.fc_b[l] == b.fc_b[l] && a.fc_proj_w[l] == b.fc_proj_w[l] && a.fc_proj_b[l] == b.fc_proj_b[l];
  return same;
}

std::string fresh_dir(const std::string& name) {
  const std::string dir = tmp(name);
  fs::remove_all(dir);
  return dir;
}

template <class E, class F>
void require_throw(F f, const std::string& fragment) {
  try {
    f();
    FAIL("no error for: " << fragment);
  } catch (const E& e) {
    CAPTURE(e.what());
    REQUIRE(std::string(e.what()).find(fragment) != std::string::npos);
  }
}

}  // namespace

TEST_CASE("F16 and BF16 conversions round to nearest even and invert the readers", "[hf]") {
  using lmshrink::detail::float_to_bf16;
  using lmshrink::detail::float_to_half;
  using lmshrink::detail::half_to_float;
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const float f = half_to_float(std::uint16_t(h));
    if (std::isnan(f)) continue;
    REQUIRE(float_to_half(f) == h);
    std::uint32_t bits = h << 16;
    float b;
    std::memcpy(&b, &bits, 4);
    if (!std::isnan(b)) REQUIRE(float_to_bf16(b) == h);
  }
  REQUIRE(float_to_half(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);      // tie: to even (1.0)
  REQUIRE(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);  // tie: to even (up)
  REQUIRE(float_to_half(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)) == 0x3c01);
  REQUIRE(float_to_half(65519.0f) == 0x7bff);
  REQUIRE(float_to_half(65520.0f) == 0x7c00);
  REQUIRE(float_to_half(-1e9f) == 0xfc00);
  REQUIRE(float_to_half(std::ldexp(1.0f, -25)) == 0x0000);             // tie: to even (zero)
  REQUIRE(float_to_half(1.5f * std::ldexp(1.0f, -25)) == 0x0001);
  REQUIRE(float_to_half(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -26)) == 0x0400);  // up to the smallest normal
  REQUIRE(float_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 0x3f80);       // tie: to even
  REQUIRE(float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)) == 0x3f82);
  REQUIRE(std::isnan(half_to_float(float_to_half(std::nanf("")))));
}

TEST_CASE("Llama checkpoints in Hugging Face layout round-trip, with rotate-half q/k rows",
          "[hf]") {
  for (const bool tied : {false, true}) {
    const auto model = tiny_llama(tied);
    const std::string dir = fresh_dir(tied ? "llama_tied" : "llama");
    lmshrink::models::llama::write_hf(model, dir);
    const auto config = lmshrink::models::read_hf_config(dir + "/config.json");
    REQUIRE(config.model_type == "llama");
    REQUIRE(config.num_kv_heads == 1);
    REQUIRE(config.norm_eps == 1e-6);
    REQUIRE(config.rope_theta == 500000);
    REQUIRE(config.tie_word_embeddings == tied);
    const auto st = lmshrink::read_safetensors(dir + "/model.safetensors");
    REQUIRE(st.contains("lm_head.weight") == !tied);
    REQUIRE(st.metadata.size() == 1);  // {"format": "pt"}: nothing lmshrink-specific
    // Head size 4: HF row j·2 + i is llama2.c row 2i + j, so HF rows (0, 1, 2, 3) are (0, 2, 1, 3).
    const auto q = st.matrix<float>("model.layers.1.self_attn.q_proj.weight", 8, 8);
    REQUIRE(q.row(1) == model.wq[1].row(2));
    REQUIRE(q.row(2) == model.wq[1].row(1));
    REQUIRE(q.row(5) == model.wq[1].row(6));
    const auto k = st.matrix<float>("model.layers.0.self_attn.k_proj.weight", 4, 8);
    REQUIRE(k.row(1) == model.wk[0].row(2));
    REQUIRE(same_llama(lmshrink::models::llama::read_hf(dir), model));
  }
  // F16 and BF16 files read back as the rounded values; shards read back whole.
  const auto model = tiny_llama(false);
  for (const auto dtype : {lmshrink::Dtype::f16, lmshrink::Dtype::bf16}) {
    const std::string dir = fresh_dir("llama_half");
    lmshrink::models::llama::write_hf(model, dir, dtype);
    REQUIRE(lmshrink::read_safetensors(dir + "/model.safetensors").tensors.at("model.norm.weight").dtype == dtype);
    // config.json says what the weights are, so that a consumer loads them as such.
    REQUIRE(slurp(dir + "/config.json").find(dtype == lmshrink::Dtype::f16 ? "\"torch_dtype\": \"float16\""
                                                                             : "\"torch_dtype\": \"bfloat16\"") != std::string::npos);
    const auto back = lmshrink::models::llama::read_hf(dir);
    const auto rounded = [&](float x) {
      return dtype == lmshrink::Dtype::f16
                 ? lmshrink::detail::half_to_float(lmshrink::detail::float_to_half(x))
                 : [](std::uint16_t h) { std::uint32_t b = std::uint32_t(h) << 16; float f; std::memcpy(&f, &b, 4); return f; }(lmshrink::detail::float_to_bf16(x));
    };
    REQUIRE(back.w2[1](3, 7) == rounded(model.w2[1](3, 7)));
    REQUIRE(back.wq[0](5, 2) == rounded(model.wq[0](5, 2)));
    REQUIRE(back.token_embedding.isApprox(model.token_embedding, dtype == lmshrink::Dtype::f16 ? 1e-3f : 1e-2f));
  }
  // llama2.c → Hugging Face → llama2.c is byte-exact: the file's own RoPE tables travel beside
  // the weights; a model without them removes a stale table file; a wrong table is refused.
  {
    const std::string bin = std::string(LMSHRINK_DATA_DIR) + "/stories260K.bin";
    const std::string hf = fresh_dir("llama2c_round_trip");
    lmshrink::models::llama::write_hf(lmshrink::models::llama::read_llama2c(bin), hf);
    REQUIRE(fs::exists(hf + "/" + lmshrink::models::llama::kLlama2cRopeFile));
    const std::string back_dir = fresh_dir("llama2c_round_trip_back");
    fs::create_directories(back_dir);
    const std::string back = back_dir + "/back.bin";
    lmshrink::models::llama::write_llama2c(lmshrink::models::llama::read_hf(hf), back);
    REQUIRE(slurp(back) == slurp(bin));
    auto no_tables = lmshrink::models::llama::read_hf(hf);
    no_tables.freq_cis_real.resize(0, 0);
    no_tables.freq_cis_imag.resize(0, 0);
    no_tables.wq[0](0, 0) += 1;  // another model saved into the same directory
    lmshrink::models::llama::write_hf(no_tables, hf);
    REQUIRE(!fs::exists(hf + "/" + lmshrink::models::llama::kLlama2cRopeFile));
    auto wrong = lmshrink::models::llama::read_llama2c(bin);
    wrong.freq_cis_imag(3, 1) += 0.01f;
    lmshrink::models::llama::write_hf(wrong, hf);
    require_throw<lmshrink::format_error>([&] { lmshrink::models::llama::read_hf(hf); },
                                          "entry (3, 1) is not the RoPE table of this model");
  }
  // RoPE scaling is written as Llama 3.1 writes it and read back; a llama2.c file cannot hold it.
  auto scaled = tiny_llama(false);
  scaled.config.rope_scaling.type = "llama3";
  scaled.config.rope_scaling.factor = 8;
  scaled.config.rope_scaling.original_max_positions = 4;
  scaled.config.norm_eps = 1e-5;  // what a llama2.c file can mean, so that only the scaling is refused
  scaled.config.rope_theta = 10000;
  const std::string scaled_dir = fresh_dir("llama_rope_scaling");
  lmshrink::models::llama::write_hf(scaled, scaled_dir);
  REQUIRE(slurp(scaled_dir + "/config.json").find("\"rope_type\": \"llama3\"") != std::string::npos);
  REQUIRE(lmshrink::models::llama::read_hf(scaled_dir).config.rope_scaling == scaled.config.rope_scaling);
  require_throw<lmshrink::value_error>([&] { lmshrink::models::llama::write_llama2c(scaled, fresh_dir("x") + "/m.bin"); },
                                       "RoPE scaling");
  const std::string dir = fresh_dir("llama_sharded");
  lmshrink::models::llama::write_hf(model, dir, lmshrink::Dtype::f32, 1000);
  REQUIRE(!fs::exists(dir + "/model.safetensors"));
  REQUIRE(fs::exists(dir + "/model.safetensors.index.json"));
  int shards = 0;
  for (const auto& e : fs::directory_iterator(dir)) shards += e.path().filename().string().rfind("model-", 0) == 0;
  REQUIRE(shards > 5);
  REQUIRE(same_llama(lmshrink::models::llama::read_hf(dir), model));
}

TEST_CASE("GPT-2 checkpoints: Conv1D (in, out) weights, with or without the transformer prefix",
          "[hf]") {
  const auto model = tiny_gpt2();
  const std::string dir = fresh_dir("gpt2");
  lmshrink::models::gpt2::write_hf(model, dir);
  auto st = lmshrink::read_safetensors(dir + "/model.safetensors");
  REQUIRE(st.tensors.at("transformer.h.1.attn.c_attn.weight").shape == std::vector<std::int64_t>{8, 24});
  REQUIRE(st.tensors.at("transformer.h.0.mlp.c_proj.weight").shape == std::vector<std::int64_t>{32, 8});
  REQUIRE(st.matrix<float>("transformer.h.0.mlp.c_fc.weight", 8, 32)(3, 17) == model.fc_w[0](17, 3));
  REQUIRE(lmshrink::models::read_hf_config(dir + "/config.json").activation == "gelu_new");
  REQUIRE(same_gpt2(lmshrink::models::gpt2::read_hf(dir), model));
  // The hub's gpt2 file: names without "transformer.", with the causal-mask buffers.
  lmshrink::SafeTensors hub;
  for (auto& [name, t] : st.tensors) hub.tensors[name.substr(std::string("transformer.").size())] = t;
  const float mask[36] = {};
  hub.put("h.0.attn.bias", lmshrink::Dtype::f32, {1, 1, 6, 6}, mask);
  lmshrink::write_safetensors(hub, dir + "/model.safetensors");
  REQUIRE(same_gpt2(lmshrink::models::gpt2::read_hf(dir), model));
  // A tied lm_head copy is accepted when it is the copy.
  hub.put("lm_head.weight", model.wte);
  lmshrink::write_safetensors(hub, dir + "/model.safetensors");
  REQUIRE(same_gpt2(lmshrink::models::gpt2::read_hf(dir), model));
  // Beside "transformer." names too (GPT2LMHeadModel.save_pretrained without tying).
  st.put("lm_head.weight", model.wte);
  lmshrink::write_safetensors(st, dir + "/model.safetensors");
  REQUIRE(same_gpt2(lmshrink::models::gpt2::read_hf(dir), model));
  auto other = model.wte;
  other(0, 0) += 1;
  hub.put("lm_head.weight", other);
  lmshrink::write_safetensors(hub, dir + "/model.safetensors");
  require_throw<lmshrink::format_error>([&] { lmshrink::models::gpt2::read_hf(dir); }, "lm_head.weight differs from wte");
}

TEST_CASE("config.json and checkpoint directories that disagree or are unsupported are clear errors",
          "[hf][errors]") {
  using lmshrink::format_error;
  const auto config = [](const std::string& json) { return lmshrink::models::parse_hf_config(json, "config.json"); };
  const std::string llama = R"("model_type": "llama", "vocab_size": 16, "hidden_size": 8,
      "intermediate_size": 12, "num_hidden_layers": 2, "num_attention_heads": 2,
      "max_position_embeddings": 8)";
  const auto minimal = config("{" + llama + "}");
  REQUIRE(minimal.norm_eps == 1e-6);  // Hugging Face's LlamaConfig defaults
  REQUIRE(minimal.rope_theta == 10000);
  REQUIRE(minimal.num_kv_heads == 2);
  REQUIRE(!minimal.tie_word_embeddings);
  REQUIRE(!minimal.rope_scaling.enabled());
  // RoPE scaling as Llama 3.1 writes it, and the older "type" key of linear scaling.
  const auto llama31 = config("{" + llama + R"(, "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0,
      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"}})");
  REQUIRE(llama31.rope_scaling.type == "llama3");
  REQUIRE(llama31.rope_scaling.factor == 8);
  REQUIRE(llama31.rope_scaling.high_freq_factor == 4);
  REQUIRE(llama31.rope_scaling.original_max_positions == 8192);
  REQUIRE(config("{" + llama + R"(, "rope_scaling": {"type": "linear", "factor": 2}})").rope_scaling.factor == 2);
  const std::string gpt2 = R"("model_type": "gpt2", "vocab_size": 20, "n_embd": 8, "n_layer": 2,
      "n_head": 2, "n_positions": 6)";
  const auto g = config("{" + gpt2 + ", \"n_inner\": null}");
  REQUIRE(g.intermediate_size == 32);
  REQUIRE(g.norm_eps == 1e-5);
  REQUIRE(g.tie_word_embeddings);
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"[1]", "is an array; an object was expected"},
      {"{\"vocab_size\": 3}", "the key 'model_type' is missing"},
      {"{\"model_type\": \"gpt_neox\"}", "model_type 'gpt_neox' is not supported"},
      {"{\"model_type\": \"llama\"}", "the key 'vocab_size' is missing"},
      {"{" + llama + ", \"vocab_size\": 16}", "has the key 'vocab_size' twice"},
      {R"({"model_type": "llama", "vocab_size": -1})", "'vocab_size' is -1; an integer in [1, "},
      {R"({"model_type": "llama", "vocab_size": 16.5})", "'vocab_size' is 16.5"},
      {R"({"model_type": "llama", "vocab_size": "16"})", "'vocab_size' is a string"},
      {"{" + llama + ", \"hidden_act\": \"gelu\"}", "'hidden_act' is 'gelu'"},
      {"{" + llama + ", \"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2}}",
       "'config.json': in 'rope_scaling', the type is 'dynamic'; lmshrink implements \"linear\" and \"llama3\""},
      {"{" + llama + ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8}}",
       "'low_freq_factor' is missing; llama3 scaling needs it"},
      {"{" + llama + ", \"rope_scaling\": {\"type\": \"linear\"}}", "in 'rope_scaling', 'factor' is missing"},
      {"{" + llama + ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 0.5}}", "'factor' is 0.5"},
      {"{" + llama + ", \"rope_scaling\": 2}", "'rope_scaling' is a number; an object was expected"},
      {"{" + llama + ", \"attention_bias\": true}", "'attention_bias' is set"},
      {"{" + llama + ", \"num_key_value_heads\": 3}", "not a multiple of 3 key/value heads"},
      {"{" + llama + ", \"head_dim\": 8}", "'head_dim' is 8"},
      {"{" + llama + ", \"rms_norm_eps\": 0}", "'rms_norm_eps' is 0"},
      {R"({"model_type": "llama", "vocab_size": 16, "hidden_size": 65536, "intermediate_size": 12,
          "num_hidden_layers": 1, "num_attention_heads": 1, "max_position_embeddings": 1048576})",
       "more than the 2^28 RoPE table entries"},
      {"{" + gpt2 + ", \"activation_function\": \"relu\"}", "'activation_function' is 'relu'"},
      {"{" + gpt2 + ", \"tie_word_embeddings\": false}", "'tie_word_embeddings' is false"},
      {"{" + gpt2 + ", \"scale_attn_by_inverse_layer_idx\": true}", "attention scaled by layer index"},
      {"{" + gpt2 + ", \"add_cross_attention\": true}", "cross-attention"},
      {R"({"model_type": "gpt2", "vocab_size": 20, "n_embd": 8, "n_layer": 2, "n_head": 3, "n_positions": 6})",
       "n_embd 8 is not a multiple of n_head 3"},
  };
  for (const auto& entry : bad) {
    const std::string& json = entry.first;
    INFO(json);
    require_throw<format_error>([&] { config(json); }, entry.second);
    require_throw<format_error>([&] { config(json); }, "[lmshrink.format] read_hf_config: 'config.json'");
  }

  // A directory of PyTorch pickles is refused with the command that converts it.
  {
    const std::string pickled = fresh_dir("pytorch_only");
    lmshrink::models::llama::write_hf(tiny_llama(false), pickled);
    fs::rename(pickled + "/model.safetensors", pickled + "/pytorch_model.bin");
    require_throw<lmshrink::io_error>([&] { lmshrink::models::llama::read_hf(pickled); },
                                      "holds pytorch_model.bin (a PyTorch pickle) and no model.safetensors");
    require_throw<lmshrink::io_error>([&] { lmshrink::models::llama::read_hf(pickled); },
                                      "save_pretrained('" + pickled + "-safetensors', safe_serialization=True)");
  }

  // Directories: the config and the tensors disagree.
  const auto model = tiny_llama(false);
  const std::string dir = fresh_dir("llama_bad");
  lmshrink::models::llama::write_hf(model, dir);
  const auto config_text = slurp(dir + "/config.json");
  const auto with_config = [&](const std::string& from, const std::string& to) {
    std::string t = config_text;
    const auto at = t.find(from);
    REQUIRE(at != std::string::npos);
    spit(dir + "/config.json", t.replace(at, from.size(), to));
  };
  with_config("\"hidden_size\": 8", "\"hidden_size\": 16");
  require_throw<format_error>([&] { lmshrink::models::llama::read_hf(dir); },
                              "disagrees with config.json: [lmshrink.format] SafeTensors::matrix: tensor "
                              "'model.embed_tokens.weight' has shape [16x8] but [16x16] was expected");
  with_config("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1");
  require_throw<format_error>([&] { lmshrink::models::llama::read_hf(dir); },
                              "holds the tensor 'model.layers.1.input_layernorm.weight', which config.json's model does not have");
  with_config("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3");
  require_throw<format_error>([&] { lmshrink::models::llama::read_hf(dir); },
                              "tensor 'model.layers.2.input_layernorm.weight' is missing");
  with_config("\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true");
  require_throw<format_error>([&] { lmshrink::models::llama::read_hf(dir); }, "lm_head.weight differs");
  spit(dir + "/config.json", config_text);
  require_throw<format_error>([&] { lmshrink::models::gpt2::read_hf(dir); }, "is a 'llama' model; \"gpt2\" was expected");
  // A weight in a dtype that is not a float, and one with a non-finite value.
  auto st = lmshrink::read_safetensors(dir + "/model.safetensors");
  const auto good = st;
  const std::vector<std::int32_t> ints(8, 1);
  st.put("model.norm.weight", lmshrink::Dtype::i32, {8}, ints.data());
  lmshrink::write_safetensors(st, dir + "/model.safetensors");
  require_throw<format_error>([&] { lmshrink::models::llama::read_hf(dir); },
                              "tensor 'model.norm.weight' is I32; a floating-point dtype was expected");
  st = good;
  lmshrink::Vector<float> nan = model.rms_final;
  nan[3] = std::nanf("");
  st.put("model.norm.weight", nan);
  lmshrink::write_safetensors(st, dir + "/model.safetensors");
  require_throw<lmshrink::numeric_error>([&] { lmshrink::models::llama::read_hf(dir); }, "non-finite value at entry 3");
  // No weights at all; a config.json that is not there.
  fs::remove(dir + "/model.safetensors");
  require_throw<lmshrink::io_error>([&] { lmshrink::models::llama::read_hf(dir); }, "model.safetensors");
  require_throw<lmshrink::io_error>([&] { lmshrink::models::llama::read_hf(tmp("no_such_dir")); }, "config.json");

  // Shard indexes that point outside the directory, at missing tensors, or miss some.
  const std::string sharded = fresh_dir("llama_bad_index");
  lmshrink::models::llama::write_hf(model, sharded, lmshrink::Dtype::f32, 1000);
  const std::string index_text = slurp(sharded + "/model.safetensors.index.json");
  const auto with_index = [&](const std::string& from, const std::string& to) {
    std::string t = index_text;
    const auto at = t.find(from);
    REQUIRE(at != std::string::npos);
    spit(sharded + "/model.safetensors.index.json", t.replace(at, from.size(), to));
  };
  with_index("\"model-00001-of-", "\"../model-00001-of-");
  require_throw<format_error>([&] { lmshrink::models::llama::read_hf(sharded); }, "a file name in the same directory was expected");
  with_index("\"weight_map\"", "\"weights\"");
  require_throw<format_error>([&] { lmshrink::models::llama::read_hf(sharded); }, "has no \"weight_map\" object");
  with_index("\"model.norm.weight\"", "\"model.norm.weight2\"");
  require_throw<format_error>([&] { lmshrink::models::llama::read_hf(sharded); }, "lacks 'model.norm.weight2'");
}
