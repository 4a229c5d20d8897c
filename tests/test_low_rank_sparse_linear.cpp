#include <catch2/catch.hpp>
#include <cmath>
#include <lmshrink/low_rank_sparse_linear.hpp>
#include <lmshrink/optim.hpp>
#include <lmshrink/pruner.hpp>
#include <tuple>

#include "test_helpers.hpp"

using lmshrink::Index;
using lmshrink::LowRankSparseLinear;
using lmshrink::ProductForm;
using test::Matrix;
using Catch::Matchers::Contains;

namespace {

// zero_rows: no masks, but every fourth row of S all zero (live: the reference pruning mode's
// pruned rows between mask steps); rows_zero: a row mask and such rows among the live ones.
enum class Masks { none, rows, elements, both, zero_rows, rows_zero };

struct Shape {
  Index out, in, rank, tokens;
};

template <class S>
LowRankSparseLinear<S> make_layer(const Shape& s, bool bias, Masks masks, std::uint64_t seed) {
  LowRankSparseLinear<S> layer(s.out, s.in, s.rank, bias);
  layer.U() = test::random_matrix<S>(s.out, s.rank, seed);
  layer.V() = test::random_matrix<S>(s.rank, s.in, seed + 1);
  layer.S() = test::random_matrix<S>(s.out, s.in, seed + 2);
  if (bias) layer.bias() = test::random_matrix<S>(s.out, 1, seed + 3);
  if (masks == Masks::zero_rows || masks == Masks::rows_zero)
    for (Index i = 0; i < s.out; i += 4) layer.S().row(i).setZero();
  if (masks == Masks::rows || masks == Masks::both || masks == Masks::rows_zero) {
    lmshrink::RowMask m(s.out);
    for (Index i = 0; i < s.out; ++i) m[i] = (i % 3 != 1) && !(s.out > 2 && i == s.out - 1);
    layer.set_row_mask(m);
  }
  if (masks == Masks::elements || masks == Masks::both) {
    lmshrink::SplitMix64 rng(seed + 4);
    lmshrink::ElementMask m(s.out, s.in);
    for (Index i = 0; i < m.size(); ++i) m.data()[i] = rng.uniform() < 0.7;
    layer.set_element_mask(m);
  }
  return layer;
}

/// y = x·(U·V + S∘M)ᵀ + b with explicit loops: the reference the layer must match.
template <class S>
Matrix<S> naive_forward(const LowRankSparseLinear<S>& layer, const Matrix<S>& x) {
  const Index out = layer.out_features(), in = layer.in_features();
  Matrix<double> w(out, in);
  for (Index i = 0; i < out; ++i)
    for (Index j = 0; j < in; ++j) {
      double acc = 0;
      for (Index k = 0; k < layer.rank(); ++k) acc += double(layer.U()(i, k)) * layer.V()(k, j);
      bool live = layer.row_mask()[i] != 0;
      if (layer.has_element_mask()) live = live && layer.element_mask()(i, j) != 0;
      w(i, j) = acc + (live ? double(layer.S()(i, j)) : 0.0);
    }
  Matrix<double> y(x.rows(), out);
  for (Index t = 0; t < x.rows(); ++t)
    for (Index i = 0; i < out; ++i) {
      double acc = layer.has_bias() ? double(layer.bias()[i]) : 0.0;
      for (Index j = 0; j < in; ++j) acc += double(x(t, j)) * w(i, j);
      y(t, i) = acc;
    }
  return y.cast<S>();
}

const Shape kShapes[] = {{1, 1, 1, 1},   {5, 7, 1, 3},  {7, 5, 5, 4},
                         {13, 17, 4, 6}, {17, 13, 13, 2}, {3, 11, 2, 1},
                         // 150 rows: with rows masked, 99 live in runs of two, gathered 64 at a time
                         {150, 9, 3, 5}};

}  // namespace

TEMPLATE_TEST_CASE("forward matches the naive dense reference", "[layer]", float, double) {
  using S = TestType;
  const Shape s = GENERATE(from_range(std::begin(kShapes), std::end(kShapes)));
  const bool bias = GENERATE(false, true);
  const Masks masks =
      GENERATE(Masks::none, Masks::rows, Masks::elements, Masks::both, Masks::zero_rows, Masks::rows_zero);
  const ProductForm form = GENERATE(ProductForm::factored, ProductForm::merged);
  CAPTURE(s.out, s.in, s.rank, s.tokens, bias, int(masks), int(form));
  auto layer = make_layer<S>(s, bias, masks, 11);
  layer.set_product_form(form);
  const Matrix<S> x = test::random_matrix<S>(s.tokens, s.in, 99);
  Matrix<S> y(s.tokens, s.out);
  auto cache = layer.make_cache(s.tokens);
  layer.forward(x, y, cache);
  REQUIRE(cache.merged() == (form == ProductForm::merged));
  const Matrix<S> ref = naive_forward(layer, x);
  const double tol = std::is_same<S, float>::value ? 1e-4 : 1e-12;
  REQUIRE((y - ref).cwiseAbs().maxCoeff() <= tol * (1 + ref.cwiseAbs().maxCoeff()));
  // to_dense() is the weight the layer represents.
  const Matrix<S> w = layer.to_dense();
  Matrix<S> y_dense = x * w.transpose();
  if (bias) y_dense.rowwise() += layer.bias().transpose();
  REQUIRE((y_dense - ref).cwiseAbs().maxCoeff() <= tol * (1 + ref.cwiseAbs().maxCoeff()));
}

TEST_CASE("backward matches finite differences in double for every parameter", "[layer][grad]") {
  const Shape s = GENERATE(from_range(std::begin(kShapes), std::end(kShapes)));
  const bool bias = GENERATE(false, true);
  const Masks masks =
      GENERATE(Masks::none, Masks::rows, Masks::elements, Masks::both, Masks::zero_rows, Masks::rows_zero);
  const ProductForm form = GENERATE(ProductForm::factored, ProductForm::merged);
  CAPTURE(s.out, s.in, s.rank, s.tokens, bias, int(masks), int(form));
  auto layer = make_layer<double>(s, bias, masks, 5);
  layer.set_product_form(form);
  Matrix<double> x = test::random_matrix<double>(s.tokens, s.in, 7);
  const Matrix<double> g = test::random_matrix<double>(s.tokens, s.out, 8);  // dL/dy
  auto cache = layer.make_cache(s.tokens);
  Matrix<double> y(s.tokens, s.out);
  const auto loss = [&] {
    layer.forward(x, y, cache);
    return (y.array() * g.array()).sum();
  };
  loss();
  auto grads = layer.make_gradients();
  grads.set_zero();
  Matrix<double> dx = Matrix<double>::Zero(s.tokens, s.in);
  layer.backward(x, g, cache, dx, grads);

  const double h = 1e-5;
  const auto close = [](double analytic, double numeric) {
    return std::abs(analytic - numeric) <= 1e-7 * (1 + std::abs(numeric));
  };
  for (Index i = 0; i < layer.U().size(); ++i)
    REQUIRE(close(grads.U.data()[i], test::central_difference(layer.U().data() + i, h, loss)));
  for (Index i = 0; i < layer.V().size(); ++i)
    REQUIRE(close(grads.V.data()[i], test::central_difference(layer.V().data() + i, h, loss)));
  for (Index i = 0; i < s.out; ++i)
    for (Index j = 0; j < s.in; ++j) {
      const bool live = layer.row_mask()[i] &&
                        (!layer.has_element_mask() || layer.element_mask()(i, j));
      if (live) {
        REQUIRE(close(grads.S(i, j), test::central_difference(&layer.S()(i, j), h, loss)));
      } else {
        REQUIRE(layer.S()(i, j) == 0.0);  // pruned entries are held at zero
        REQUIRE(grads.S(i, j) == 0.0);    // and get no gradient
      }
    }
  for (Index i = 0; i < layer.bias().size(); ++i)
    REQUIRE(close(grads.bias[i], test::central_difference(layer.bias().data() + i, h, loss)));
  for (Index i = 0; i < x.size(); ++i)
    REQUIRE(close(dx.data()[i], test::central_difference(x.data() + i, h, loss)));
}

TEST_CASE("float backward agrees with the double backward", "[layer][grad]") {
  const Shape s = GENERATE(from_range(std::begin(kShapes), std::end(kShapes)));
  const Masks masks = GENERATE(Masks::none, Masks::both, Masks::zero_rows);
  const ProductForm form = GENERATE(ProductForm::factored, ProductForm::merged);
  auto ld = make_layer<double>(s, true, masks, 21);
  auto lf = make_layer<float>(s, true, masks, 21);
  ld.set_product_form(form);
  lf.set_product_form(form);
  const Matrix<double> x = test::random_matrix<double>(s.tokens, s.in, 22);
  const Matrix<double> g = test::random_matrix<double>(s.tokens, s.out, 23);
  const auto run = [&](const auto& layer, auto scalar) {
    using S = decltype(scalar);
    const Matrix<S> xs = x.cast<S>(), gs = g.cast<S>();
    Matrix<S> y(s.tokens, s.out), dx = Matrix<S>::Zero(s.tokens, s.in);
    auto cache = layer.make_cache(s.tokens);
    auto grads = layer.make_gradients();
    layer.forward(xs, y, cache);
    layer.backward(xs, gs, cache, dx, grads);
    return std::make_tuple(grads.U.template cast<double>().eval(),
                           grads.V.template cast<double>().eval(),
                           grads.S.template cast<double>().eval(),
                           grads.bias.template cast<double>().eval(),
                           dx.template cast<double>().eval());
  };
  const auto rd = run(ld, 0.0);
  const auto rf = run(lf, 0.0f);
  const auto near = [](const auto& a, const auto& b) {
    return (a - b).cwiseAbs().maxCoeff() <= 1e-4 * (1 + b.cwiseAbs().maxCoeff());
  };
  REQUIRE(near(std::get<0>(rf), std::get<0>(rd)));
  REQUIRE(near(std::get<1>(rf), std::get<1>(rd)));
  REQUIRE(near(std::get<2>(rf), std::get<2>(rd)));
  REQUIRE(near(std::get<3>(rf), std::get<3>(rd)));
  REQUIRE(near(std::get<4>(rf), std::get<4>(rd)));
}

TEST_CASE("backward accumulates and set_zero clears", "[layer]") {
  const Shape s{9, 6, 3, 4};
  const ProductForm form = GENERATE(ProductForm::factored, ProductForm::merged);
  CAPTURE(int(form));
  auto layer = make_layer<double>(s, true, Masks::rows, 31);
  layer.set_product_form(form);  // merged: each backward after the first forms W again
  const Matrix<double> x = test::random_matrix<double>(s.tokens, s.in, 32);
  const Matrix<double> g = test::random_matrix<double>(s.tokens, s.out, 33);
  Matrix<double> y(s.tokens, s.out);
  auto cache = layer.make_cache(s.tokens);
  auto once = layer.make_gradients();
  auto twice = layer.make_gradients();
  Matrix<double> dx1 = Matrix<double>::Zero(s.tokens, s.in), dx2 = dx1;
  layer.forward(x, y, cache);
  layer.backward(x, g, cache, dx1, once);
  layer.backward(x, g, cache, dx2, twice);
  layer.backward(x, g, cache, dx2, twice);
  REQUIRE((twice.U - 2 * once.U).norm() < 1e-12);
  REQUIRE((twice.V - 2 * once.V).norm() < 1e-12);
  REQUIRE((twice.S - 2 * once.S).norm() < 1e-12);
  REQUIRE((twice.bias - 2 * once.bias).norm() < 1e-12);
  REQUIRE((dx2 - 2 * dx1).norm() < 1e-12);
  REQUIRE(once.U.norm() > 0);
  // Without dx: the same parameter gradients.
  auto no_dx = layer.make_gradients();
  layer.backward(x, g, cache, no_dx);
  REQUIRE((no_dx.S - once.S).norm() == 0);
  twice.set_zero();
  REQUIRE(twice.U.norm() == 0);
  REQUIRE(twice.V.norm() == 0);
  REQUIRE(twice.S.norm() == 0);
  REQUIRE(twice.bias.norm() == 0);
}

TEST_CASE("the automatic product form follows the multiply-adds", "[layer]") {
  // stories260K's 172x64 at LoSparse 0.5's rank (11), S dense. Merging saves multiply-adds from
  // N > out·in / (out + in) · (1 + 2 / 3r) ≈ 50 tokens, but W (out·in values) must fit in the
  // cache's two (N, r) buffers: from N = 501.
  const Shape s{172, 64, 11, 512};
  auto layer = make_layer<float>(s, false, Masks::none, 81);
  REQUIRE(layer.product_form() == ProductForm::automatic);
  REQUIRE(layer.merges(512));
  REQUIRE(layer.merges(501));
  REQUIRE_FALSE(layer.merges(500));
  REQUIRE_FALSE(layer.merges(1));
  const Matrix<float> x = test::random_matrix<float>(s.tokens, s.in, 82);
  const Matrix<float> dy = test::random_matrix<float>(s.tokens, s.out, 83);
  Matrix<float> y(s.tokens, s.out), dx = Matrix<float>::Zero(s.tokens, s.in);
  auto cache = layer.make_cache(s.tokens);
  const auto bytes = cache.bytes();
  layer.forward(x, y, cache);
  REQUIRE(cache.merged());
  REQUIRE(cache.bytes() == bytes);  // make_cache sized W
  auto grads = layer.make_gradients();
  layer.backward(x, dy, cache, dx, grads);
  // The factored form: the same results within rounding.
  auto factored = layer;
  factored.set_product_form(ProductForm::factored);
  auto fcache = factored.make_cache(s.tokens);
  auto fgrads = factored.make_gradients();
  Matrix<float> fy(s.tokens, s.out), fdx = Matrix<float>::Zero(s.tokens, s.in);
  factored.forward(x, fy, fcache);
  REQUIRE_FALSE(fcache.merged());
  factored.backward(x, dy, fcache, fdx, fgrads);
  const auto near = [](const auto& a, const auto& b) {
    return (a - b).cwiseAbs().maxCoeff() <= 1e-5f * (1 + b.cwiseAbs().maxCoeff());
  };
  REQUIRE(near(y, fy));
  REQUIRE(near(dx, fdx));
  REQUIRE(near(grads.U, fgrads.U));
  REQUIRE(near(grads.V, fgrads.V));
  REQUIRE(near(grads.S, fgrads.S));
  // A few tokens, or half the rows all zero (after a reference mask step), or most rows pruned:
  // factored.
  layer.forward(x.topRows(8), y.topRows(8), cache);
  REQUIRE_FALSE(cache.merged());
  auto zero_rows = layer;
  for (Index i = 0; i < s.out; i += 2) zero_rows.S().row(i).setZero();
  zero_rows.forward(x, y, cache);
  REQUIRE_FALSE(cache.merged());
  auto pruned = layer;
  lmshrink::RowMask m = lmshrink::RowMask::Zero(s.out);
  for (Index i = 0; i < s.out; i += 4) m[i] = 1;
  pruned.set_row_mask(m);
  REQUIRE_FALSE(pruned.merges(512));
  pruned.forward(x, y, cache);
  REQUIRE_FALSE(cache.merged());
  // A low-rank-only layer merges only when its rank is past the break-even.
  auto low_rank = layer;
  lmshrink::make_low_rank_only(low_rank);
  REQUIRE_FALSE(low_rank.merges(512));
  low_rank.set_product_form(ProductForm::merged);
  REQUIRE(low_rank.merges(1));
}

TEST_CASE("batch size may change between calls on one cache", "[layer]") {
  const Shape s{12, 10, 4, 8};
  const auto layer = make_layer<float>(s, false, Masks::rows, 41);
  auto cache = layer.make_cache(2);
  for (Index n : {2, 8, 1, 5, 8, 3}) {
    const Matrix<float> x = test::random_matrix<float>(n, s.in, 42 + n);
    Matrix<float> y(n, s.out);
    layer.forward(x, y, cache);
    REQUIRE((y - naive_forward(layer, x)).cwiseAbs().maxCoeff() < 1e-4f);
    REQUIRE(cache.tokens() == n);
  }
  REQUIRE(cache.capacity() >= 8);
}

TEST_CASE("one cache shared by layers of different ranks stays the size of the largest product", "[layer]") {
  // A decoder runs every layer of a compressed model through one cache; alternating ranks once
  // grew it geometrically (rank 1 then 6 then 1 ... until the allocation failed).
  const auto low = make_layer<float>(Shape{12, 10, 1, 8}, false, Masks::rows, 43);
  const auto high = make_layer<float>(Shape{12, 10, 6, 8}, false, Masks::rows, 44);
  LowRankSparseLinear<float>::Cache cache;
  const Matrix<float> x = test::random_matrix<float>(2, 10, 45);
  Matrix<float> y(2, 12);
  for (int round = 0; round < 60; ++round) {
    high.forward(x, y, cache);
    REQUIRE((y - naive_forward(high, x)).cwiseAbs().maxCoeff() < 1e-4f);
    low.forward(x, y, cache);
    REQUIRE((y - naive_forward(low, x)).cwiseAbs().maxCoeff() < 1e-4f);
  }
  CHECK(cache.capacity() == 12);  // 2 tokens x rank 6 values, read at rank 1
}

TEST_CASE("raw pointer overloads read and write strided buffers without copies", "[layer]") {
  const Shape s{6, 5, 2, 3};
  const auto layer = make_layer<double>(s, true, Masks::elements, 51);
  const Index ldx = 9, ldy = 8;
  std::vector<double> xbuf(s.tokens * ldx, -7.0), ybuf(s.tokens * ldy, 123.0);
  const Matrix<double> x = test::random_matrix<double>(s.tokens, s.in, 52);
  for (Index t = 0; t < s.tokens; ++t)
    for (Index j = 0; j < s.in; ++j) xbuf[t * ldx + j] = x(t, j);
  auto cache = layer.make_cache(s.tokens);
  layer.forward(xbuf.data(), s.tokens, ldx, ybuf.data(), ldy, cache);
  const Matrix<double> ref = naive_forward(layer, x);
  for (Index t = 0; t < s.tokens; ++t) {
    for (Index i = 0; i < s.out; ++i) REQUIRE(std::abs(ybuf[t * ldy + i] - ref(t, i)) < 1e-12);
    for (Index i = s.out; i < ldy; ++i) REQUIRE(ybuf[t * ldy + i] == 123.0);  // padding untouched
  }
  // Backward through pointers equals backward through Refs.
  const Matrix<double> g = test::random_matrix<double>(s.tokens, s.out, 53);
  std::vector<double> gbuf(s.tokens * ldy, 0.0), dxbuf(s.tokens * ldx, 0.0);
  for (Index t = 0; t < s.tokens; ++t)
    for (Index i = 0; i < s.out; ++i) gbuf[t * ldy + i] = g(t, i);
  auto gp = layer.make_gradients();
  layer.backward(xbuf.data(), s.tokens, ldx, gbuf.data(), ldy, cache, dxbuf.data(), ldx, gp);
  auto gr = layer.make_gradients();
  Matrix<double> y(s.tokens, s.out), dx = Matrix<double>::Zero(s.tokens, s.in);
  layer.forward(x, y, cache);
  layer.backward(x, g, cache, dx, gr);
  REQUIRE((gp.U - gr.U).norm() < 1e-12);
  REQUIRE((gp.S - gr.S).norm() < 1e-12);
  for (Index t = 0; t < s.tokens; ++t)
    for (Index j = 0; j < s.in; ++j) REQUIRE(std::abs(dxbuf[t * ldx + j] - dx(t, j)) < 1e-12);
  auto gn = layer.make_gradients();
  layer.backward(xbuf.data(), s.tokens, ldx, gbuf.data(), ldy, cache, nullptr, 0, gn);
  REQUIRE((gn.V - gr.V).norm() < 1e-12);
}

TEST_CASE("parameter accounting", "[layer]") {
  LowRankSparseLinear<float> layer(10, 6, 2, true);
  REQUIRE(layer.dense_parameters() == 60 + 10);
  REQUIRE(layer.live_parameters() == 2 * 16 + 60 + 10);
  lmshrink::RowMask rows = lmshrink::RowMask::Ones(10);
  rows[0] = rows[3] = rows[4] = rows[9] = 0;
  layer.set_row_mask(rows);
  REQUIRE(layer.live_rows() == 6);
  REQUIRE(layer.live_sparse_entries() == 36);
  REQUIRE(layer.live_parameters() == 32 + 36 + 10);
  const std::vector<std::pair<Index, Index>> runs = {{1, 2}, {5, 4}};
  REQUIRE(layer.live_row_runs() == runs);
  lmshrink::ElementMask el = lmshrink::ElementMask::Ones(10, 6);
  el(1, 0) = 0;  // in a live row: counts
  el(0, 0) = 0;  // in a pruned row: already not counted
  layer.set_element_mask(el);
  REQUIRE(layer.live_sparse_entries() == 35);
  rows.setZero();
  layer.set_row_mask(rows);
  REQUIRE(layer.live_sparse_entries() == 0);
  REQUIRE(layer.live_row_runs().empty());
  REQUIRE(layer.S().norm() == 0);
}

TEST_CASE("every row pruned: the layer is its low-rank part", "[layer]") {
  const Shape s{7, 4, 2, 3};
  auto layer = make_layer<double>(s, false, Masks::none, 61);
  layer.set_row_mask(lmshrink::RowMask::Zero(s.out));
  const Matrix<double> x = test::random_matrix<double>(s.tokens, s.in, 62);
  Matrix<double> y(s.tokens, s.out);
  auto cache = layer.make_cache(s.tokens);
  layer.forward(x, y, cache);
  REQUIRE((y - x * (layer.U() * layer.V()).transpose()).norm() < 1e-12);
}

TEST_CASE("a low-rank-only layer frees S, its gradient and moments, and computes the same bits", "[layer]") {
  const Shape s{7, 4, 2, 3};
  auto kept = make_layer<double>(s, true, Masks::none, 71);
  kept.set_row_mask(lmshrink::RowMask::Zero(s.out));  // every row pruned, S still held
  auto freed = kept;
  REQUIRE(!freed.sparse_released());
  lmshrink::make_low_rank_only(freed);
  REQUIRE(freed.sparse_released());
  REQUIRE(freed.S().size() == 0);
  REQUIRE(freed.out_features() == s.out);
  REQUIRE(freed.in_features() == s.in);
  REQUIRE(freed.live_parameters() == kept.live_parameters());
  REQUIRE(freed.to_dense() == kept.to_dense());
  auto g_kept = kept.make_gradients(), g_freed = freed.make_gradients();
  REQUIRE(g_freed.S.size() == 0);
  const Matrix<double> x = test::random_matrix<double>(s.tokens, s.in, 72);
  const Matrix<double> dy = test::random_matrix<double>(s.tokens, s.out, 73);
  Matrix<double> y1(s.tokens, s.out), y2(s.tokens, s.out), dx1 = Matrix<double>::Zero(s.tokens, s.in), dx2 = dx1;
  auto c1 = kept.make_cache(s.tokens), c2 = freed.make_cache(s.tokens);
  kept.forward(x, y1, c1);
  freed.forward(x, y2, c2);
  REQUIRE(y1 == y2);
  kept.backward(x, dy, c1, dx1, g_kept);
  freed.backward(x, dy, c2, dx2, g_freed);
  REQUIRE(dx1 == dx2);
  REQUIRE(g_kept.U == g_freed.U);
  REQUIRE(g_kept.V == g_freed.V);
  REQUIRE(g_kept.bias == g_freed.bias);
  // AdamW holds no moments for it and steps U, V and the bias alike.
  lmshrink::AdamW<double> a_kept(kept, {0.01, 0.9, 0.999, 1e-8, 0.0}), a_freed(freed, {0.01, 0.9, 0.999, 1e-8, 0.0});
  REQUIRE(a_freed.first_moment_S().size() == 0);
  a_kept.step(kept, g_kept);
  a_freed.step(freed, g_freed);
  REQUIRE(kept.U() == freed.U());
  REQUIRE(kept.V() == freed.V());
  REQUIRE(kept.to_dense() == freed.to_dense());
  // The pruner has nothing to prune; a live row brings S back as zeros.
  lmshrink::PrunerOptions po;
  po.schedule.total_steps = 10;
  lmshrink::Pruner<double> pruner(po);
  REQUIRE_THROWS_AS(pruner.add("freed", freed, g_freed), lmshrink::state_error);
  lmshrink::RowMask one = lmshrink::RowMask::Zero(s.out);
  one[2] = 1;
  freed.set_row_mask(one);
  REQUIRE(!freed.sparse_released());
  REQUIRE(freed.S().rows() == s.out);
  REQUIRE(freed.S().norm() == 0);
  // A layer with live rows is not released.
  auto live = make_layer<double>(s, false, Masks::none, 74);
  REQUIRE(!live.release_sparse());
  REQUIRE(live.S().rows() == s.out);
}

TEST_CASE("bad input throws lmshrink errors naming what was expected and given", "[layer][errors]") {
  using lmshrink::shape_error;
  using lmshrink::state_error;
  using lmshrink::value_error;
  LowRankSparseLinear<float> layer(8, 6, 3, true);
  auto cache = layer.make_cache(4);
  auto grads = layer.make_gradients();
  Matrix<float> x = Matrix<float>::Zero(4, 6), y(4, 8), dy = Matrix<float>::Zero(4, 8),
                dx = Matrix<float>::Zero(4, 6);

  REQUIRE_THROWS_WITH(LowRankSparseLinear<float>(8, 6, 7),
                      Contains("rank must be in [0, min(out, in)] = [0, 6], got 7"));
  REQUIRE_THROWS_AS(LowRankSparseLinear<float>(0, 6, 0), value_error);
  REQUIRE_THROWS_AS(LowRankSparseLinear<float>(8, 6, -1), value_error);

  Matrix<float> bad_x(4, 5);
  REQUIRE_THROWS_WITH(layer.forward(bad_x, y, cache),
                      Contains("x has 5 columns but in_features is 6"));
  Matrix<float> bad_y(4, 7);
  REQUIRE_THROWS_WITH(layer.forward(x, bad_y, cache),
                      Contains("y is 4x7 but 4x8 was expected"));
  REQUIRE_THROWS_AS(layer.backward(x, dy, cache, dx, grads), state_error);  // no forward yet
  layer.forward(x, y, cache);
  Matrix<float> bad_dy(4, 9);
  REQUIRE_THROWS_WITH(layer.backward(x, bad_dy, cache, dx, grads),
                      Contains("dy is 4x9 but 4x8 was expected"));
  Matrix<float> bad_dx(3, 6);
  REQUIRE_THROWS_WITH(layer.backward(x, dy, cache, bad_dx, grads),
                      Contains("dx is 3x6 but 4x6 was expected"));
  Matrix<float> x3 = Matrix<float>::Zero(3, 6), dy3 = Matrix<float>::Zero(3, 8);
  REQUIRE_THROWS_WITH(layer.backward(x3, dy3, cache, grads),
                      Contains("the cache holds a forward of 4 tokens"));
  // Parameters reshaped through their accessors are refused before they are read.
  {
    auto reshaped = layer;
    reshaped.S().resize(7, 6);
    REQUIRE_THROWS_WITH(reshaped.forward(x, y, cache), Contains("S is 7x6 but 8x6 was expected"));
    reshaped = layer;
    reshaped.V().resize(3, 5);
    REQUIRE_THROWS_WITH(reshaped.forward(x, y, cache), Contains("V is 3x5 but 3x6 was expected"));
    reshaped = layer;
    reshaped.U().resize(8, 2);  // the rank is U's: V no longer matches
    REQUIRE_THROWS_WITH(reshaped.forward(x, y, cache), Contains("V is 3x6 but 2x6 was expected"));
    reshaped = layer;
    reshaped.bias().resize(5);
    REQUIRE_THROWS_WITH(reshaped.forward(x, y, cache), Contains("bias has 5 entries but 8"));
    reshaped = layer;
    reshaped.S().resize(7, 6);
    REQUIRE_THROWS_WITH(reshaped.make_cache(4), Contains("S is 7x6 but 8x6 was expected"));
    reshaped = layer;
    reshaped.S().resize(0, 0);  // as if released, but its rows are live
    REQUIRE_THROWS_WITH(reshaped.forward(x, y, cache), Contains("S is 0x0 but 8x6 was expected"));
    reshaped = layer;
    reshaped.S().resize(8, 7);
    REQUIRE_THROWS_WITH(reshaped.backward(x, dy, cache, dx, grads), Contains("S is 8x7 but 8x6 was expected"));
  }
  auto wrong = grads;
  wrong.S.resize(8, 5);
  REQUIRE_THROWS_WITH(layer.backward(x, dy, cache, dx, wrong),
                      Contains("grads.S is 8x5 but 8x6 was expected"));
  wrong = grads;
  wrong.bias.resize(0);
  REQUIRE_THROWS_WITH(layer.backward(x, dy, cache, dx, wrong),
                      Contains("grads.bias has 0 entries but 8 were expected"));

  REQUIRE_THROWS_WITH(layer.set_row_mask(lmshrink::RowMask::Ones(7)),
                      Contains("mask has 7 entries but out_features is 8"));
  lmshrink::RowMask two = lmshrink::RowMask::Ones(8);
  two[2] = 2;
  REQUIRE_THROWS_WITH(layer.set_row_mask(two), Contains("entry 2 is 2"));
  REQUIRE_THROWS_AS(layer.set_element_mask(lmshrink::ElementMask::Ones(8, 5)), shape_error);

  REQUIRE_THROWS_WITH(layer.forward(x.data(), 4, 5, y.data(), 8, cache),
                      Contains("x leading dimension is 5 but at least 6"));
  REQUIRE_THROWS_WITH(layer.forward(nullptr, 4, 6, y.data(), 8, cache),
                      Contains("x is a null pointer"));
  REQUIRE_THROWS_AS(layer.set_low_rank(Matrix<float>::Zero(8, 2), Matrix<float>::Zero(3, 6)),
                    shape_error);
  REQUIRE_THROWS_AS(layer.set_low_rank(Matrix<float>::Zero(7, 2), Matrix<float>::Zero(2, 6)),
                    shape_error);
  REQUIRE_THROWS_WITH(layer.set_product_form(static_cast<lmshrink::ProductForm>(3)),
                      Contains("form must be automatic, factored or merged (0, 1 or 2), got 3"));
  REQUIRE(layer.product_form() == lmshrink::ProductForm::automatic);
  layer.set_low_rank(Matrix<float>::Zero(8, 5), Matrix<float>::Zero(5, 6));
  REQUIRE(layer.rank() == 5);
}
