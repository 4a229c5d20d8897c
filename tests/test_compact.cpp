// CompactLinear: packing every pruner outcome, the fused forward against the training-path
// forward and the naive reference, changing batch shapes, threads, accounting and bad input.
// Every micro-kernel this CPU runs is checked from this one plain build (kernels are values
// chosen at pack time), and so are the threads (OpenMP's team when the build has OpenMP, and a
// std::thread team) and the oneDNN GEMM (when the build has oneDNN).
#include <lmshrink/pruner.hpp>
#include <catch2/catch.hpp>
#include <cmath>
#include <condition_variable>
#include <lmshrink/compact.hpp>
#include <mutex>
#include <string>
#include <thread>
#include <vector>
#ifdef _OPENMP
#include <lmshrink/openmp.hpp>
#endif
#ifdef LMSHRINK_HAVE_ONEDNN
#include <lmshrink/onednn.hpp>
#endif

#include "std_thread_team.hpp"
#include "test_helpers.hpp"

using lmshrink::CompactLinear;
using lmshrink::Index;
using lmshrink::CompactKernel;
using lmshrink::LowRankSparseLinear;
using lmshrink::SparseFormat;
using test::Matrix;

namespace {

template <class S>
LowRankSparseLinear<S> make_layer(Index out, Index in, Index rank, Index kept, bool bias,
                                  bool element_mask, std::uint64_t seed) {
  LowRankSparseLinear<S> layer(out, in, rank, bias);
  layer.U() = test::random_matrix<S>(out, rank, seed);
  layer.V() = test::random_matrix<S>(rank, in, seed + 1);
  layer.S() = test::random_matrix<S>(out, in, seed + 2);
  if (bias) layer.bias() = test::random_matrix<S>(out, 1, seed + 3);
  // Keep `kept` rows spread over the layer (first, last and scattered ones).
  lmshrink::RowMask rows = lmshrink::RowMask::Zero(out);
  lmshrink::SplitMix64 rng(seed + 4);
  Index live = 0;
  if (kept > 0) rows[kept == out ? 0 : out - 1] = 1, live = 1;
  while (live < kept) {
    const Index i = static_cast<Index>(rng.uniform() * double(out)) % out;
    if (!rows[i]) rows[i] = 1, ++live;
  }
  layer.set_row_mask(rows);
  if (element_mask) {
    lmshrink::ElementMask m(out, in);
    for (Index i = 0; i < m.size(); ++i) m.data()[i] = rng.uniform() < 0.3 ? 1 : 0;
    layer.set_element_mask(m);
  }
  return layer;
}

// Elementwise bound on float rounding: (terms per output) · u · (|U||V||x| + |S||x| + |b|).
template <class S>
Matrix<double> rounding_bound(const LowRankSparseLinear<S>& layer, const Matrix<S>& x) {
  Matrix<S> masked = layer.S();
  layer.zero_masked(masked);
  const Matrix<double> masked_s = masked.template cast<double>();
  const Matrix<double> ax = x.template cast<double>().cwiseAbs();
  Matrix<double> b = (ax * layer.V().template cast<double>().cwiseAbs().transpose()) *
                         layer.U().template cast<double>().cwiseAbs().transpose() +
                     ax * masked_s.cwiseAbs().transpose();
  if (layer.has_bias())
    b.rowwise() += layer.bias().template cast<double>().cwiseAbs().transpose();
  const double terms = double(layer.in_features() + layer.rank() + 2);
  const double u = std::numeric_limits<S>::epsilon() / 2;
  return (2 * terms * u) * b.array() + std::numeric_limits<S>::min();
}

template <class S>
void require_close(const Matrix<S>& got, const Matrix<S>& want, const Matrix<double>& bound) {
  REQUIRE(got.rows() == want.rows());
  REQUIRE(got.cols() == want.cols());
  const Matrix<double> diff = (got.template cast<double>() - want.template cast<double>()).cwiseAbs();
  Index worst_i = 0, worst_j = 0;
  const double worst = (diff.array() / bound.array()).maxCoeff(&worst_i, &worst_j);
  CAPTURE(worst_i, worst_j, got(worst_i, worst_j), want(worst_i, worst_j),
          bound(worst_i, worst_j));
  REQUIRE(worst <= 1.0);
}

// The external GEMMs under test: none, and oneDNN's when the build has it.
std::vector<lmshrink::LowRankSgemm> external_gemms() {
#ifdef LMSHRINK_HAVE_ONEDNN
  return {nullptr, &lmshrink::onednn_sgemm};
#else
  return {nullptr};
#endif
}


// The packed layer's forward equals the training layer's on `input`, to float rounding.
void same_output_on(const Matrix<float>& input, const LowRankSparseLinear<float>& layer,
                    const CompactLinear<float>& c) {
  auto ws = c.make_workspace(input.rows());
  auto cache = layer.make_cache(input.rows());
  Matrix<float> got(input.rows(), layer.out_features()), want(input.rows(), layer.out_features());
  c.forward(input, got, ws);
  layer.forward(input, want, cache);
  require_close<float>(got, want, rounding_bound(layer, input));
}

}  // namespace

#define LMSHRINK_TEST_SCALARS float, double

TEST_CASE("kernels are values: chosen for the CPU when packed, or asked for", "[compact]") {
  const auto best = lmshrink::best_compact_kernel();
  CAPTURE(lmshrink::compact_kernel_name(best));
  REQUIRE(lmshrink::compact_kernel_supported(best));
  REQUIRE(lmshrink::compact_kernel_supported(CompactKernel::portable));
  const auto layer = make_layer<float>(12, 10, 3, 4, true, false, 2);
  REQUIRE(CompactLinear<float>::pack(layer).kernel() == best);
  lmshrink::PackOptions portable;
  portable.kernel = CompactKernel::portable;
  REQUIRE(CompactLinear<float>::pack(layer, portable).kernel() == CompactKernel::portable);
  const auto d = make_layer<double>(12, 10, 3, 4, true, false, 2);
  REQUIRE(CompactLinear<double>::pack(d).kernel() == CompactKernel::portable);
  for (auto k : {CompactKernel::avx2, CompactKernel::avx512}) {
    lmshrink::PackOptions o;
    o.kernel = k;
    CAPTURE(lmshrink::compact_kernel_name(k));
    REQUIRE_THROWS_AS(CompactLinear<double>::pack(d, o), lmshrink::value_error);
    REQUIRE_THROWS_WITH(CompactLinear<double>::pack(d, o), Catch::Contains("is for float layers"));
    if (lmshrink::compact_kernel_supported(k)) {
      REQUIRE(CompactLinear<float>::pack(layer, o).kernel() == k);
    } else {
      REQUIRE_THROWS_AS(CompactLinear<float>::pack(layer, o), lmshrink::state_error);
      REQUIRE_THROWS_WITH(CompactLinear<float>::pack(layer, o),
                          Catch::Contains("needs instructions this CPU lacks"));
    }
  }
  REQUIRE(std::string(lmshrink::compact_kernel_name(CompactKernel::avx512)) == "avx512");
}

TEMPLATE_TEST_CASE("compact forward equals the training forward for every rank, kept-row count "
                   "and batch shape",
                   "[compact]", LMSHRINK_TEST_SCALARS) {
  using S = TestType;
  const auto shape = GENERATE(std::make_tuple(37, 53), std::make_tuple(64, 64),
                              std::make_tuple(70, 33), std::make_tuple(33, 70));
  const Index out = std::get<0>(shape), in = std::get<1>(shape);
  const Index full = std::min(out, in);
  const Index rank = GENERATE_COPY(Index(0), Index(1), Index(5), full);
  const Index kept = GENERATE_COPY(Index(0), Index(1), out / 3, out);
  const bool bias = GENERATE(false, true);
  const auto format = GENERATE(SparseFormat::rows, SparseFormat::csr);
  CAPTURE(out, in, rank, kept, bias, int(format));
  const auto layer = make_layer<S>(out, in, rank, kept, bias, false, 11 + out + rank + kept);

  // Every kernel this CPU runs (float; double has the portable one), and each external GEMM
  // with the best kernel: packed once each, checked on the same inputs.
  std::vector<CompactLinear<S>> packed;
  for (auto kernel : {CompactKernel::portable, CompactKernel::avx2, CompactKernel::avx512}) {
    if (!lmshrink::compact_kernel_supported(kernel)) continue;  // this CPU lacks it
    if (!std::is_same<S, float>::value && kernel != CompactKernel::portable) continue;
    for (auto sgemm : external_gemms()) {
      if (sgemm != nullptr && (!std::is_same<S, float>::value || kernel != lmshrink::best_compact_kernel()))
        continue;
      packed.push_back(CompactLinear<S>::pack(layer, {format, kernel, sgemm}));
      const auto& compact = packed.back();
      REQUIRE(compact.kernel() == kernel);
      REQUIRE(compact.external_low_rank() == (sgemm != nullptr));
      REQUIRE(compact.format() == format);
      REQUIRE(compact.rank() == rank);
      REQUIRE(compact.kept_rows() == kept);
      REQUIRE(compact.parameters() == layer.live_parameters());
      REQUIRE((compact.to_dense() - layer.to_dense()).cwiseAbs().maxCoeff() <=
              S(1e-5) * (1 + layer.to_dense().cwiseAbs().maxCoeff()));
    }
  }
  REQUIRE(packed.size() >= 1);

  // One workspace per packing across growing and shrinking batches, as in generation after a
  // prompt.
  std::vector<typename CompactLinear<S>::Workspace> ws;
  for (const auto& c : packed) ws.push_back(c.make_workspace(4));
  auto cache = layer.make_cache(1);
  for (Index tokens : {1, 3, 13, 2, 121, 1, 250, 12, 5, 11, 4, 6, 7, 8, 9, 0}) {  // heights 1..12
    CAPTURE(tokens);
    const Matrix<S> x = test::random_matrix<S>(tokens, in, 100 + tokens);
    Matrix<S> y_train(tokens, out), y_naive(tokens, out);
    layer.forward(x, y_train, cache);
    packed.front().forward_reference(x, y_naive);
    const auto bound = rounding_bound(layer, x);
    for (std::size_t v = 0; v < packed.size(); ++v) {
      CAPTURE(lmshrink::compact_kernel_name(packed[v].kernel()), packed[v].external_low_rank());
      Matrix<S> y_fused = Matrix<S>::Constant(tokens, out, S(7));  // the forward overwrites
      packed[v].forward(x, y_fused, ws[v]);
      if (tokens == 0) continue;
      require_close<S>(y_fused, y_naive, bound);
      require_close<S>(y_fused, y_train, bound);
      REQUIRE(ws[v].capacity_tokens() >= tokens);
    }
  }
}

TEMPLATE_TEST_CASE("element masks pack to CSR with only the live entries", "[compact]",
                   LMSHRINK_TEST_SCALARS) {
  using S = TestType;
  const Index out = 45, in = 38, rank = 6;
  const auto layer = make_layer<S>(out, in, rank, 20, true, true, 5);
  const auto kernel = GENERATE(CompactKernel::portable, CompactKernel::automatic);
  const auto csr = CompactLinear<S>::pack(layer, {SparseFormat::automatic, kernel});
  REQUIRE(csr.format() == SparseFormat::csr);
  REQUIRE(csr.sparse_values() == layer.live_sparse_entries());
  REQUIRE(csr.parameters() == layer.live_parameters());
  const auto rows = CompactLinear<S>::pack(layer, {SparseFormat::rows, kernel});
  REQUIRE(rows.sparse_values() == rows.kept_rows() * in);
  REQUIRE(rows.kept_rows() <= 20);

  auto ws_csr = csr.make_workspace(64);
  auto ws_rows = rows.make_workspace(64);
  auto cache = layer.make_cache(64);
  for (Index tokens : {1, 17, 64, 5}) {
    const Matrix<S> x = test::random_matrix<S>(tokens, in, 200 + tokens);
    Matrix<S> a(tokens, out), b(tokens, out), ref(tokens, out);
    csr.forward(x, a, ws_csr);
    rows.forward(x, b, ws_rows);
    layer.forward(x, ref, cache);
    const auto bound = rounding_bound(layer, x);
    require_close<S>(a, ref, bound);
    require_close<S>(b, ref, bound);
  }
}

TEST_CASE("packing reproduces each pruning method's layer", "[compact]") {
  const Index out = 48, in = 40;
  const Matrix<float> w = test::random_matrix<float>(out, in, 3);
  const Matrix<float> x = test::random_matrix<float>(9, in, 4);

  SECTION("dense (nothing pruned) is rank 0 with every row kept") {
    const auto layer = lmshrink::make_dense_layer<float>(w);
    const auto c = CompactLinear<float>::pack(layer);
    REQUIRE(c.rank() == 0);
    REQUIRE(c.kept_rows() == out);
    auto ws = c.make_workspace(9);
    Matrix<float> y(9, out);
    c.forward(x, y, ws);
    REQUIRE((y - x * w.transpose()).cwiseAbs().maxCoeff() < 1e-4f);
  }
  SECTION("low-rank only stores no sparse values") {
    auto layer = make_layer<float>(out, in, 7, out, false, false, 8);
    lmshrink::make_low_rank_only(layer);
    const auto c = CompactLinear<float>::pack(layer);
    REQUIRE(c.kept_rows() == 0);
    REQUIRE(c.sparse_values() == 0);
    REQUIRE(c.weight_bytes() == Index(sizeof(float)) * 7 * (out + in));
    auto ws = c.make_workspace(9);
    Matrix<float> y(9, out);
    c.forward(x, y, ws);
    const Matrix<float> want = (x * layer.V().transpose()) * layer.U().transpose();
    REQUIRE((y - want).cwiseAbs().maxCoeff() < 1e-4f);
  }
}

TEST_CASE("PackForm::fastest keeps the trained form unless the dense one models cheaper",
          "[compact]") {
  // compact_form_cost, per token: values the panel kernels stream (rows padded to panels of 32,
  // the last 16 wide when 16 or fewer remain), 1,500 a forward call and 500 each further product,
  // 20 a CSR entry and 40 a CSR row per full block of 16 tokens (a single token: per token).
  const double call = lmshrink::kForwardCallCost, product = lmshrink::kProductCallCost;
  REQUIRE(call == 1500);
  REQUIRE(product == 500);
  REQUIRE(lmshrink::kCsrEntryCost == 20);
  REQUIRE(lmshrink::kCsrRowCost == 40);
  REQUIRE(lmshrink::compact_form_cost(0, 64, 64, 64, 0) == 64 * 64 + call);                      // dense
  REQUIRE(lmshrink::compact_form_cost(8, 64, 64, 3, 0) == 16 * 64 + 64 * 8 + call + product);   // 3,536
  REQUIRE(lmshrink::compact_form_cost(0, 64, 64, 17, 0) == 32 * 64 + call);                      // 17 → 32 rows
  REQUIRE(lmshrink::compact_form_cost(0, 64, 64, 38, 0) == 48 * 64 + call);                      // 38 → 48
  REQUIRE(lmshrink::compact_form_cost(0, 64, 64, 0, 100) == 100 * 20 + 64 * 40 + call);
  REQUIRE(lmshrink::compact_form_cost(4, 64, 64, 0, 100) == 16 * 64 + 64 * 4 + 100 * 20 + 64 * 40 + call + 2 * product);
  // A batch shares each call's fixed costs; 8 tokens fill half a CSR block, at a full one's cost.
  REQUIRE(lmshrink::compact_form_cost(0, 64, 64, 64, 0, 8) == 64 * 64 + call / 8);
  REQUIRE(lmshrink::compact_form_cost(0, 64, 64, 0, 100, 8) == 100 * 40 + 64 * 40 / 8.0 + call / 8);
  REQUIRE(lmshrink::compact_form_cost(0, 64, 64, 0, 100, 512) == 100 * 20 + 64 * 40 * 32 / 512.0 + call / 512);
  const auto fastest = lmshrink::fastest_pack();
  REQUIRE(fastest.batch == 1);
  const Matrix<float> x = test::random_matrix<float>(7, 64, 30);
  const auto same_output = [&](const LowRankSparseLinear<float>& layer, const CompactLinear<float>& c) {
    same_output_on(x, layer, c);
  };
  const auto chosen = [](const LowRankSparseLinear<float>& layer, Index batch) {
    auto o = lmshrink::fastest_pack();
    o.batch = batch;
    const auto c = CompactLinear<float>::pack(layer, o);
    const auto choice = lmshrink::pack_choice(layer, batch);
    REQUIRE(choice.form == c.form());  // pack_choice says what pack stores
    REQUIRE(choice.format == c.format());
    return c;
  };
  SECTION("rank 8 and 3 kept rows (3,536 < 5,596): as trained, the same packing") {
    const auto layer = make_layer<float>(64, 64, 8, 3, true, false, 31);
    const auto c = chosen(layer, 1);
    REQUIRE(c.form() == lmshrink::CompactForm::low_rank_sparse);
    REQUIRE(c.rank() == 8);
    REQUIRE(c.kept_rows() == 3);
    REQUIRE(c.parameters() == CompactLinear<float>::pack(layer).parameters());
    REQUIRE(lmshrink::pack_choice(layer).cost == 3536);
    REQUIRE(lmshrink::pack_choice(layer).dense_cost == 5596);
    same_output(layer, c);
    // PackForm::dense stores U·V + S whatever the costs (to reproduce a stated choice).
    lmshrink::PackOptions dense;
    dense.form = lmshrink::PackForm::dense;
    const auto d = CompactLinear<float>::pack(layer, dense);
    REQUIRE(d.form() == lmshrink::CompactForm::dense);
    same_output(layer, d);
  }
  SECTION("rank 40 (8,656 > 5,596): dense, one 64 × 64 matrix") {
    auto layer = make_layer<float>(64, 64, 40, 64, true, false, 32);
    lmshrink::make_low_rank_only(layer);
    REQUIRE(CompactLinear<float>::pack(layer).form() == lmshrink::CompactForm::low_rank);
    const auto c = chosen(layer, 1);
    REQUIRE(c.form() == lmshrink::CompactForm::dense);
    REQUIRE(c.rank() == 0);
    REQUIRE(c.kept_rows() == 64);
    REQUIRE(c.parameters() == 64 * 64 + 64);
    REQUIRE(lmshrink::pack_choice(layer).densified);
    same_output(layer, c);
  }
  SECTION("rank 12 and 36 kept rows: faster than dense only when a batch shares the calls") {
    const auto layer = make_layer<float>(64, 64, 12, 36, false, false, 37);
    // One token: 48·64 + 64·12 + 1,500 + 500 = 5,840 against 64·64 + 1,500 = 5,596.
    REQUIRE(lmshrink::pack_choice(layer, 1).cost == 5596);
    REQUIRE(chosen(layer, 1).form() == lmshrink::CompactForm::dense);
    // 64 tokens: 3,840 + 2,000/64 against 4,096 + 1,500/64.
    REQUIRE(lmshrink::pack_choice(layer, 64).cost == 3840 + 2000.0 / 64);
    REQUIRE(chosen(layer, 64).form() == lmshrink::CompactForm::low_rank_sparse);
  }
  SECTION("a low-rank 32 × 64 layer of rank 4 (the stories260K key and value shape): low rank for one token") {
    auto layer = make_layer<float>(32, 64, 4, 32, false, false, 38);
    lmshrink::make_low_rank_only(layer);
    // 16·64 + 32·4 + 1,500 + 500 = 3,152 against 32·64 + 1,500 = 3,548 (measured 0.86x of dense).
    REQUIRE(lmshrink::pack_choice(layer, 1).cost == 3152);
    REQUIRE(chosen(layer, 1).form() == lmshrink::CompactForm::low_rank);
  }
  SECTION("an element mask at 30 % of every row: CSR would cost 3x dense, so dense") {
    const auto layer = make_layer<float>(64, 64, 0, 64, false, true, 33);
    REQUIRE(CompactLinear<float>::pack(layer).format() == SparseFormat::csr);
    const auto c = chosen(layer, 1);
    REQUIRE(c.form() == lmshrink::CompactForm::dense);
    same_output(layer, c);
  }
  SECTION("an element mask at 3 % of a 64 × 256 layer: CSR for one token, every row for eight") {
    auto layer = make_layer<float>(64, 256, 0, 64, false, false, 34);
    lmshrink::ElementMask m = lmshrink::ElementMask::Zero(64, 256);
    lmshrink::SplitMix64 rng(35);
    Index live = 0;
    while (live < 500) {
      const Index i = Index(rng.uniform() * 16384) % 16384;
      if (!m.data()[i]) m.data()[i] = 1, ++live;
    }
    layer.set_element_mask(m);
    // One token: CSR 500·20 + 64·40 + 1,500 = 14,060 < 64·256 + 1,500 = 17,884. Eight: CSR
    // 500·40 + 64·40/8 + 187.5 = 20,507.5; every row has a live entry, so the rows cost the dense
    // 16,384 + 187.5, and a tie keeps the trained form: those rows, their pruned entries as zeros.
    const Matrix<float> xw = test::random_matrix<float>(7, 256, 39);
    const auto c = chosen(layer, 1);
    REQUIRE(c.form() == lmshrink::CompactForm::sparse);
    REQUIRE(c.format() == SparseFormat::csr);
    REQUIRE(c.sparse_values() == 500);
    REQUIRE(lmshrink::pack_choice(layer, 1).cost == 14060);
    same_output_on(xw, layer, c);
    const auto c8 = chosen(layer, 8);
    REQUIRE(c8.form() == lmshrink::CompactForm::dense);  // every row kept
    REQUIRE_FALSE(lmshrink::pack_choice(layer, 8).densified);
    REQUIRE(c8.format() == SparseFormat::rows);
    REQUIRE(c8.kept_rows() == 64);
    REQUIRE(lmshrink::pack_choice(layer, 8).cost == 16384 + 1500.0 / 8);
    same_output_on(xw, layer, c8);
  }
  SECTION("the format is the choice's, the batch at least one token: else an error") {
    auto opt = fastest;
    opt.format = SparseFormat::rows;
    const auto layer = make_layer<float>(16, 16, 2, 3, false, false, 36);
    REQUIRE_THROWS_AS(CompactLinear<float>::pack(layer, opt), lmshrink::value_error);
    REQUIRE_THROWS_WITH(CompactLinear<float>::pack(layer, opt),
                        Catch::Contains("PackForm::fastest chooses the sparse format itself"));
    opt = fastest;
    opt.batch = 0;
    REQUIRE_THROWS_WITH(CompactLinear<float>::pack(layer, opt),
                        Catch::Contains("PackOptions::batch must be at least 1 token per call, got 0"));
    REQUIRE_THROWS_WITH(lmshrink::pack_choice(layer, -2),
                        Catch::Contains("batch must be at least 1 token per call, got -2"));
    lmshrink::PackOptions dense;
    dense.form = lmshrink::PackForm::dense;
    dense.format = SparseFormat::csr;
    REQUIRE_THROWS_WITH(CompactLinear<float>::pack(layer, dense),
                        Catch::Contains("PackForm::dense stores every row"));
  }
  REQUIRE(std::string(lmshrink::compact_form_name(lmshrink::CompactForm::low_rank_sparse)) ==
          "low-rank + sparse");
}

TEST_CASE("PackForm::timed keeps the fastest candidate, dense unless another is 3 % faster",
          "[compact]") {
  // The selection, with a fixed table of seconds in place of the clock: which candidates are
  // offered, in which order, what wins and what the choice states.
  const Matrix<float> x = test::random_matrix<float>(5, 64, 60);
  const auto same_output = [&](const LowRankSparseLinear<float>& layer, const CompactLinear<float>& c) {
    same_output_on(x, layer, c);
  };
  lmshrink::PackOptions timed;
  timed.form = lmshrink::PackForm::timed;
  timed.batch = 3;
  std::vector<lmshrink::CompactForm> offered;
  std::vector<SparseFormat> formats;
  Index batch_seen = 0;
  const auto table = [&](std::vector<double> seconds) {
    return [&, seconds](const std::vector<const CompactLinear<float>*>& forms, Index batch) {
      offered.clear();
      formats.clear();
      for (const auto* f : forms) offered.push_back(f->form()), formats.push_back(f->format());
      batch_seen = batch;
      return seconds;
    };
  };
  using lmshrink::CompactForm;
  lmshrink::PackChoice choice;
  SECTION("low rank + kept rows: dense, then the trained rows; the faster one wins") {
    const auto layer = make_layer<float>(64, 64, 8, 3, true, false, 61);
    auto c = lmshrink::pack_fastest_of(layer, timed, table({2e-6, 1e-6}), &choice);
    REQUIRE(offered == std::vector<CompactForm>{CompactForm::dense, CompactForm::low_rank_sparse});
    REQUIRE(batch_seen == 3);
    REQUIRE(c.form() == CompactForm::low_rank_sparse);
    REQUIRE(c.kept_rows() == 3);
    REQUIRE(choice.form == CompactForm::low_rank_sparse);
    REQUIRE_FALSE(choice.densified);
    REQUIRE(choice.seconds == 1e-6);
    REQUIRE(choice.dense_seconds == 2e-6);
    REQUIRE(choice.cost == lmshrink::compact_form_cost(8, 64, 64, 3, 0, 3));
    REQUIRE(choice.dense_cost == lmshrink::compact_form_cost(0, 64, 64, 64, 0, 3));
    same_output(layer, c);
    // Within 3 % of dense keeps dense (kTimedMargin): 0.98 of it is inside one run's noise.
    REQUIRE(lmshrink::kTimedMargin == 0.03);
    REQUIRE(lmshrink::pack_fastest_of(layer, timed, table({1e-6, 0.96e-6})).form() == CompactForm::low_rank_sparse);
    c = lmshrink::pack_fastest_of(layer, timed, table({1e-6, 0.98e-6}), &choice);
    REQUIRE(c.form() == CompactForm::dense);
    REQUIRE(c.rank() == 0);
    REQUIRE(choice.densified);
    REQUIRE(choice.form == CompactForm::dense);
    REQUIRE(choice.cost == choice.dense_cost);
    same_output(layer, c);
  }
  SECTION("an element mask: dense, the rows with zeros, CSR; CSR wins when fastest") {
    const auto layer = make_layer<float>(64, 64, 0, 40, false, true, 62);
    Index kept = 0, entries = 0;
    for (Index i = 0; i < 64; ++i)
      if (layer.row_mask()[i]) {
        const Index live = Index((layer.element_mask().row(i).array() != 0).count());
        kept += live > 0;
        entries += live;
      }
    const auto c = lmshrink::pack_fastest_of(layer, timed, table({3e-6, 4e-6, 2e-6}), &choice);
    REQUIRE(offered == std::vector<CompactForm>{CompactForm::dense, CompactForm::sparse, CompactForm::sparse});
    REQUIRE(formats == std::vector<SparseFormat>{SparseFormat::rows, SparseFormat::rows, SparseFormat::csr});
    REQUIRE(c.format() == SparseFormat::csr);
    REQUIRE(c.sparse_values() == entries);
    REQUIRE(choice.format == SparseFormat::csr);
    REQUIRE(choice.form == CompactForm::sparse);
    REQUIRE(choice.cost == lmshrink::compact_form_cost(0, 64, 64, 0, entries, 3));
    same_output(layer, c);
    const auto r = lmshrink::pack_fastest_of(layer, timed, table({3e-6, 2e-6, 2e-6}), &choice);
    REQUIRE(r.format() == SparseFormat::rows);  // the first of least time
    REQUIRE(r.kept_rows() == kept);
    REQUIRE(choice.cost == lmshrink::compact_form_cost(0, 64, 64, kept, 0, 3));
    same_output(layer, r);
  }
  SECTION("a layer dense as trained is packed without timing") {
    const auto layer = lmshrink::make_dense_layer<float>(test::random_matrix<float>(16, 64, 63), false);
    bool timed_called = false;
    const auto c = lmshrink::pack_fastest_of(
        layer, timed,
        [&](const std::vector<const CompactLinear<float>*>&, Index) {
          timed_called = true;
          return std::vector<double>{};
        },
        &choice);
    REQUIRE_FALSE(timed_called);
    REQUIRE(c.form() == CompactForm::dense);
    REQUIRE_FALSE(choice.densified);
    REQUIRE(choice.seconds == 0);
  }
  SECTION("the clock: PackForm::timed packs one of the candidates, same output") {
    auto layer = make_layer<float>(64, 64, 6, 0, false, false, 64);
    lmshrink::make_low_rank_only(layer);
    timed.timing_repeats = 3;
    const auto c = CompactLinear<float>::pack(layer, timed);
    REQUIRE((c.form() == CompactForm::dense || c.form() == CompactForm::low_rank));
    same_output(layer, c);
    const auto dense = CompactLinear<float>::pack(layer, [] {
      lmshrink::PackOptions d;
      d.form = lmshrink::PackForm::dense;
      return d;
    }());
    const auto seconds = lmshrink::time_compact_forms<float>({&dense, &c}, 4, 3);
    REQUIRE(seconds.size() == 2);
    for (double s : seconds) REQUIRE((std::isfinite(s) && s > 0));
  }
  SECTION("bad options and a timing of the wrong size: errors") {
    const auto layer = make_layer<float>(16, 16, 2, 3, false, false, 65);
    auto o = timed;
    o.format = SparseFormat::csr;
    REQUIRE_THROWS_WITH(CompactLinear<float>::pack(layer, o),
                        Catch::Contains("PackForm::timed chooses the sparse format itself"));
    o = timed;
    o.timing_repeats = 0;
    REQUIRE_THROWS_WITH(CompactLinear<float>::pack(layer, o),
                        Catch::Contains("PackOptions::timing_repeats must be at least 1, got 0"));
    o = timed;
    o.batch = 0;
    REQUIRE_THROWS_WITH(CompactLinear<float>::pack(layer, o),
                        Catch::Contains("PackOptions::batch must be at least 1 token per call, got 0"));
    REQUIRE_THROWS_AS(lmshrink::pack_fastest_of(layer, timed, table({1e-6})), lmshrink::state_error);
    REQUIRE_THROWS_WITH(lmshrink::pack_fastest_of(layer, timed, table({1e-6})),
                        Catch::Contains("returned 1 times for 2 candidate forms"));
    REQUIRE_THROWS_WITH(lmshrink::pack_fastest_of(layer, timed, table({1e-6, std::nan("")})),
                        Catch::Contains("timing of candidate 1 is nan"));
    const auto wide = lmshrink::make_dense_layer<float>(test::random_matrix<float>(16, 32, 66), false);
    const auto a = CompactLinear<float>::pack(layer), b = CompactLinear<float>::pack(wide);
    REQUIRE_THROWS_WITH(lmshrink::time_compact_forms<float>({&a, &b}, 1, 1),
                        Catch::Contains("must share their input width: 16 and 32"));
    REQUIRE_THROWS_WITH(lmshrink::time_compact_forms<float>({&a}, 1, 0), Catch::Contains("repeats must be at least 1, got 0"));
  }
}

TEST_CASE("weight bytes count values and 32-bit indices, hand-computed", "[compact]") {
  // out 10, in 6, rank 2, 3 kept rows, bias: 2·(10+6) + 3·6 + 10 = 60 values, 3 row indices.
  const auto layer = make_layer<float>(10, 6, 2, 3, true, false, 1);
  const auto rows = CompactLinear<float>::pack(layer);
  REQUIRE(rows.parameters() == 60);
  REQUIRE(rows.weight_bytes() == 60 * 4 + 3 * 4);
  REQUIRE(rows.index_bytes() == 3 * 4);
  // The same layer as CSR: 18 values, 18 column indices and 11 row offsets.
  const auto csr = CompactLinear<float>::pack(layer, {SparseFormat::csr});
  REQUIRE(csr.parameters() == 60);
  REQUIRE(csr.weight_bytes() == 60 * 4 + (18 + 11) * 4);
  REQUIRE(csr.index_bytes() == (18 + 11) * 4);
  REQUIRE(rows.kept_row_indices().size() == 3);
  REQUIRE(std::is_sorted(rows.kept_row_indices().begin(), rows.kept_row_indices().end()));
}

TEST_CASE("strided inputs and outputs, and the raw-pointer overload", "[compact]") {
  const Index out = 50, in = 36, tokens = 27;
  const auto layer = make_layer<float>(out, in, 9, 14, true, false, 21);
  const auto c = CompactLinear<float>::pack(layer);
  const Matrix<float> big_x = test::random_matrix<float>(tokens, in + 5, 22);
  Matrix<float> big_y = Matrix<float>::Constant(tokens, out + 3, -1.f);
  auto ws = c.make_workspace(tokens);
  c.forward(big_x.leftCols(in), big_y.rightCols(out), ws);
  Matrix<float> want(tokens, out);
  c.forward_reference(big_x.leftCols(in), want);
  const auto bound = rounding_bound(layer, Matrix<float>(big_x.leftCols(in)));
  require_close<float>(Matrix<float>(big_y.rightCols(out)), want, bound);
  REQUIRE((big_y.leftCols(3).array() == -1.f).all());  // untouched

  Matrix<float> y2(tokens, out);
  c.forward(big_x.data(), tokens, in + 5, y2.data(), out, ws);
  REQUIRE(y2 == Matrix<float>(big_y.rightCols(out)));
}

TEST_CASE("threads split the work without changing the result", "[compact][threads]") {
  std::vector<std::pair<const char*, lmshrink::ThreadTeam>> teams{{"std::thread", test::StdThreadTeam::team()}};
#ifdef _OPENMP
  teams.emplace_back("OpenMP", lmshrink::openmp_team());
#endif
  const auto team = GENERATE_COPY(from_range(teams));
  const auto format = GENERATE(SparseFormat::rows, SparseFormat::csr);
  const Index rank = GENERATE(Index(0), Index(24));
  const auto kernel = GENERATE(CompactKernel::portable, CompactKernel::automatic);
  const auto sgemm = GENERATE(from_range(external_gemms()));
  CAPTURE(team.first, int(format), rank, lmshrink::compact_kernel_name(kernel), sgemm != nullptr);
  const auto layer = make_layer<float>(200, 96, rank, 70, true, format == SparseFormat::csr, 31);
  const auto c = CompactLinear<float>::pack(layer, {format, kernel, sgemm});
  auto ws = c.make_workspace(1);
  for (Index tokens : {1, 7, 130}) {
    const Matrix<float> x = test::random_matrix<float>(tokens, 96, 32);
    Matrix<float> one(tokens, 200), two(tokens, 200), three(tokens, 200);
    c.forward(x, one, ws, {1});
    c.forward(x, two, ws, {2, team.second});
    c.forward(x, three, ws, {3, team.second});
    // Each output is computed by one thread with the same kernel: bitwise equal.
    REQUIRE(one == two);
    REQUIRE(one == three);
  }
}

TEST_CASE("more than one thread needs a team", "[compact][threads][errors]") {
  const auto c = CompactLinear<float>::pack(make_layer<float>(8, 8, 2, 2, false, false, 1));
  auto ws = c.make_workspace(1);
  Matrix<float> x = Matrix<float>::Ones(1, 8), y(1, 8);
  REQUIRE_THROWS_AS(c.forward(x, y, ws, {2}), lmshrink::state_error);
  REQUIRE_THROWS_WITH(c.forward(x, y, ws, {2}),
                      Catch::Contains("threads = 2 needs a ThreadTeam with run and barrier"));
  lmshrink::ThreadTeam half;
  half.run = test::StdThreadTeam::team().run;  // no barrier
  REQUIRE_THROWS_AS(c.forward(x, y, ws, {2, half}), lmshrink::state_error);
  c.forward(x, y, ws, {1, half});  // one thread never uses the team
}

TEST_CASE("bad input is rejected with a named error", "[compact][errors]") {
  auto layer = make_layer<float>(12, 10, 3, 4, false, false, 2);
  const auto c = CompactLinear<float>::pack(layer);
  auto ws = c.make_workspace(4);
  Matrix<float> x(4, 10), y(4, 12);
  x.setOnes();

  Matrix<float> wrong_x(4, 11), wrong_y(3, 12);
  REQUIRE_THROWS_AS(c.forward(wrong_x, y, ws), lmshrink::shape_error);
  REQUIRE_THROWS_WITH(c.forward(wrong_x, y, ws),
                      Catch::Contains("CompactLinear::forward") &&
                          Catch::Contains("x has 11 columns but in_features is 10"));
  REQUIRE_THROWS_WITH(c.forward(x, wrong_y, ws), Catch::Contains("y is 3x12 but 4x12"));
  REQUIRE_THROWS_WITH(c.forward(x, y, ws, {0}),
                      Catch::Contains("threads must be at least 1, got 0"));
  REQUIRE_THROWS_AS(c.forward(x.data(), 4, 9, y.data(), 12, ws), lmshrink::shape_error);
  REQUIRE_THROWS_AS(c.forward(nullptr, 4, 10, y.data(), 12, ws), lmshrink::value_error);

  // y overlapping x: a square layer run in place.
  const auto square = CompactLinear<float>::pack(make_layer<float>(10, 10, 2, 3, false, false, 4));
  Matrix<float> xy = Matrix<float>::Ones(4, 10);
  auto ws2 = square.make_workspace(4);
  REQUIRE_THROWS_WITH(square.forward(xy.data(), 4, 10, xy.data(), 10, ws2),
                      Catch::Contains("y overlaps x"));

  // An external GEMM is for float layers (any function of the right type will do here).
  lmshrink::PackOptions external;
  external.low_rank_sgemm = [](Index, Index, Index, const float*, Index, const float*, Index, float,
                               float*, Index) {};
  const auto d = make_layer<double>(12, 10, 3, 4, false, false, 2);
  REQUIRE_THROWS_AS(CompactLinear<double>::pack(d, external), lmshrink::value_error);
  REQUIRE_THROWS_WITH(CompactLinear<double>::pack(d, external),
                      Catch::Contains("low_rank_sgemm is for float layers, got a double layer"));

  layer.U()(1, 1) = std::numeric_limits<float>::quiet_NaN();
  REQUIRE_THROWS_AS(CompactLinear<float>::pack(layer), lmshrink::numeric_error);
  REQUIRE_THROWS_WITH(CompactLinear<float>::pack(layer),
                      Catch::Contains("CompactLinear::pack") && Catch::Contains("U has a non-finite"));
}
