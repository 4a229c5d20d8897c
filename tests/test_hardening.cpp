// Regression tests from hostile files and states (SPEC §17): each of these once crashed,
// allocated without bound, overflowed or was reported badly.
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <lmshrink/io/hf_checkpoint.hpp>
#include <lmshrink/models/llama/llama2c.hpp>
#include <lmshrink/io/safetensors.hpp>
#include <lmshrink/io/tokenizer.hpp>
#include <lmshrink/pruner.hpp>
#include <string>
#include <vector>
#include <lmshrink/models/hf.hpp>

using Catch::Matchers::Contains;
using lmshrink::Index;

namespace {

std::string temp_path(const std::string& name) { return std::string(LMSHRINK_TEST_TMP) + "/hardening_" + name; }

/// A safetensors file: the 8-byte length, the header as given, then the data bytes.
std::vector<char> safetensors_bytes(const std::string& header, std::size_t data_bytes = 0) {
  std::string b(8, '\0');
  for (int i = 0; i < 8; ++i) b[std::size_t(i)] = char(std::uint64_t(header.size()) >> (8 * i));
  b += header;
  b.append(data_bytes, '\0');
  return {b.begin(), b.end()};
}

lmshrink::SafeTensors parse(const std::vector<char>& b) {
  return lmshrink::parse_safetensors(b.data(), b.size(), "hostile");
}

/// A compressed layer's metadata with rank 0 and no kept rows: a few bytes that describe a dense
/// S of out × in.
std::string empty_layer_header(long long out, long long in) {
  return "{\"__metadata__\":{\"l.rank\":\"0\",\"l.out_features\":\"" + std::to_string(out) +
         "\",\"l.in_features\":\"" + std::to_string(in) +
         "\",\"l.kept_rows\":\"0\",\"l.method\":\"x\"},"
         "\"l.S_index\":{\"dtype\":\"I32\",\"shape\":[0],\"data_offsets\":[0,0]},"
         "\"l.S_rows\":{\"dtype\":\"F32\",\"shape\":[0," + std::to_string(in) +
         "],\"data_offsets\":[0,0]}}";
}

std::vector<char> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

}  // namespace

TEST_CASE("1. a tiny file cannot make get_compressed_layer allocate a huge dense S",
          "[hardening][safetensors]") {
  // 2^24 x 2^24 asked for 2^48 floats (std::bad_alloc escaped); 65536 x 65536 for 16 GiB.
  for (long long dim : {1LL << 24, 65536LL}) {
    const auto bytes = safetensors_bytes(empty_layer_header(dim, dim));
    CAPTURE(dim, bytes.size());
    REQUIRE(bytes.size() < 300);
    const auto st = parse(bytes);
    REQUIRE_THROWS_WITH(lmshrink::get_compressed_layer<float>(st, "l"),
                        Contains("[lmshrink.format] get_compressed_layer: layer 'l' is") &&
                            Contains("but at most 268435456 are allowed") &&
                            Contains("ReadLimits::max_layer_elements"));
  }
  // The limit is the documented default and can be raised or lowered.
  const auto st = parse(safetensors_bytes(empty_layer_header(300, 200)));
  const auto layer = lmshrink::get_compressed_layer<float>(st, "l");
  REQUIRE(layer.out_features() == 300);
  REQUIRE(layer.S().isZero());
  lmshrink::ReadLimits small;
  small.max_layer_elements = 300 * 200 - 1;
  REQUIRE_THROWS_AS(lmshrink::get_compressed_layer<float>(st, "l", small), lmshrink::format_error);
  // Tensors are checked before the layer is built: a wrong S_rows shape is reported first.
  auto bad = empty_layer_header(300, 200);
  bad.replace(bad.find("[0,200]"), 7, "[0,199]");
  REQUIRE_THROWS_WITH(lmshrink::get_compressed_layer<float>(parse(safetensors_bytes(bad)), "l"),
                      Contains("tensor 'l.S_rows' has shape [0x199] but [0x200] was expected"));
}

TEST_CASE("1. overlapping tensors are refused before any copy", "[hardening][safetensors]") {
  // Many names for one range would copy the same bytes many times over.
  std::string header = "{";
  for (int i = 0; i < 50; ++i)
    header += std::string(i ? "," : "") + "\"t" + std::to_string(i) +
              "\":{\"dtype\":\"U8\",\"shape\":[64],\"data_offsets\":[0,64]}";
  header += "}";
  REQUIRE_THROWS_WITH(parse(safetensors_bytes(header, 64)), Contains("two tensors share bytes [0, 64)"));
}

TEST_CASE("2. every dimension is range-checked alone, products even when a factor is 0",
          "[hardening][safetensors]") {
  // 2^63 next to a 0 was stored as int64 -1 and hit Eigen's resize assertion.
  for (const char* shape : {"[9223372036854775808,0]", "[0,9223372036854775808]",
                            "[18446744073709551615,0]", "[1099511627777,0]"}) {
    CAPTURE(shape);
    const std::string h = std::string("{\"t\":{\"dtype\":\"F32\",\"shape\":") + shape +
                          ",\"data_offsets\":[0,0]}}";
    REQUIRE_THROWS_WITH(parse(safetensors_bytes(h)), Contains("at most 2^40 is supported"));
  }
  // Each dimension allowed, the product of the non-zero ones not: refused whatever the order.
  for (const char* shape : {"[1099511627776,1099511627776,0]", "[0,1099511627776,1099511627776]"}) {
    CAPTURE(shape);
    const std::string h = std::string("{\"t\":{\"dtype\":\"F32\",\"shape\":") + shape +
                          ",\"data_offsets\":[0,0]}}";
    REQUIRE_THROWS_WITH(parse(safetensors_bytes(h)), Contains("impossible shape"));
  }
  // A large dimension beside a 0 is a legitimate empty tensor: it reads, writes and reads back.
  const auto st = parse(safetensors_bytes(
      "{\"t\":{\"dtype\":\"F32\",\"shape\":[1099511627776,0],\"data_offsets\":[0,0]}}"));
  REQUIRE(st.tensors.at("t").elements() == 0);
  const std::string path = temp_path("empty_big.safetensors");
  lmshrink::write_safetensors(st, path);
  REQUIRE(lmshrink::read_safetensors(path).tensors.at("t").shape ==
          std::vector<std::int64_t>{std::int64_t(1) << 40, 0});
  std::filesystem::remove(path);
  // The writer refuses what the reader would refuse, and the accessors refuse negative sizes.
  lmshrink::SafeTensors w;
  REQUIRE_THROWS_WITH(w.put("n", lmshrink::Dtype::f32, {-1, 0}, nullptr),
                      Contains("[lmshrink.value] SafeTensors::put: tensor 'n' has the shape [-1x0]"));
  REQUIRE_THROWS_AS(w.put("n", lmshrink::Dtype::f32, {std::int64_t(1) << 41, 0}, nullptr),
                    lmshrink::value_error);
  REQUIRE_THROWS_WITH(st.matrix<float>("t", -1, 0), Contains("dimensions >= 0 were expected"));
  REQUIRE_THROWS_AS(st.vector<float>("t", -3), lmshrink::value_error);
}

namespace {

struct SmallPruner {
  lmshrink::LowRankSparseLinear<double> layer{4, 3, 1};
  lmshrink::LowRankSparseLinear<double>::Gradients grads = layer.make_gradients();
  lmshrink::Pruner<double> pruner;
  explicit SmallPruner(lmshrink::PrunerOptions o = options()) : pruner(o) {
    layer.S().setConstant(0.5);
    grads.S.setConstant(0.25);
    pruner.add("l", layer, grads);
  }
  static lmshrink::PrunerOptions options() {
    lmshrink::PrunerOptions o;
    o.schedule = {20, 2, 4, 0.5, 2};
    return o;
  }
};

/// A saved state (after steps 0..2), edited by `edit`, as the bytes of its file.
template <class Edit>
std::vector<char> edited_state(Edit edit) {
  SmallPruner p;
  for (int g = 0; g < 3; ++g) p.pruner.after_optimizer_step(g);
  const std::string path = temp_path("state.safetensors");
  p.pruner.save(path);
  lmshrink::SafeTensors st = lmshrink::read_safetensors(path);
  edit(st);
  lmshrink::write_safetensors(st, path);
  auto bytes = read_all(path);
  std::filesystem::remove(path);
  return bytes;
}

/// A saved state with its step replaced.
std::vector<char> state_with_step(std::int64_t step) {
  return edited_state([step](lmshrink::SafeTensors& st) { st.metadata["lmshrink.step"] = std::to_string(step); });
}

}  // namespace

TEST_CASE("3. a pruner state's step and values are range-checked", "[hardening][pruner]") {
  // Step 2^63-1 loaded, then the next step overflowed; step -1000 loaded and re-opened add().
  for (std::int64_t step : {std::numeric_limits<std::int64_t>::max(), std::int64_t(-1000),
                            (std::int64_t(1) << 62) + 1}) {
    CAPTURE(step);
    const auto bytes = state_with_step(step);
    SmallPruner p;
    REQUIRE_THROWS_WITH(p.pruner.parse_state(bytes.data(), bytes.size(), "state"),
                        Contains("has step " + std::to_string(step)) &&
                            Contains("-1 (no step yet) or a step in [0, 2^62] was expected"));
    REQUIRE(p.pruner.last_step() == -1);  // nothing changed
  }
  // A valid state at step 2 resumes at step 3.
  const auto good = state_with_step(2);
  SmallPruner ok;
  ok.pruner.parse_state(good.data(), good.size(), "state");
  REQUIRE(ok.pruner.last_step() == 2);
  REQUIRE_NOTHROW(ok.pruner.after_optimizer_step(3));
  // Step -1 (no step yet) with importance already accumulated cannot come from save().
  const auto early = state_with_step(-1);
  SmallPruner fresh;
  REQUIRE_THROWS_WITH(fresh.pruner.parse_state(early.data(), early.size(), "state"),
                      Contains("step -1 (no step yet) but non-zero importance"));
  // Negative Taylor importance cannot come from save() either.
  const auto negative = edited_state([](lmshrink::SafeTensors& st) {
    const double minus = -1.0;
    std::memcpy(st.tensors.at("l.ema").bytes.data(), &minus, 8);
  });
  REQUIRE_THROWS_WITH(fresh.pruner.parse_state(negative.data(), negative.size(), "state"),
                      Contains("negative importance in layer 'l'"));
  // A step that is no integer at all.
  const auto words = edited_state([](lmshrink::SafeTensors& st) { st.metadata["lmshrink.step"] = "3 "; });
  REQUIRE_THROWS_WITH(fresh.pruner.parse_state(words.data(), words.size(), "state"),
                      Contains("has the metadata 'lmshrink.step: 3 '; an integer was expected"));
  // A file larger than any state of these layers is refused before it is read.
  const std::string big = temp_path("big_state.safetensors");
  {
    std::ofstream out(big, std::ios::binary);
    out.write(good.data(), std::streamsize(good.size()));
    out << std::string(std::size_t(1) << 20, 'x');
  }
  REQUIRE_THROWS_WITH(fresh.pruner.load(big), Contains("larger than the state of the layers added"));
  std::filesystem::remove(big);
  // Steps outside [0, 2^62] are refused by after_optimizer_step itself.
  SmallPruner q;
  REQUIRE_THROWS_WITH(q.pruner.after_optimizer_step(-5), Contains("step must be in [0, 2^62], got -5"));
  REQUIRE_THROWS_AS(q.pruner.after_optimizer_step(std::numeric_limits<Index>::max()),
                    lmshrink::value_error);
}

TEST_CASE("5. directories and devices are named as such, not as huge files", "[hardening][io]") {
  const std::string dir = LMSHRINK_DATA_DIR;
  REQUIRE_THROWS_WITH(lmshrink::read_safetensors(dir),
                      Contains("[lmshrink.io] read_safetensors: '") && Contains("is a directory; a file was expected"));
  REQUIRE_THROWS_WITH(lmshrink::read_tokenizer(dir), Contains("is a directory; a file was expected"));
  REQUIRE_THROWS_WITH(lmshrink::read_tokenizer("/dev/zero"), Contains("is not a regular file"));
  // A path that cannot be resolved gives the system's reason, not always "no such file".
  REQUIRE_THROWS_WITH(lmshrink::read_tokenizer(dir + "/tok512.bin/x"),
                      Contains("cannot open '") && Contains("(Not a directory)"));
  SmallPruner p;
  REQUIRE_THROWS_WITH(p.pruner.load(dir), Contains("[lmshrink.io] Pruner::load") && Contains("is a directory"));
  // Writing over a directory, or into a missing one, is an io_error naming the path.
  lmshrink::SafeTensors st;
  REQUIRE_THROWS_WITH(lmshrink::write_safetensors(st, dir),
                      Contains("[lmshrink.io] write_safetensors: '") && Contains("is a directory; a file path was expected"));
  REQUIRE_THROWS_WITH(lmshrink::write_safetensors(st, temp_path("missing/dir/x.safetensors")),
                      Contains("the directory '") && Contains("missing/dir' does not exist"));
}

TEST_CASE("6. the reference's ΔT has one source of truth", "[hardening][pruner]") {
  lmshrink::PrunerOptions o;
  o.schedule = {100, 10, 10, 0.5, 5};
  // Setting only the schedule's interval is enough: the importance window follows it.
  lmshrink::Pruner<double> follows(o);
  REQUIRE(follows.options().importance.window == 5);
  o.importance.window = 5;
  REQUIRE_NOTHROW(lmshrink::Pruner<double>(o));
  // Two different ΔT used to depart silently from the reference.
  o.importance.window = 10;
  REQUIRE_THROWS_WITH(lmshrink::Pruner<double>(o),
                      Contains("importance.window (10) and schedule.mask_interval (5)") &&
                          Contains("must agree"));
}

TEST_CASE("6. accounting says what S holds when pruned rows regrow (reference mode)",
          "[hardening][pruner]") {
  lmshrink::PrunerOptions o;
  o.schedule = {4, 0, 3, 0.5, 1};  // step 1 masks to keep 0.5
  SmallPruner p(o);
  p.layer.S() << 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4;
  p.grads.S.setOnes();
  p.pruner.after_optimizer_step(0);
  p.pruner.after_optimizer_step(1);  // a mask step
  auto a = p.pruner.accounting();
  const Index live = a.layers[0].live_sparse;
  REQUIRE(live < 12);
  REQUIRE(a.layers[0].held_sparse == live);
  // An optimizer step regrows the pruned rows (they receive gradients in reference mode).
  p.layer.S().array() += 0.1;
  a = p.pruner.accounting();
  REQUIRE(a.layers[0].live_sparse == live);  // the masks did not change
  REQUIRE(a.layers[0].held_sparse == 12);    // but S holds every entry until the next mask step
  REQUIRE(a.held == a.layers[0].low_rank + 12);
}

TEST_CASE("the tokenizer's vocabulary is bounded by the largest a header can name",
          "[hardening][tokenizer]") {
  // 2^20 + 1 empty records of 8 bytes each.
  std::vector<char> bytes(4 + 8 * ((std::size_t(1) << 20) + 1), '\0');
  const std::int32_t max_len = 1;
  std::memcpy(bytes.data(), &max_len, 4);
  REQUIRE_THROWS_WITH(lmshrink::parse_tokenizer(bytes.data(), bytes.size(), "many"),
                      Contains("holds more than 1048576 tokens"));
}

// ---- Round two ---------------------------------------------------------------------------------

namespace {

std::string regression(const std::string& target, const std::string& name) {
  return std::string(LMSHRINK_REGRESSIONS_DIR) + "/" + target + "/" + name;
}

}  // namespace

TEST_CASE("3. an F64 value beyond FLT_MAX is refused when read as float, naming the tensor",
          "[hardening][safetensors]") {
  // Before: the finite check ran on the double, and the float became inf.
  const auto st = lmshrink::read_safetensors(regression("safetensors", "f64_1e300_read_as_float.safetensors"));
  REQUIRE_THROWS_WITH(st.matrix<float>("w", 2, 2),
                      Contains("[lmshrink.numeric] SafeTensors::matrix: tensor 'w' entry 2 is 1e+300 (F64), "
                               "beyond the largest float"));
  CHECK(st.matrix<double>("w", 2, 2)(1, 0) == 1e300);  // as double it is fine
  const auto layer = lmshrink::read_safetensors(regression("safetensors", "layer_f64_U_1e300.safetensors"));
  REQUIRE_THROWS_WITH(lmshrink::get_compressed_layer<float>(layer, "l"), Contains("tensor 'l.U' entry 0 is 1e+300"));
  CHECK(lmshrink::get_compressed_layer<double>(layer, "l").U()(0, 0) == 1e300);

  // A Hugging Face Llama whose final norm gain is one F64 1e300.
  const lmshrink::models::llama::DenseModel m = lmshrink::models::llama::read_llama2c(LMSHRINK_DATA_DIR "/stories260K.bin");
  auto tensors = lmshrink::models::llama::to_hf(m);
  std::vector<double> gain(std::size_t(m.config.dim), 1.0);
  gain[3] = 1e300;
  tensors.tensors.erase("model.norm.weight");
  tensors.put("model.norm.weight", lmshrink::Dtype::f64, {m.config.dim}, gain.data());
  const std::string dir = temp_path("f64_gain");
  lmshrink::models::write_hf_directory(lmshrink::models::llama::hf_config_of(m.config), tensors, dir);
  REQUIRE_THROWS_WITH(lmshrink::models::llama::read_hf(dir), Contains("tensor 'model.norm.weight' entry 3 is 1e+300 (F64)"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("4. the F16 and BF16 writers refuse what would become infinity, naming the tensor and "
          "the value",
          "[hardening][safetensors]") {
  lmshrink::SafeTensors st;
  lmshrink::RowMatrix<float> w(1, 3);
  w << 1.0f, -65504.0f, 2.0f;  // the largest finite half
  lmshrink::detail::put_matrix_as(st, "ok", w, lmshrink::Dtype::f16);
  CHECK(st.matrix<float>("ok", 1, 3)(0, 1) == -65504.0f);
  w(0, 1) = -65520.0f;  // rounds to -inf in F16 (before: written, and refused by the reader)
  REQUIRE_THROWS_WITH(lmshrink::detail::put_matrix_as(st, "w", w, lmshrink::Dtype::f16),
                      Contains("[lmshrink.numeric] write_hf: tensor 'w' holds 65520, which F16 cannot represent"));
  lmshrink::detail::put_matrix_as(st, "as_bf16", w, lmshrink::Dtype::bf16);  // fine in BF16
  CHECK(st.matrix<float>("as_bf16", 1, 3)(0, 1) == -65536.0f);
  w(0, 1) = 3.39e38f;  // below 2^128 - 2^119: rounds to the largest finite BF16
  lmshrink::detail::put_matrix_as(st, "big", w, lmshrink::Dtype::bf16);
  CHECK(std::isfinite(st.matrix<float>("big", 1, 3)(0, 1)));
  w(0, 1) = 3.3962e38f;
  REQUIRE_THROWS_WITH(lmshrink::detail::put_matrix_as(st, "w", w, lmshrink::Dtype::bf16),
                      Contains("tensor 'w' holds 3.3962") && Contains("which BF16 cannot represent"));
  w(0, 1) = std::numeric_limits<float>::quiet_NaN();
  REQUIRE_THROWS_WITH(lmshrink::detail::put_matrix_as(st, "w", w, lmshrink::Dtype::f32),
                      Contains("tensor 'w' has a non-finite value at entry 1"));
  CHECK_FALSE(st.contains("w"));
}

TEST_CASE("5. what a file may make the readers allocate is bounded by its own size, masks included",
          "[hardening][safetensors]") {
  // 248 bytes describing an empty 16384 x 16384 layer: before, 1-2.5 GiB and seconds.
  const auto empty = lmshrink::read_safetensors(regression("safetensors", "empty_layer_16384_squared.safetensors"));
  REQUIRE(empty.stored_bytes() < 300);
  REQUIRE_THROWS_WITH(lmshrink::get_compressed_layer<float>(empty, "l"),
                      Contains("layer 'l' needs 1073758208 bytes of dense buffers the file does not store") &&
                          Contains("may make the readers allocate at most") && Contains("ReadLimits"));
  // One kept row with its element mask: the dense mask counts too.
  const auto masked = lmshrink::read_safetensors(regression("safetensors", "masked_layer_16384_squared.safetensors"));
  REQUIRE_THROWS_WITH(lmshrink::get_compressed_layer<float>(masked, "l"), Contains("layer 'l' needs 1610629120 bytes"));
  // 64 empty 2048 x 2048 layers in 15 kB: each alone fits the fixed part, together they do not.
  const auto many = lmshrink::read_safetensors(regression("safetensors", "many_empty_layers_2048_squared.safetensors"));
  int built = 0;
  try {
    for (int i = 0; i < 64; ++i) {
      (void)lmshrink::get_compressed_layer<float>(many, "l" + std::to_string(i));
      ++built;
    }
  } catch (const lmshrink::format_error& e) {
    CHECK_THAT(e.what(), Contains("with the layers read before it"));
  }
  CHECK(built == 4);  // 4 x 16 MiB fit in 64 MiB + 256 x 15 kB = 67.9 MiB; the fifth does not
  // Reading the same layer again is not charged twice.
  for (int i = 0; i < 3; ++i) CHECK_NOTHROW(lmshrink::get_compressed_layer<float>(many, "l0"));
  // The limits are the caller's to raise: twice the layers the default refused after 4 (all 64,
  // 1 GiB of dense S, took 12 s of the suite under ASan at -O0 for the same check).
  lmshrink::ReadLimits generous;
  generous.derived_fixed_bytes = std::int64_t(2) << 30;
  const auto again = lmshrink::read_safetensors(regression("safetensors", "many_empty_layers_2048_squared.safetensors"));
  for (int i = 0; i < 8; ++i) CHECK_NOTHROW(lmshrink::get_compressed_layer<float>(again, "l" + std::to_string(i), generous));
}

TEST_CASE("6. a long max_position_embeddings costs nothing when a Hugging Face Llama is read",
          "[hardening][hf]") {
  // A 2 MiB checkpoint (one block, dim 512, one head, F16) with a context of 2^20 positions:
  // before, the reader computed 2 x 2^28 legacy RoPE entries (2 GiB). Now the tables stay empty
  // and write_llama2c computes them.
  lmshrink::models::llama::DenseModel wide;
  auto& c = wide.config;
  c.dim = 512;
  c.hidden_dim = 4;
  c.n_layers = 1;
  c.n_heads = c.n_kv_heads = 1;
  c.vocab_size = 4;
  c.seq_len = 1 << 20;
  const auto square = [&] { return lmshrink::RowMatrix<float>::Constant(512, 512, 0.01f); };
  wide.token_embedding = lmshrink::RowMatrix<float>::Constant(4, 512, 0.5f);
  wide.rms_att = wide.rms_ffn = {lmshrink::Vector<float>::Ones(512)};
  wide.wq = {square()};
  wide.wk = {square()};
  wide.wv = {square()};
  wide.wo = {square()};
  wide.w1 = wide.w3 = {lmshrink::RowMatrix<float>::Constant(4, 512, 0.1f)};
  wide.w2 = {lmshrink::RowMatrix<float>::Constant(512, 4, 0.1f)};
  wide.rms_final = lmshrink::Vector<float>::Ones(512);
  const std::string dir = temp_path("long_context");
  lmshrink::models::llama::write_hf(wide, dir, lmshrink::Dtype::f16);
  CHECK(std::filesystem::file_size(dir + "/model.safetensors") < (std::uintmax_t(2) << 20) + 65536);
  const auto t0 = std::chrono::steady_clock::now();
  const auto back = lmshrink::models::llama::read_hf(dir);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(back.config.seq_len == 1 << 20);
  CHECK(back.freq_cis_real.size() == 0);
  CHECK(back.freq_cis_imag.size() == 0);
  CHECK(seconds < 5);  // before: 2 GiB and many seconds
  const lmshrink::models::llama::DenseModel m = lmshrink::models::llama::read_llama2c(LMSHRINK_DATA_DIR "/stories260K.bin");
  const lmshrink::RowMatrix<float> file_real = m.freq_cis_real;
  // At the real context, the tables write_llama2c computes match the file's to float rounding.
  lmshrink::models::llama::write_hf(m, dir);
  const std::string bin = temp_path("long_context.bin");
  lmshrink::models::llama::write_llama2c(lmshrink::models::llama::read_hf(dir), bin);
  const auto again = lmshrink::models::llama::read_llama2c(bin);
  CHECK(again.freq_cis_real.rows() == m.config.seq_len);
  CHECK((again.freq_cis_real - file_real).cwiseAbs().maxCoeff() < 3e-6f);
  std::filesystem::remove_all(dir);
  std::remove(bin.c_str());
}

TEST_CASE("11. messages quote hostile bytes escaped, never raw", "[hardening][errors]") {
  const auto message = [](const std::string& json) {
    try {
      (void)lmshrink::models::parse_hf_config(json, "config.json");
    } catch (const lmshrink::error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  // An invalid byte where a value was expected, and a terminal escape inside a string.
  const std::string raw = message("{\"model_type\": \xff\x1b[2J}");
  CHECK_THAT(raw, Contains("has '\\xFF' at byte 15 where a value was expected"));
  const std::string escape = message("{\"model_type\": \"\\u001b[2Jt5\"}");
  CHECK_THAT(escape, Contains("\\x1B[2Jt5"));
  for (const std::string& m : {raw, escape})
    for (char c : m) {
      const auto u = static_cast<unsigned char>(c);
      CHECK((u >= 0x20 && u < 0x7F));  // the messages here are plain ASCII
    }
  // The rule itself: valid UTF-8 stays, controls (C0, DEL, C1) and invalid bytes are escaped.
  using lmshrink::detail::printable;
  CHECK(printable("4 \xC3\x97 8, caf\xC3\xA9, \xE6\x97\xA5") == "4 \xC3\x97 8, caf\xC3\xA9, \xE6\x97\xA5");
  CHECK(printable(std::string("a\0b\n\t\x7f", 6)) == "a\\x00b\\x0A\\x09\\x7F");
  CHECK(printable("\xC2\x85|\xC0\xAF|\xED\xA0\x80|\xF4\x90\x80\x80|\xE6\x97") ==
        "\\u0085|\\xC0\\xAF|\\xED\\xA0\\x80|\\xF4\\x90\\x80\\x80|\\xE6\\x97");
}
