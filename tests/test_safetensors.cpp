// safetensors: round trips of every dtype and of compressed layers, and hostile files.
#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <lmshrink/compact.hpp>
#include <lmshrink/io/safetensors.hpp>
#include <lmshrink/pruner.hpp>
#include <lmshrink/svd_init.hpp>
#include <string>

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
