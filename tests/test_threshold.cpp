#include <catch2/catch.hpp>
#include <lmshrink/threshold.hpp>

using lmshrink::WeightedScore;
using Catch::Matchers::Contains;

TEST_CASE("k = floor(N(1-keep)), tau = k-th smallest, the boundary survives", "[threshold]") {
  // Elements 5, 1, 3, 3, 2 (N = 5). keep 0.5: k = floor(2.5) = 2, tau = 2nd smallest = 2.
  std::vector<WeightedScore> s = {{5, 1}, {1, 1}, {3, 1}, {3, 1}, {2, 1}};
  auto t = lmshrink::select_threshold(s, 0.5);
  REQUIRE(t.entries == 5);
  REQUIRE(t.k == 2);
  REQUIRE(t.value == 2);  // only 1 is pruned (< 2); 2 survives at the boundary
  // keep 0.2: k = 4, tau = 4th smallest of {1,2,3,3,5} = 3: both 3s survive (ties).
  t = lmshrink::select_threshold(s, 0.2);
  REQUIRE(t.k == 4);
  REQUIRE(t.value == 3);
  // keep 1 and keep 0.9: k = 0, nothing pruned.
  REQUIRE(lmshrink::select_threshold(s, 1.0).k == 0);
  t = lmshrink::select_threshold(s, 0.9);  // floor(0.5) = 0
  REQUIRE(t.k == 0);
  REQUIRE(t.value == -std::numeric_limits<double>::infinity());
  // keep 0: k = N, tau = the largest: every entry below it is pruned.
  REQUIRE(lmshrink::select_threshold(s, 0.0).value == 5);
}

TEST_CASE("row scores count once per entry across layers of different widths", "[threshold]") {
  // Layer A (2 rows x 4): row scores 1 and 4. Layer B (3 rows x 2): row scores 2, 3, 0.5.
  // Pooled N = 2·4 + 3·2 = 14. keep 0.5: k = 7. Sorted with weights:
  // 0.5 (x2, cum 2), 1 (x4, cum 6), 2 (x2, cum 8) -> tau = 2.
  lmshrink::RowMatrix<double> a(2, 4), b(3, 2);
  a << 1, 1, 1, 1, 3, 5, 4, 4;
  b << 2, 2, 3, 3, 0, 1;
  std::vector<WeightedScore> pooled;
  lmshrink::row_means<double>(a, pooled);
  lmshrink::row_means<double>(b, pooled);
  REQUIRE(pooled.size() == 5);
  REQUIRE(pooled[1].score == 4);
  REQUIRE(pooled[4].weight == 2);
  const auto t = lmshrink::select_threshold(pooled, 0.5);
  REQUIRE(t.entries == 14);
  REQUIRE(t.k == 7);
  REQUIRE(t.value == 2);
  // Per-layer thresholds differ: layer B alone, N = 6, k = 3: 0.5 (cum 2), 2 (cum 4) -> 2;
  // layer A alone, N = 8, k = 4: 1 (cum 4) -> 1.
  std::vector<WeightedScore> only_a, only_b;
  lmshrink::row_means<double>(a, only_a);
  lmshrink::row_means<double>(b, only_b);
  REQUIRE(lmshrink::select_threshold(only_a, 0.5).value == 1);
  REQUIRE(lmshrink::select_threshold(only_b, 0.5).value == 2);
}

TEST_CASE("column and element pooling", "[threshold]") {
  lmshrink::RowMatrix<float> m(2, 3);
  m << 1, 2, 9, 3, 4, 9;
  std::vector<WeightedScore> cols, elems;
  lmshrink::column_means<float>(m, cols);
  REQUIRE(cols.size() == 3);
  REQUIRE(cols[0].score == 2);
  REQUIRE(cols[0].weight == 2);
  lmshrink::element_scores<float>(m, elems);
  REQUIRE(elems.size() == 6);
  REQUIRE(lmshrink::select_threshold(elems, 0.5).value == 3);  // k = 3 of {1,2,3,4,9,9}
}

TEST_CASE("threshold selection rejects bad input", "[threshold][errors]") {
  std::vector<WeightedScore> s = {{1, 1}, {2, 1}};
  REQUIRE_THROWS_WITH(lmshrink::select_threshold(s, 1.5), Contains("keep must be in [0, 1], got 1.5"));
  REQUIRE_THROWS_AS(lmshrink::select_threshold(s, -0.1), lmshrink::value_error);
  s.push_back({std::nan(""), 1});
  REQUIRE_THROWS_AS(lmshrink::select_threshold(s, 0.5), lmshrink::numeric_error);
  REQUIRE(lmshrink::select_threshold({}, 0.5).k == 0);  // nothing to prune
}
