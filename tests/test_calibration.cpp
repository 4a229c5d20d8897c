#include <Eigen/SVD>
#include <catch2/catch.hpp>
#include <cmath>
#include <lmshrink/calibration.hpp>
#include <lmshrink/svd_init.hpp>

#include "test_helpers.hpp"

using lmshrink::GramAccumulator;
using lmshrink::Index;
using lmshrink::SvdInitOptions;
using lmshrink::Whitening;
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

TEMPLATE_TEST_CASE("whitened SVD with an isotropic Gram matrix is the plain SVD", "[calibration]",
                   float, double) {
  using S = TestType;
  const Index out = 13, in = 9;
  const Matrix<S> w = test::random_matrix<S>(out, in, 4);
  GramAccumulator g(in);
  g.add<S>(Matrix<S>::Identity(in, in) * S(3));  // Ḡ = 9/in · I
  for (Index rank : {Index(1), Index(4), Index(9)}) {
    CAPTURE(rank);
    SvdInitOptions opt;
    opt.rank = rank;
    lmshrink::LowRankSparseLinear<S> plain, white;
    const auto rp = lmshrink::svd_init<S>(w, plain, opt);
    const auto rw = lmshrink::svd_init<S>(w, white, opt, g);
    REQUIRE(rw.whitening == Whitening::cholesky);
    REQUIRE(std::isnan(rp.relative_output_error));
    const Matrix<S> up = plain.U() * plain.V(), uw = white.U() * white.V();
    const double tol = std::is_same<S, float>::value ? 2e-5 : 1e-11;
    REQUIRE((up - uw).cwiseAbs().maxCoeff() <= tol * w.cwiseAbs().maxCoeff());
    REQUIRE(std::abs(rw.relative_error - rp.relative_error) <= tol);
    // With Ḡ ∝ I the output error equals the weight error.
    REQUIRE(std::abs(rw.relative_output_error - rw.relative_error) <= tol);
    // U·V + S = W.
    const Matrix<S> recon = uw + white.S();
    REQUIRE((recon - w).cwiseAbs().maxCoeff() <= tol * w.cwiseAbs().maxCoeff());
  }
}

TEST_CASE("whitened SVD minimises the output error on anisotropic inputs", "[calibration]") {
  // Inputs whose feature scales span 100x and are correlated; W random.
  const Index out = 32, in = 48, tokens = 2000, rank = 8;
  Eigen::MatrixXd z = test::random_matrix<double>(tokens, in, 5);
  Eigen::VectorXd scale(in);
  for (Index j = 0; j < in; ++j) scale[j] = std::pow(100.0, -double(j) / double(in - 1));
  const Eigen::MatrixXd mix = Eigen::MatrixXd::Identity(in, in) + 0.3 * test::random_matrix<double>(in, in, 6);
  const Eigen::MatrixXd x = z * scale.asDiagonal() * mix;
  const Matrix<float> xf = x.cast<float>();
  const Matrix<float> w = test::random_matrix<float>(out, in, 7);
  GramAccumulator g(in);
  for (Index t = 0; t < tokens; t += 300) g.add<float>(xf.middleRows(t, std::min<Index>(300, tokens - t)));

  SvdInitOptions opt;
  opt.rank = rank;
  opt.damping = 0;  // the exact optimum
  lmshrink::LowRankSparseLinear<float> plain, white;
  lmshrink::svd_init<float>(w, plain, opt);
  const auto rw = lmshrink::svd_init<float>(w, white, opt, g);
  const Eigen::MatrixXd xd = xf.cast<double>();
  const Eigen::MatrixXd wd = w.cast<double>();
  const double base = std::sqrt(direct_output_energy(xd, wd));
  const double err_plain =
      std::sqrt(direct_output_energy(xd, wd - (plain.U() * plain.V()).cast<double>())) / base;
  const double err_white =
      std::sqrt(direct_output_energy(xd, wd - (white.U() * white.V()).cast<double>())) / base;
  CAPTURE(err_plain, err_white, rw.relative_output_error);
  REQUIRE(std::abs(rw.relative_output_error - err_white) <= 1e-4);
  // The optimum over rank-8 products: the tail of the spectrum of X·Wᵀ (Eckart–Young).
  Eigen::JacobiSVD<Eigen::MatrixXd> svd(xd * wd.transpose());
  const Eigen::VectorXd s = svd.singularValues();
  const double optimum = std::sqrt(s.tail(s.size() - rank).squaredNorm() / s.squaredNorm());
  REQUIRE(std::abs(err_white - optimum) <= 1e-4);
  // Measured here: 0.300 whitened against 0.646 plain, a factor of 2.16.
  REQUIRE(err_white * 2.0 <= err_plain);
  // The weight error goes the other way: whitening trades it for the output error.
  REQUIRE(rw.relative_error > err_white);
}

TEST_CASE("whitened SVD handles a singular Gram matrix", "[calibration]") {
  // Three tokens in eight features: Ḡ has rank 3.
  const Index out = 6, in = 8;
  const Matrix<double> x = test::random_matrix<double>(3, in, 8);
  const Matrix<double> w = test::random_matrix<double>(out, in, 9);
  GramAccumulator g(in);
  g.add<double>(x);
  SvdInitOptions opt;
  opt.rank = 3;
  // With damping, Cholesky succeeds; three directions carry all of X, so rank 3 reproduces X·Wᵀ.
  lmshrink::LowRankSparseLinear<double> a;
  const auto ra = lmshrink::svd_init<double>(w, a, opt, g);
  REQUIRE(ra.whitening == Whitening::cholesky);
  REQUIRE(ra.relative_output_error < 1e-2);
  REQUIRE(((a.U() * a.V() + a.S()) - w).cwiseAbs().maxCoeff() < 1e-12);
  // Without damping Cholesky fails and the clamped eigen-decomposition takes over.
  opt.damping = 0;
  lmshrink::LowRankSparseLinear<double> b;
  const auto rb = lmshrink::svd_init<double>(w, b, opt, g);
  REQUIRE(rb.whitening == Whitening::eigen_fallback);
  REQUIRE(b.U().allFinite());
  REQUIRE(b.V().allFinite());
  REQUIRE(rb.relative_output_error < 1e-6);
  REQUIRE(((b.U() * b.V() + b.S()) - w).cwiseAbs().maxCoeff() < 1e-9);
}

TEST_CASE("whitened SVD refuses unusable statistics", "[calibration][errors]") {
  const Matrix<float> w = test::random_matrix<float>(5, 4, 10);
  lmshrink::LowRankSparseLinear<float> layer;
  SvdInitOptions opt;
  opt.rank = 2;
  GramAccumulator empty(4);
  REQUIRE_THROWS_WITH(lmshrink::svd_init<float>(w, layer, opt, empty),
                      Contains("svd_init: the calibration statistics hold 0 tokens"));
  GramAccumulator wrong(3);
  wrong.add<float>(Matrix<float>::Ones(2, 3));
  REQUIRE_THROWS_WITH(lmshrink::svd_init<float>(w, layer, opt, wrong),
                      Contains("statistics have 3 features but the weight has 4 inputs"));
  GramAccumulator zeros(4);
  zeros.add<float>(Matrix<float>::Zero(7, 4));
  REQUIRE_THROWS_WITH(lmshrink::svd_init<float>(w, layer, opt, zeros),
                      Contains("calibration inputs are all zero"));
  GramAccumulator good(4);
  good.add<float>(test::random_matrix<float>(20, 4, 11));
  opt.damping = -1;
  REQUIRE_THROWS_WITH(lmshrink::svd_init<float>(w, layer, opt, good),
                      Contains("damping must be a finite value >= 0, got -1"));
  opt.damping = 1e-3;
  opt.rank = 5;  // min(out, in) = 4
  REQUIRE_THROWS_AS(lmshrink::svd_init<float>(w, layer, opt, good), lmshrink::value_error);
  // Huge inputs overflow the Gram matrix to Inf: refused by name.
  GramAccumulator huge(4);
  huge.add<double>(Matrix<double>::Constant(3, 4, 1e200));
  opt.rank = 2;
  REQUIRE_THROWS_WITH(lmshrink::svd_init<float>(w, layer, opt, huge),
                      Contains("the calibration Gram matrix has a non-finite value"));
}
