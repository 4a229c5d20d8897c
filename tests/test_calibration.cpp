// GramAccumulator and row output energies (calibration.hpp). The whitened SVD that uses them is
// tested with the other svd_init paths in test_svd_init.cpp.
#include <catch2/catch.hpp>
#include <cmath>
#include <lmshrink/calibration.hpp>

#include "test_helpers.hpp"

using lmshrink::GramAccumulator;
using lmshrink::Index;
using test::Matrix;
using Catch::Matchers::Contains;

namespace {

// ‖X·mᵀ‖_F² computed directly, in double.
double direct_output_energy(const Eigen::MatrixXd& x, const Eigen::MatrixXd& m) {
  return (x * m.transpose()).squaredNorm();
}

}  // namespace

TEMPLATE_TEST_CASE("GramAccumulator sums XᵀX in double over batches", "[calibration]", float,
                   double) {
  using S = TestType;
  const Matrix<S> a = test::random_matrix<S>(37, 11, 1), b = test::random_matrix<S>(5, 11, 2);
  GramAccumulator g(11), h(11);
  g.add<S>(a);
  g.add<S>(Matrix<S>(0, 11));  // zero rows: nothing changes
  h.add<S>(b);
  g.merge(h);
  REQUIRE(g.tokens() == 42);
  Eigen::MatrixXd x(42, 11);
  x << a.template cast<double>(), b.template cast<double>();
  const Eigen::MatrixXd expected = x.transpose() * x / 42.0;
  REQUIRE((g.mean_gram() - expected).cwiseAbs().maxCoeff() <= 1e-12 * expected.cwiseAbs().maxCoeff());
  REQUIRE((g.mean_gram() - g.mean_gram().transpose()).cwiseAbs().maxCoeff() == 0.0);

  // Row output energies r·Ḡ·rᵀ equal ‖X·rᵀ‖² / tokens.
  const Matrix<S> m = test::random_matrix<S>(6, 11, 3);
  const Eigen::VectorXd e = lmshrink::row_output_energy<S>(m, g);
  REQUIRE(e.size() == 6);
  for (Index i = 0; i < 6; ++i) {
    const double direct = direct_output_energy(x, m.row(i).template cast<double>()) / 42.0;
    REQUIRE(std::abs(e[i] - direct) <= 1e-10 * direct);
  }
  REQUIRE(std::abs(lmshrink::output_energy<S>(m, g) - e.sum()) <= 1e-12 * e.sum());
}

TEST_CASE("element_output_energy: each entry's squared output alone", "[calibration]") {
  // Inputs with mean squares 1 and 4 (tokens (1, 2) and (−1, −2)): entry (i, j) scores
  // m(i, j)² · {1, 4}[j], flat row by row.
  Matrix<float> x(2, 2);
  x << 1, 2, -1, -2;
  GramAccumulator g(2);
  g.add<float>(x);
  Matrix<float> m(2, 2);
  m << 3, -1, 0.5f, 2;
  const Eigen::VectorXd e = lmshrink::element_output_energy<float>(m, g);
  REQUIRE(e.size() == 4);
  REQUIRE(e[0] == Approx(9));
  REQUIRE(e[1] == Approx(4));
  REQUIRE(e[2] == Approx(0.25));
  REQUIRE(e[3] == Approx(16));
  REQUIRE_THROWS_WITH(lmshrink::element_output_energy<float>(Matrix<float>::Ones(2, 3), g),
                      Contains("the calibration statistics have 2 features but the weight has 3 inputs"));
}

TEST_CASE("GramAccumulator and row energies refuse bad input", "[calibration][errors]") {
  GramAccumulator g(4);
  REQUIRE_THROWS_WITH(g.add<float>(Matrix<float>::Ones(3, 5)),
                      Contains("x has 5 columns but in_features is 4"));
  Matrix<float> nan = Matrix<float>::Ones(2, 4);
  nan(1, 2) = std::nanf("");
  REQUIRE_THROWS_AS(g.add<float>(nan), lmshrink::numeric_error);
  REQUIRE(g.tokens() == 0);  // nothing of a refused batch was added
  REQUIRE_THROWS_WITH(g.mean_gram(), Contains("no tokens were added"));
  REQUIRE_THROWS_AS(GramAccumulator(0), lmshrink::value_error);
  GramAccumulator unsized;
  REQUIRE_THROWS_AS(unsized.add<float>(Matrix<float>::Ones(1, 4)), lmshrink::state_error);
  GramAccumulator other(3);
  REQUIRE_THROWS_AS(g.merge(other), lmshrink::shape_error);
  // Energies: wrong size, zero tokens.
  REQUIRE_THROWS_WITH(lmshrink::row_output_energy<float>(Matrix<float>::Ones(2, 4), g),
                      Contains("hold 0 tokens"));
  g.add<float>(Matrix<float>::Ones(2, 4));
  REQUIRE_THROWS_WITH(lmshrink::row_output_energy<float>(Matrix<float>::Ones(2, 3), g),
                      Contains("statistics have 4 features but the weight has 3 inputs"));
}
