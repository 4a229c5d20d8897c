#include <Eigen/QR>
#include <Eigen/SVD>
#include <catch2/catch.hpp>
#include <cmath>
#include <lmshrink/models/llama/llama2c.hpp>
#include <lmshrink/calibration.hpp>
#include <lmshrink/svd_init.hpp>

#include "decaying_spectrum.hpp"
#include "test_helpers.hpp"

using lmshrink::Index;
using lmshrink::SvdInitOptions;
using lmshrink::SvdMethod;
using test::Matrix;
using Catch::Matchers::Contains;
using lmshrink::GramAccumulator;
using lmshrink::Whitening;
using test::decaying_spectrum;

namespace {

// ‖X·mᵀ‖_F² computed directly, in double.
double direct_output_energy(const Eigen::MatrixXd& x, const Eigen::MatrixXd& m) {
  return (x * m.transpose()).squaredNorm();
}

}  // namespace

TEST_CASE("rank from a parameter ratio: r = ceil(rho*out*in/(out+in))", "[svd]") {
  REQUIRE(lmshrink::rank_from_ratio(0.25, 64, 64) == 8);     // 0.25*4096/128 = 8 exactly
  REQUIRE(lmshrink::rank_from_ratio(0.1, 172, 64) == 5);     // 4.664 -> 5
  REQUIRE(lmshrink::rank_from_ratio(0.05, 32, 64) == 2);     // 1.0667 -> 2
  REQUIRE(lmshrink::rank_from_ratio(1.0, 172, 64) == 47);    // 46.64 -> 47
  REQUIRE(lmshrink::rank_from_ratio(0.5, 768, 3072) == 308); // 307.2 -> 308
  REQUIRE(lmshrink::rank_from_ratio(1e-9, 10, 10) == 1);     // at least one
  REQUIRE(lmshrink::rank_from_ratio(1.0, 1, 1) == 1);
  REQUIRE_THROWS_WITH(lmshrink::rank_from_ratio(0.0, 4, 4),
                      Contains("ratio must be in (0, 1], got 0"));
  REQUIRE_THROWS_AS(lmshrink::rank_from_ratio(1.5, 4, 4), lmshrink::value_error);
  REQUIRE_THROWS_AS(lmshrink::rank_from_ratio(-0.1, 4, 4), lmshrink::value_error);
  REQUIRE_THROWS_AS(lmshrink::rank_from_ratio(std::nan(""), 4, 4), lmshrink::value_error);
  REQUIRE_THROWS_AS(lmshrink::rank_from_ratio(0.5, 0, 4), lmshrink::value_error);
}

TEST_CASE("rank from an energy target", "[svd]") {
  Eigen::VectorXd s(3);
  s << 3, 2, 1;  // energies 9, 4, 1 of 14
  REQUIRE(lmshrink::rank_from_energy(s, 9.0 / 14.0) == 1);
  REQUIRE(lmshrink::rank_from_energy(s, 0.65) == 2);
  REQUIRE(lmshrink::rank_from_energy(s, 13.0 / 14.0) == 2);
  REQUIRE(lmshrink::rank_from_energy(s, 0.93) == 3);
  REQUIRE(lmshrink::rank_from_energy(s, 1.0) == 3);
  REQUIRE_THROWS_AS(lmshrink::rank_from_energy(s, 0.0), lmshrink::value_error);
  REQUIRE_THROWS_AS(lmshrink::rank_from_energy(s, 1.01), lmshrink::value_error);
}

TEMPLATE_TEST_CASE("exact init: U.V + S = W, S is the SVD tail, U and V carry sqrt(sigma)",
                   "[svd]", float, double) {
  using S = TestType;
  const auto shape = GENERATE(std::make_pair(13, 7), std::make_pair(7, 13), std::make_pair(32, 32),
                              std::make_pair(1, 5));
  const Index out = shape.first, in = shape.second, kmax = std::min(out, in);
  const Index rank = GENERATE_COPY(Index(1), std::max<Index>(1, kmax / 2), kmax);
  const bool in_double = GENERATE(true, false);
  CAPTURE(out, in, rank, in_double);
  const Matrix<S> w = test::random_matrix<S>(out, in, 3);
  lmshrink::LowRankSparseLinear<S> layer;
  SvdInitOptions opt;
  opt.rank = rank;
  opt.exact_in_double = in_double;
  const auto result = lmshrink::svd_init<S>(w, layer, opt);
  REQUIRE(result.rank == rank);
  REQUIRE(layer.rank() == rank);
  REQUIRE(layer.out_features() == out);
  REQUIRE(layer.in_features() == in);

  const double eps = std::numeric_limits<S>::epsilon();
  const Matrix<S> recon = layer.U() * layer.V() + layer.S();
  REQUIRE((recon - w).cwiseAbs().maxCoeff() <= 20 * eps * w.cwiseAbs().maxCoeff());

  // Independent reference: Jacobi SVD in double.
  const Eigen::MatrixXd wd = w.template cast<double>();
  Eigen::JacobiSVD<Eigen::MatrixXd> ref(wd);
  const Eigen::VectorXd sigma = ref.singularValues();
  const double tail = std::sqrt(sigma.tail(kmax - rank).squaredNorm());
  const double s_norm = layer.S().template cast<double>().norm();
  REQUIRE(std::abs(s_norm - tail) <= 1e3 * eps * (1 + sigma[0]));
  REQUIRE(std::abs(result.relative_error - tail / wd.norm()) <= 1e3 * eps);
  REQUIRE(std::abs(result.energy_kept - sigma.head(rank).squaredNorm() / wd.squaredNorm()) <=
          1e3 * eps);
  REQUIRE((result.singular_values - sigma).cwiseAbs().maxCoeff() <= 1e3 * eps * sigma[0]);
  // Uᵀ·U = diag(σ) = V·Vᵀ.
  const Eigen::MatrixXd utu = layer.U().template cast<double>().transpose() *
                              layer.U().template cast<double>();
  const Eigen::MatrixXd vvt =
      layer.V().template cast<double>() * layer.V().template cast<double>().transpose();
  const Eigen::MatrixXd diag = sigma.head(rank).asDiagonal();
  REQUIRE((utu - diag).cwiseAbs().maxCoeff() <= 1e3 * eps * sigma[0]);
  REQUIRE((vvt - diag).cwiseAbs().maxCoeff() <= 1e3 * eps * sigma[0]);
}

TEST_CASE("ratio and energy rules pick the documented rank", "[svd]") {
  const Matrix<double> w = test::random_matrix<double>(40, 24, 9);
  lmshrink::LowRankSparseLinear<double> layer;
  SvdInitOptions by_ratio;
  by_ratio.ratio = 0.3;  // 0.3*960/64 = 4.5 -> 5
  REQUIRE(lmshrink::svd_init<double>(w, layer, by_ratio).rank == 5);
  SvdInitOptions by_energy;
  by_energy.energy = 0.8;
  const auto r = lmshrink::svd_init<double>(w, layer, by_energy);
  REQUIRE(r.energy_kept >= 0.8);
  REQUIRE(r.singular_values.head(r.rank - 1).squaredNorm() / w.squaredNorm() < 0.8);
}

TEST_CASE("init keeps an existing bias and resets masks", "[svd]") {
  lmshrink::LowRankSparseLinear<float> layer(6, 4, 1, true);
  layer.bias().setConstant(0.5f);
  lmshrink::RowMask m = lmshrink::RowMask::Zero(6);
  layer.set_row_mask(m);
  SvdInitOptions opt;
  opt.rank = 2;
  lmshrink::svd_init<float>(test::random_matrix<float>(6, 4, 1), layer, opt);
  REQUIRE(layer.has_bias());
  REQUIRE(layer.bias().isConstant(0.5f));
  REQUIRE(layer.live_rows() == 6);
}

TEST_CASE("randomized SVD is within 1% of the exact truncated error on a decaying spectrum",
          "[svd][randomized]") {
  // 768x3072 with σ_k = 0.995^k: the GPT-2 MLP shape, cut to rank 256.
  const Matrix<float> w = decaying_spectrum(768, 3072, 0.995, 17).cast<float>();
  lmshrink::LowRankSparseLinear<float> exact_layer, rand_layer, again;
  SvdInitOptions exact;
  exact.rank = 256;
  SvdInitOptions randomized = exact;
  randomized.method = SvdMethod::randomized;
  const auto e = lmshrink::svd_init<float>(w, exact_layer, exact);
  const auto r = lmshrink::svd_init<float>(w, rand_layer, randomized);
  CAPTURE(e.relative_error, r.relative_error);
  REQUIRE(r.relative_error >= e.relative_error * (1 - 1e-6));  // cannot beat the optimum
  REQUIRE(r.relative_error <= 1.01 * e.relative_error);
  // Seeded: the same seed gives bit-identical factors.
  lmshrink::svd_init<float>(w, again, randomized);
  REQUIRE(again.U() == rand_layer.U());
  REQUIRE(again.S() == rand_layer.S());
  randomized.seed += 1;
  lmshrink::svd_init<float>(w, again, randomized);
  REQUIRE(again.U() != rand_layer.U());
}

TEST_CASE("randomized SVD is within 1% of exact on every matrix of stories260K", "[svd][real]") {
  auto model = lmshrink::models::llama::read_llama2c(LMSHRINK_DATA_DIR "/stories260K.bin");
  const auto weights = model.linear_weights();
  REQUIRE(weights.size() == 35);
  for (const double ratio : {0.05, 0.1, 0.25, 0.5}) {
    for (const auto& named : weights) {
      CAPTURE(named.name, ratio);
      lmshrink::LowRankSparseLinear<float> a, b;
      SvdInitOptions exact;
      exact.ratio = ratio;
      SvdInitOptions randomized = exact;
      randomized.method = SvdMethod::randomized;
      const auto e = lmshrink::svd_init<float>(*named.matrix, a, exact);
      const auto r = lmshrink::svd_init<float>(*named.matrix, b, randomized);
      CAPTURE(e.relative_error, r.relative_error);
      REQUIRE(e.rank == r.rank);
      REQUIRE(r.relative_error <= 1.01 * e.relative_error);
      const Matrix<float> recon = b.U() * b.V() + b.S();
      REQUIRE((recon - *named.matrix).cwiseAbs().maxCoeff() <=
              1e-5f * named.matrix->cwiseAbs().maxCoeff());
    }
  }
}

TEST_CASE("svd_init rejects bad options and bad weights", "[svd][errors]") {
  lmshrink::LowRankSparseLinear<float> layer;
  Matrix<float> w = test::random_matrix<float>(8, 6, 1);
  SvdInitOptions none;
  REQUIRE_THROWS_WITH(lmshrink::svd_init<float>(w, layer, none),
                      Contains("exactly one of ratio, rank and energy must be set, got 0"));
  SvdInitOptions two;
  two.ratio = 0.5;
  two.rank = 2;
  REQUIRE_THROWS_WITH(lmshrink::svd_init<float>(w, layer, two), Contains("got 2"));
  SvdInitOptions big;
  big.rank = 7;
  REQUIRE_THROWS_WITH(lmshrink::svd_init<float>(w, layer, big),
                      Contains("rank must be in [1, min(out, in)] = [1, 6], got 7"));
  SvdInitOptions neg;
  neg.rank = -1;
  REQUIRE_THROWS_AS(lmshrink::svd_init<float>(w, layer, neg), lmshrink::value_error);
  SvdInitOptions ratio;
  ratio.ratio = 1.2;
  REQUIRE_THROWS_WITH(lmshrink::svd_init<float>(w, layer, ratio),
                      Contains("ratio must be in (0, 1], got 1.2"));
  SvdInitOptions energy;
  energy.energy = 0.9;
  energy.method = SvdMethod::randomized;
  REQUIRE_THROWS_WITH(lmshrink::svd_init<float>(w, layer, energy),
                      Contains("energy target needs the whole spectrum"));
  SvdInitOptions ok;
  ok.rank = 2;
  w(3, 4) = std::numeric_limits<float>::quiet_NaN();
  REQUIRE_THROWS_WITH(lmshrink::svd_init<float>(w, layer, ok),
                      Contains("[lmshrink.numeric] svd_init: W has a non-finite value"));
  w(3, 4) = std::numeric_limits<float>::infinity();
  REQUIRE_THROWS_AS(lmshrink::svd_init<float>(w, layer, ok), lmshrink::numeric_error);
  Matrix<float> empty(0, 3);
  REQUIRE_THROWS_AS(lmshrink::svd_init<float>(empty, layer, ok), lmshrink::shape_error);
  REQUIRE_THROWS_AS(lmshrink::svd_init<float>(w.data(), 8, 6, 5, layer, ok), lmshrink::shape_error);
}

// ---- the whitened (data-aware) path -------------------------------------------------------

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

TEST_CASE("the whitener applies L and its inverse without forming the inverse", "[calibration]") {
  using lmshrink::detail::Whitener;
  const Eigen::MatrixXd eye = Eigen::MatrixXd::Identity(2, 2);
  const Eigen::MatrixXd w = (Eigen::MatrixXd(3, 2) << 1, 2, -3, 0.5, 0, 4).finished();
  // Ḡ = [[4, 2], [2, 3]]: Cholesky L = [[2, 0], [1, √2]] by hand.
  const Eigen::MatrixXd g = (Eigen::MatrixXd(2, 2) << 4, 2, 2, 3).finished();
  const Whitener chol = lmshrink::detail::whitening_factor("test", g, 0.0);
  REQUIRE(chol.kind == Whitening::cholesky);
  const Eigen::MatrixXd l = chol.whiten(eye);
  const Eigen::MatrixXd expected_l = (Eigen::MatrixXd(2, 2) << 2, 0, 1, std::sqrt(2.0)).finished();
  REQUIRE((l - expected_l).cwiseAbs().maxCoeff() < 1e-15);
  // w·L: the first row [1, 2] gives [1·2 + 2·1, 2·√2].
  Eigen::MatrixXd a = chol.whiten(w);
  REQUIRE(std::abs(a(0, 0) - 4.0) < 1e-15);
  REQUIRE(std::abs(a(0, 1) - 2.0 * std::sqrt(2.0)) < 1e-15);
  chol.unwhiten(a);
  REQUIRE((a - w).cwiseAbs().maxCoeff() < 1e-14);
  // λ is added before factoring: L·Lᵀ = Ḡ + λI.
  const Eigen::MatrixXd ld = lmshrink::detail::whitening_factor("test", g, 0.5).whiten(eye);
  REQUIRE((ld * ld.transpose() - g - 0.5 * eye).cwiseAbs().maxCoeff() < 1e-14);

  // A singular Ḡ without damping: the eigen fallback, L = Q·diag(d) with the zero eigenvalue
  // raised to 1e-10·mean diag, so L·Lᵀ = Ḡ + 1e-10·(the null direction's projector).
  const Eigen::MatrixXd singular = (Eigen::MatrixXd(2, 2) << 1, 1, 1, 1).finished();
  const Whitener fallback = lmshrink::detail::whitening_factor("test", singular, 0.0);
  REQUIRE(fallback.kind == Whitening::eigen_fallback);
  const Eigen::MatrixXd lf = fallback.whiten(eye);
  const Eigen::MatrixXd null_projector = (Eigen::MatrixXd(2, 2) << 0.5, -0.5, -0.5, 0.5).finished();
  REQUIRE((lf * lf.transpose() - singular - 1e-10 * null_projector).cwiseAbs().maxCoeff() < 1e-14);
  Eigen::MatrixXd af = fallback.whiten(w);
  fallback.unwhiten(af);
  REQUIRE((af - w).cwiseAbs().maxCoeff() < 1e-9);  // the 1e-5 direction is divided back

  // Kind none with a scale: diag(d), OATS's input-RMS scaling.
  Whitener diagonal;
  diagonal.scale = (Eigen::VectorXd(2) << 2, 0.25).finished();
  Eigen::MatrixXd ad = diagonal.whiten(w);
  REQUIRE(ad(1, 0) == -6.0);
  REQUIRE(ad(1, 1) == 0.125);
  diagonal.unwhiten(ad);
  REQUIRE((ad - w).cwiseAbs().maxCoeff() == 0.0);
}

TEST_CASE("the whitened path reports the output error under the undamped Gram matrix",
          "[calibration]") {
  // ‖E·L‖² − λ‖E‖² replaces the (in, in) product: it must equal tr(E·Ḡ·Eᵀ) itself.
  const Index out = 24, in = 40, tokens = 400;
  const Eigen::MatrixXd x = test::random_matrix<double>(tokens, in, 31) *
                            (Eigen::MatrixXd::Identity(in, in) + 0.4 * test::random_matrix<double>(in, in, 32));
  const Matrix<double> w = test::random_matrix<double>(out, in, 33);
  GramAccumulator g(in);
  g.add<double>(x);
  const Eigen::MatrixXd gram = g.mean_gram();
  for (const SvdMethod method : {SvdMethod::exact, SvdMethod::randomized}) {
    for (Index rank : {Index(1), Index(7), Index(24)}) {
      CAPTURE(int(method), rank);
      SvdInitOptions opt;
      opt.rank = rank;
      opt.method = method;
      opt.damping = 0.05;  // large, so that a wrong λ term would show
      lmshrink::LowRankSparseLinear<double> layer;
      const auto r = lmshrink::svd_init<double>(w, layer, opt, g);
      REQUIRE(r.whitening == Whitening::cholesky);
      const Eigen::MatrixXd e = w - layer.U() * layer.V();
      const double direct = std::sqrt((e * gram * e.transpose()).trace() / (w * gram * w.transpose()).trace());
      REQUIRE(std::abs(r.relative_output_error - direct) <= 1e-12 + 1e-10 * direct);
      // Σσ² over ‖W·L‖²: the randomized path estimates only rank + oversampling of them.
      REQUIRE(r.energy_kept > 0);
      REQUIRE(r.energy_kept <= 1 + 1e-12);
    }
  }
}

TEST_CASE("the whitened randomized SVD is within 1% of the exact output error", "[calibration][randomized]") {
  // 192x640 with σ_k = 0.99^k under correlated inputs whose scales span 30x, cut to rank 48.
  const Index out = 192, in = 640, rank = 48;
  const Matrix<float> w = decaying_spectrum(out, in, 0.99, 41).cast<float>();
  Eigen::VectorXd scale(in);
  for (Index j = 0; j < in; ++j) scale[j] = std::pow(30.0, -double(j) / double(in - 1));
  const Eigen::MatrixXd mix = Eigen::MatrixXd::Identity(in, in) + 0.05 * test::random_matrix<double>(in, in, 42);
  const Matrix<float> x = (test::random_matrix<double>(2 * in, in, 43) * scale.asDiagonal() * mix).cast<float>();
  GramAccumulator g(in);
  g.add<float>(x);
  SvdInitOptions exact;
  exact.rank = rank;
  SvdInitOptions randomized = exact;
  randomized.method = SvdMethod::randomized;
  lmshrink::LowRankSparseLinear<float> a, b, again;
  const auto e = lmshrink::svd_init<float>(w, a, exact, g);
  const auto r = lmshrink::svd_init<float>(w, b, randomized, g);
  CAPTURE(e.relative_output_error, r.relative_output_error);
  REQUIRE(r.relative_output_error >= e.relative_output_error * (1 - 1e-6));  // the optimum is exact's
  REQUIRE(r.relative_output_error <= 1.01 * e.relative_output_error);
  lmshrink::svd_init<float>(w, again, randomized, g);  // seeded: the same bits
  REQUIRE(again.U() == b.U());
  REQUIRE(again.V() == b.V());
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
