#include <catch2/catch.hpp>
#include <lmshrink/low_rank_sparse_linear.hpp>
#include <lmshrink/xtensor.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xview.hpp>

using Catch::Matchers::Contains;

TEST_CASE("as_eigen views xtensor memory without copying", "[xtensor]") {
  xt::xtensor<float, 2> t = {{1, 2, 3}, {4, 5, 6}};
  auto m = lmshrink::as_eigen(t);
  REQUIRE(m.rows() == 2);
  REQUIRE(m.cols() == 3);
  REQUIRE(m.data() == t.data());
  REQUIRE(m(1, 2) == 6);
  m(0, 1) = 20;  // writes through
  REQUIRE(t(0, 1) == 20);
  const xt::xtensor<float, 2>& ct = t;
  auto cm = lmshrink::as_eigen(ct);
  REQUIRE(cm(1, 0) == 4);
}

TEST_CASE("as_eigen handles row-strided views and rejects other layouts", "[xtensor]") {
  xt::xtensor<double, 2> t = xt::zeros<double>({4, 6});
  for (std::size_t i = 0; i < 4; ++i)
    for (std::size_t j = 0; j < 6; ++j) t(i, j) = 10.0 * i + j;
  // xtensor's own adaptor over a sub-block with row stride 6.
  auto block = xt::adapt(t.data() + 1, 6, xt::no_ownership(), std::array<std::size_t, 2>{2, 3},
                         std::array<std::ptrdiff_t, 2>{6, 1});
  auto m = lmshrink::as_eigen(block);
  REQUIRE(m.outerStride() == 6);
  REQUIRE(m(1, 2) == 13.0);

  xt::xarray<double, xt::layout_type::column_major> col = xt::zeros<double>({3, 4});
  REQUIRE_THROWS_WITH(lmshrink::as_eigen(col),
                      Contains("[lmshrink.shape] as_eigen: a row-major tensor"));
  xt::xarray<double> three = xt::zeros<double>({2, 2, 2});
  REQUIRE_THROWS_WITH(lmshrink::as_eigen(three), Contains("a 2-D tensor was expected, got 3"));
}

TEST_CASE("as_xtensor views Eigen memory, including blocks, without copying", "[xtensor]") {
  lmshrink::RowMatrix<float> m(3, 5);
  for (int i = 0; i < 15; ++i) m.data()[i] = float(i);
  auto t = lmshrink::as_xtensor(m);
  REQUIRE(t.shape()[0] == 3);
  REQUIRE(t.shape()[1] == 5);
  REQUIRE(t.data() == m.data());
  t(2, 4) = 100;
  REQUIRE(m(2, 4) == 100);
  auto block = lmshrink::as_xtensor(m.middleCols(1, 3));
  REQUIRE(block.shape()[1] == 3);
  REQUIRE(block(1, 0) == m(1, 1));
  block(2, 2) = -1;
  REQUIRE(m(2, 3) == -1);
  const lmshrink::RowMatrix<float>& cm = m;
  auto ct = lmshrink::as_xtensor(cm);
  REQUIRE(ct(1, 1) == 6);
}

TEST_CASE("a layer runs on xtensor buffers through the adapters", "[xtensor]") {
  lmshrink::LowRankSparseLinear<double> layer(4, 3, 2, true);
  layer.U().setConstant(0.5);
  layer.V().setConstant(1.0);
  layer.S().setIdentity();
  layer.bias().setConstant(1.0);
  xt::xtensor<double, 2> x = {{1, 2, 3}, {0, 0, 1}};
  xt::xtensor<double, 2> y = xt::zeros<double>({2, 4});
  auto cache = layer.make_cache(2);
  layer.forward(lmshrink::as_eigen(x), lmshrink::as_eigen(y), cache);
  // (U·V)(i,:) = [1 1 1], so y(t,i) = sum(x_t) + x_t(i) (i < 3) + 1.
  REQUIRE(y(0, 0) == 6 + 1 + 1);
  REQUIRE(y(0, 3) == 6 + 1);
  REQUIRE(y(1, 2) == 1 + 1 + 1);
}
