// Data-aware sparse + low-rank initialisation (sparse_plus_low_rank.hpp): hand-checked values,
// the value refit against an independent least-squares solve, monotone alternation, bad input.
// Sequential reconstruction (reconstruction.hpp): hand-checked targets, the error split, bad input.
// Per-matrix allocation (storage_allocation.hpp): the greedy allocation by hand, choices that
// find a low-rank and a sparse matrix.
#include <catch2/catch.hpp>
#include <cmath>
#include <lmshrink/reconstruction.hpp>
#include <lmshrink/sparse_plus_low_rank.hpp>
#include <lmshrink/storage_allocation.hpp>
#include <random>

#include "test_helpers.hpp"

using lmshrink::GramAccumulator;
using lmshrink::Index;
using lmshrink::LowRankFit;
using lmshrink::SparsePlusLowRankOptions;
using test::Matrix;
using Catch::Matchers::Contains;

namespace {

// Calibration statistics whose mean Gram matrix is exactly diag(a², b²): two tokens per input.
GramAccumulator diagonal_stats(double a, double b) {
  // XᵀX = diag(4a², 4b²) over 4 tokens.
  const double c = std::sqrt(2.0);
  Matrix<double> x(4, 2);
  x << c * a, 0, -c * a, 0, 0, c * b, 0, -c * b;
  GramAccumulator g(2);
  g.add<double>(x);
  return g;
}

}  // namespace

TEST_CASE("sparse_plus_low_rank_init: hand-checked 2x2 cases", "[sparse_plus_low_rank]") {
  // W = diag(3, 1), rank 1, one sparse entry.
  Matrix<double> w(2, 2);
  w << 3, 0, 0, 1;
  SparsePlusLowRankOptions opt;
  opt.rank = 1;
  opt.sparse_entries = 1;
  opt.iterations = 2;
  opt.damping = 0;
  lmshrink::LowRankSparseLinear<double> layer;

  SECTION("identity inputs: L keeps the 3, S the 1") {
    for (LowRankFit fit : {LowRankFit::scaled, LowRankFit::whitened}) {
      opt.low_rank = fit;
      const auto r = lmshrink::sparse_plus_low_rank_init<double>(w, layer, opt, diagonal_stats(1, 1));
      // Low rank alone leaves the 1: error 1/√10.
      REQUIRE(r.low_rank_only_error == Approx(1 / std::sqrt(10.0)));
      REQUIRE(r.relative_output_error.size() == 2);
      REQUIRE(r.relative_output_error[0] == Approx(0).margin(1e-12));
      REQUIRE((layer.U() * layer.V())(0, 0) == Approx(3));
      REQUIRE(layer.S()(1, 1) == Approx(1));
      REQUIRE(layer.live_sparse_entries() == 1);
      REQUIRE(layer.element_mask()(1, 1) == 1);
      REQUIRE((layer.to_dense() - w).cwiseAbs().maxCoeff() <= 1e-12);
    }
  }
  SECTION("input RMS (1, 4): the second input's column outweighs the first") {
    // Scaled W·D = diag(3, 4): the rank-1 fit keeps the 4, i.e. W's (1, 1) entry, and S takes
    // the 3. Low rank alone: the 3's output energy 9 of 9 + 16, error 0.6 (a plain SVD would
    // keep the 3 and leave 16 of 25, error 0.8).
    for (LowRankFit fit : {LowRankFit::scaled, LowRankFit::whitened}) {
      opt.low_rank = fit;
      const auto r = lmshrink::sparse_plus_low_rank_init<double>(w, layer, opt, diagonal_stats(1, 4));
      REQUIRE(r.low_rank_only_error == Approx(0.6));
      REQUIRE(r.relative_output_error[0] == Approx(0).margin(1e-12));
      REQUIRE((layer.U() * layer.V())(1, 1) == Approx(1));
      REQUIRE(layer.S()(0, 0) == Approx(3));
      REQUIRE(layer.element_mask()(0, 0) == 1);
    }
  }
  SECTION("rank 0: S alone keeps the entry of largest scaled magnitude") {
    opt.rank = 0;
    const auto r = lmshrink::sparse_plus_low_rank_init<double>(w, layer, opt, diagonal_stats(1, 4));
    // |3|·1 < |1|·4: the 1 is kept; the error is the 3's share, 9 of 25.
    REQUIRE(layer.rank() == 0);
    REQUIRE(layer.element_mask()(1, 1) == 1);
    REQUIRE(layer.S()(1, 1) == Approx(1));
    REQUIRE(r.relative_output_error[0] == Approx(0.6));
    REQUIRE(r.low_rank_only_error == Approx(1.0));  // nothing at all
  }
}

TEST_CASE("sparse_plus_low_rank_init: refit values solve the masked least squares",
          "[sparse_plus_low_rank]") {
  // Correlated inputs: the best values on a mask are not the residual's own entries.
  const Matrix<double> x = test::random_matrix<double>(200, 6, 11) +
                           test::random_matrix<double>(200, 1, 12).replicate(1, 6);
  GramAccumulator stats(6);
  stats.add<double>(x);
  const Matrix<double> w = test::random_matrix<double>(5, 6, 13);
  SparsePlusLowRankOptions opt;
  opt.rank = 0;  // S alone, so the residual is W
  opt.sparse_entries = 12;
  opt.iterations = 1;
  opt.damping = 0;
  lmshrink::LowRankSparseLinear<double> refit, copied;
  const auto a = lmshrink::sparse_plus_low_rank_init<double>(w, refit, opt, stats);
  opt.refit_values = false;
  const auto b = lmshrink::sparse_plus_low_rank_init<double>(w, copied, opt, stats);
  REQUIRE(refit.element_mask() == copied.element_mask());
  REQUIRE(refit.live_sparse_entries() == 12);
  REQUIRE(a.relative_output_error[0] < b.relative_output_error[0]);
  // Independent check, row by row: min ‖X_J·s_J − X·w_iᵀ‖ by QR on the data itself.
  for (Index i = 0; i < 5; ++i) {
    std::vector<Index> live;
    for (Index j = 0; j < 6; ++j)
      if (refit.element_mask()(i, j)) live.push_back(j);
    if (live.empty()) continue;
    Eigen::MatrixXd xj(x.rows(), Index(live.size()));
    for (Index p = 0; p < Index(live.size()); ++p) xj.col(p) = x.col(live[std::size_t(p)]);
    const Eigen::VectorXd target = x * w.row(i).transpose();
    const Eigen::VectorXd s = xj.colPivHouseholderQr().solve(target);
    for (Index p = 0; p < Index(live.size()); ++p)
      REQUIRE(refit.S()(i, live[std::size_t(p)]) == Approx(s[p]).epsilon(1e-9));
  }
}

TEST_CASE("refit_sparse_values: a dead input with no damping still gets the least-squares values",
          "[sparse_plus_low_rank]") {
  // Column 2 of X is zero and λ = 0: a row whose mask holds it has a singular block of Ḡ, so
  // Cholesky fails and the LDLᵀ fallback must still reach the least-squares outputs (copying
  // the residual's own values would not: the inputs are correlated).
  Matrix<double> x = test::random_matrix<double>(40, 5, 61) + test::random_matrix<double>(40, 1, 63).replicate(1, 5);
  x.col(2).setZero();
  const Eigen::MatrixXd g = x.transpose() * x / double(x.rows());
  const Eigen::MatrixXd r = test::random_matrix<double>(3, 5, 62);
  lmshrink::ElementMask mask = lmshrink::ElementMask::Zero(3, 5);
  mask(0, 1) = mask(0, 2) = mask(0, 3) = 1;  // holds the dead input
  mask(1, 0) = mask(1, 4) = 1;               // does not
  mask(2, 2) = 1;                            // the dead input alone: its block is 0
  const Eigen::MatrixXd s = lmshrink::detail::refit_sparse_values(r, mask, g, 0.0);
  REQUIRE(s.allFinite());
  for (Index i = 0; i < 3; ++i) {
    std::vector<Index> live;
    for (Index j = 0; j < 5; ++j)
      if (mask(i, j)) live.push_back(j);
    Eigen::MatrixXd xj(x.rows(), Index(live.size()));
    for (Index p = 0; p < Index(live.size()); ++p) xj.col(p) = x.col(live[std::size_t(p)]);
    const Eigen::VectorXd target = x * r.row(i).transpose();
    const Eigen::VectorXd best = xj * xj.completeOrthogonalDecomposition().solve(target);
    const Eigen::VectorXd got = x * s.row(i).transpose();
    CAPTURE(i);
    REQUIRE((got - best).norm() <= 1e-9 * target.norm());
    for (Index j = 0; j < 5; ++j)
      if (!mask(i, j)) REQUIRE(s(i, j) == 0.0);
  }
}

TEST_CASE("sparse_plus_low_rank_init: rank 0 fits once, as many iterations would",
          "[sparse_plus_low_rank]") {
  // Correlated inputs and a refit: the one pass is the whole fit, whatever iterations says.
  const Index out = 7, in = 9;
  const Matrix<double> x = test::random_matrix<double>(60, in, 21) +
                           test::random_matrix<double>(60, 1, 22).replicate(1, in);
  GramAccumulator stats(in);
  stats.add<double>(x);
  const Matrix<double> w = test::random_matrix<double>(out, in, 23);
  SparsePlusLowRankOptions opt;
  opt.rank = 0;
  opt.sparse_entries = 30;
  opt.iterations = 1;
  lmshrink::LowRankSparseLinear<double> once, many;
  const auto a = lmshrink::sparse_plus_low_rank_init<double>(w, once, opt, stats);
  opt.iterations = 6;
  const auto b = lmshrink::sparse_plus_low_rank_init<double>(w, many, opt, stats);
  REQUIRE(a.relative_output_error.size() == 1);
  REQUIRE(b.relative_output_error.size() == 1);
  REQUIRE(b.best_iteration == 0);
  REQUIRE(b.relative_output_error[0] == a.relative_output_error[0]);
  REQUIRE(many.element_mask() == once.element_mask());
  REQUIRE(many.S() == once.S());
  REQUIRE(many.rank() == 0);
  // A rank above 0 still alternates the number of times asked.
  opt.rank = 1;
  opt.sparse_entries = 20;
  const auto c = lmshrink::sparse_plus_low_rank_init<double>(w, many, opt, stats);
  REQUIRE(c.relative_output_error.size() == 6);
}

TEST_CASE("sparse_plus_low_rank_init: the alternation never increases a diagonal-Gram error",
          "[sparse_plus_low_rank]") {
  // Independent inputs with unequal RMS: Ḡ is diagonal up to sampling; make it exactly so.
  const Index in = 12, out = 9;
  Eigen::VectorXd rms(in);
  for (Index j = 0; j < in; ++j) rms[j] = 0.5 + 0.25 * double(j % 5);
  Matrix<double> x = Matrix<double>::Zero(2 * in, in);
  for (Index j = 0; j < in; ++j) x(2 * j, j) = x(2 * j + 1, j) = rms[j] * std::sqrt(double(in));
  GramAccumulator stats(in);
  stats.add<double>(x);
  const Matrix<double> w = test::random_matrix<double>(out, in, 21) +
                           0.05 * test::random_matrix<double>(out, 2, 22) *
                               test::random_matrix<double>(2, in, 23);
  SparsePlusLowRankOptions opt;
  opt.rank = 2;
  opt.sparse_entries = 20;
  opt.iterations = 8;
  opt.damping = 0;
  opt.low_rank = LowRankFit::scaled;
  opt.refit_values = false;
  lmshrink::LowRankSparseLinear<float> layer;
  const auto r = lmshrink::sparse_plus_low_rank_init<float>(w.cast<float>(), layer, opt, stats);
  REQUIRE(r.relative_output_error.size() == 8);
  for (std::size_t t = 1; t < r.relative_output_error.size(); ++t)
    REQUIRE(r.relative_output_error[t] <= r.relative_output_error[t - 1] * (1 + 1e-12));
  REQUIRE(r.relative_output_error.back() < r.low_rank_only_error);
  REQUIRE(layer.live_sparse_entries() == 20);
  REQUIRE(layer.rank() == 2);
  // The reported error is the layer's own: ‖(W − U·V − S)·D‖ / ‖W·D‖.
  const Eigen::MatrixXd e = w - layer.to_dense().cast<double>();
  const double direct = (e * rms.asDiagonal()).norm() / (w * rms.asDiagonal()).norm();
  REQUIRE(direct == Approx(r.relative_output_error[std::size_t(r.best_iteration)]).epsilon(1e-5));
}

TEST_CASE("sparse_plus_low_rank_init with the randomized SVD is within 1% of exact",
          "[sparse_plus_low_rank][randomized]") {
  // 96x160 of low rank 12 plus noise, correlated inputs: rank 12 and 5 % of the entries in S.
  const Index out = 96, in = 160;
  const Matrix<double> x = test::random_matrix<double>(3 * in, in, 51) *
                           (Eigen::MatrixXd::Identity(in, in) + 0.1 * test::random_matrix<double>(in, in, 52));
  GramAccumulator stats(in);
  stats.add<double>(x);
  const Matrix<double> w = test::random_matrix<double>(out, 12, 53) * test::random_matrix<double>(12, in, 54) +
                           0.3 * test::random_matrix<double>(out, in, 55);
  SparsePlusLowRankOptions opt;
  opt.rank = 12;
  opt.sparse_entries = out * in / 20;
  opt.iterations = 3;
  for (const LowRankFit fit : {LowRankFit::whitened, LowRankFit::scaled}) {
    CAPTURE(int(fit));
    opt.low_rank = fit;
    opt.svd_method = lmshrink::SvdMethod::exact;
    lmshrink::LowRankSparseLinear<float> a, b;
    const auto e = lmshrink::sparse_plus_low_rank_init<float>(w.cast<float>(), a, opt, stats);
    opt.svd_method = lmshrink::SvdMethod::randomized;
    const auto r = lmshrink::sparse_plus_low_rank_init<float>(w.cast<float>(), b, opt, stats);
    const double exact_error = e.relative_output_error[std::size_t(e.best_iteration)];
    const double randomized_error = r.relative_output_error[std::size_t(r.best_iteration)];
    CAPTURE(exact_error, randomized_error);
    REQUIRE(randomized_error <= 1.01 * exact_error);
    REQUIRE(randomized_error >= 0.99 * exact_error);
    REQUIRE(b.live_sparse_entries() == opt.sparse_entries);
  }
}

TEST_CASE("sparse_plus_low_rank_init keeps a bias and refuses bad input", "[sparse_plus_low_rank][errors]") {
  const Matrix<float> w = test::random_matrix<float>(4, 3, 31);
  GramAccumulator stats(3);
  stats.add<float>(test::random_matrix<float>(10, 3, 32));
  lmshrink::LowRankSparseLinear<float> layer(4, 3, 1, true);
  layer.bias() << 1, 2, 3, 4;
  SparsePlusLowRankOptions opt;
  opt.rank = 1;
  opt.sparse_entries = 3;
  lmshrink::sparse_plus_low_rank_init<float>(w, layer, opt, stats);
  REQUIRE(layer.bias()[3] == 4.0f);

  opt.rank = 4;
  REQUIRE_THROWS_WITH(lmshrink::sparse_plus_low_rank_init<float>(w, layer, opt, stats),
                      Contains("rank must be in [0, min(out, in)] = [0, 3], got 4"));
  opt.rank = 1;
  opt.sparse_entries = 13;
  REQUIRE_THROWS_WITH(lmshrink::sparse_plus_low_rank_init<float>(w, layer, opt, stats),
                      Contains("sparse_entries must be in [0, out*in] = [0, 12], got 13"));
  opt.sparse_entries = 3;
  opt.iterations = 0;
  REQUIRE_THROWS_AS(lmshrink::sparse_plus_low_rank_init<float>(w, layer, opt, stats),
                    lmshrink::value_error);
  opt.iterations = 1;
  GramAccumulator wrong(5);
  wrong.add<float>(test::random_matrix<float>(2, 5, 33));
  REQUIRE_THROWS_WITH(lmshrink::sparse_plus_low_rank_init<float>(w, layer, opt, wrong),
                      Contains("the calibration statistics have 5 features but the weight has 3 inputs"));
  GramAccumulator zeros(3);
  zeros.add<float>(Matrix<float>::Zero(2, 3));
  REQUIRE_THROWS_WITH(lmshrink::sparse_plus_low_rank_init<float>(w, layer, opt, zeros),
                      Contains("calibration inputs are all zero"));
  Matrix<float> bad = w;
  bad(0, 0) = std::nanf("");
  REQUIRE_THROWS_AS(lmshrink::sparse_plus_low_rank_init<float>(bad, layer, opt, stats),
                    lmshrink::numeric_error);
}

// Sequential reconstruction (reconstruction.hpp), in this executable to share its compile.
TEST_CASE("reconstruction_target: hand-checked least-squares targets", "[reconstruction]") {
  Matrix<double> w(2, 2);
  w << 1, 2, 3, 4;
  Matrix<double> xt(3, 2);
  xt << 1, 0, 0, 1, 1, 1;
  SECTION("student inputs X_t·A: W* = W·A⁻ᵀ reproduces the teacher exactly") {
    Matrix<double> a(2, 2);
    a << 1, 1, 0, 1;  // A⁻ᵀ = [1 0; -1 1]
    lmshrink::InputPairAccumulator pairs(2);
    pairs.add<double>(xt * a, xt);
    REQUIRE(pairs.tokens() == 3);
    const auto t = lmshrink::reconstruction_target<double>(w, pairs, 0.0);
    Matrix<double> want(2, 2);
    want << -1, 2, -1, 4;
    REQUIRE((t - want).cwiseAbs().maxCoeff() < 1e-12);
    REQUIRE(((xt * a) * t.transpose() - xt * w.transpose()).cwiseAbs().maxCoeff() < 1e-12);
  }
  SECTION("student inputs twice the teacher's: W* = W / 2") {
    lmshrink::InputPairAccumulator pairs(2);
    pairs.add<double>(2 * xt, xt);
    const auto t = lmshrink::reconstruction_target<double>(w, pairs, 0.0);
    REQUIRE((t - w / 2).cwiseAbs().maxCoeff() < 1e-12);
  }
  SECTION("damping pulls W* toward W: column j is scaled by (c_j + μ) / (g_j + μ)") {
    // Teacher inputs ±√2 e₁, ±√6 e₂ over 4 tokens (mean Gram diag(1, 3)); the student's are twice
    // those: mean G_ss = diag(4, 12), cross diag(2, 6), μ = 0.5 · mean(4, 12) = 4:
    // factors (2 + 4) / (4 + 4) = 0.75 and (6 + 4) / (12 + 4) = 0.625.
    Matrix<double> x(4, 2);
    x << std::sqrt(2.0), 0, -std::sqrt(2.0), 0, 0, std::sqrt(6.0), 0, -std::sqrt(6.0);
    lmshrink::InputPairAccumulator pairs(2);
    pairs.add<double>(2 * x.topRows(2), x.topRows(2));
    lmshrink::InputPairAccumulator rest(2);
    rest.add<double>(2 * x.bottomRows(2), x.bottomRows(2));
    pairs.merge(rest);
    REQUIRE(pairs.tokens() == 4);
    const auto t = lmshrink::reconstruction_target<double>(w, pairs, 0.5);
    Matrix<double> want(2, 2);
    want << 0.75, 1.25, 2.25, 2.5;
    REQUIRE((t - want).cwiseAbs().maxCoeff() < 1e-12);
    // Identical inputs give W back at any damping.
    lmshrink::InputPairAccumulator same(2);
    same.add<double>(x, x);
    REQUIRE((lmshrink::reconstruction_target<double>(w, same, 0.5) - w).cwiseAbs().maxCoeff() < 1e-12);
  }
}

TEST_CASE("reconstruction: W* splits the error, and fitting it beats fitting W", "[reconstruction]") {
  std::mt19937 rng(5);
  std::normal_distribution<double> n01;
  const Index out = 6, in = 8, tokens = 300;
  Matrix<double> w(out, in), xt(tokens, in), drift(in, in), other(out, in);
  for (Index i = 0; i < w.size(); ++i) w.data()[i] = n01(rng);
  for (Index i = 0; i < other.size(); ++i) other.data()[i] = n01(rng);
  for (Index i = 0; i < xt.size(); ++i) xt.data()[i] = n01(rng) * (1 + (i % in));
  for (Index i = 0; i < drift.size(); ++i) drift.data()[i] = 0.4 * n01(rng);
  Matrix<double> xs = xt * (Matrix<double>::Identity(in, in) + drift);
  for (Index i = 0; i < xs.size(); ++i) xs.data()[i] += 0.3 * n01(rng);  // and noise
  lmshrink::InputPairAccumulator pairs(in);
  pairs.add<double>(xs, xt);
  const Matrix<double> target = lmshrink::reconstruction_target<double>(w, pairs, 0.0);
  const Matrix<double> teacher_out = xt * w.transpose();
  const auto err = [&](const Matrix<double>& m) { return (xs * m.transpose() - teacher_out).squaredNorm(); };
  // Pythagoras: for any M, ‖X_s·Mᵀ − X_t·Wᵀ‖² = ‖X_s·(M − W*)ᵀ‖² + ‖X_s·W*ᵀ − X_t·Wᵀ‖².
  const double split = (xs * (other - target).transpose()).squaredNorm() + err(target);
  REQUIRE(err(other) == Approx(split).epsilon(1e-10));
  REQUIRE(err(target) < err(w));
  // A rank-2 + 6-entry fit of W* under the student's inputs, against the same fit of W under the
  // teacher's: the first is closer to the teacher's outputs on the inputs the student sees.
  SparsePlusLowRankOptions opt;
  opt.rank = 2;
  opt.sparse_entries = 6;
  opt.iterations = 3;
  GramAccumulator teacher_stats(in);
  teacher_stats.add<double>(xt);
  lmshrink::LowRankSparseLinear<double> naive, fitted;
  lmshrink::sparse_plus_low_rank_init<double>(w, naive, opt, teacher_stats);
  lmshrink::sparse_plus_low_rank_init<double>(target, fitted, opt, pairs.student());
  REQUIRE(err(fitted.to_dense()) < 0.9 * err(naive.to_dense()));
}

TEST_CASE("reconstruction refuses bad input", "[reconstruction][errors]") {
  Matrix<double> x(3, 2), w(2, 2);
  x << 1, 0, 0, 1, 1, 1;
  w << 1, 2, 3, 4;
  lmshrink::InputPairAccumulator unsized;
  REQUIRE_THROWS_AS(unsized.add<double>(x, x), lmshrink::state_error);
  lmshrink::InputPairAccumulator pairs(2);
  REQUIRE_THROWS_WITH(lmshrink::reconstruction_target<double>(w, pairs),
                      Contains("0 tokens; at least one was expected"));
  REQUIRE_THROWS_WITH(pairs.add<double>(x, x.topRows(2)), Contains("x_teacher is 2x2 but 3x2 was expected"));
  REQUIRE_THROWS_WITH(pairs.add<double>(Matrix<double>(3, 3), Matrix<double>(3, 3)),
                      Contains("x has 3 columns but in_features is 2"));
  Matrix<double> bad = x;
  bad(1, 1) = std::nan("");
  REQUIRE_THROWS_AS(pairs.add<double>(x, bad), lmshrink::numeric_error);
  REQUIRE_THROWS_AS(pairs.add<double>(bad, x), lmshrink::numeric_error);
  REQUIRE(pairs.tokens() == 0);  // nothing half-added
  pairs.add<double>(x, x);
  REQUIRE_THROWS_WITH(lmshrink::reconstruction_target<double>(Matrix<double>(2, 3), pairs),
                      Contains("the input pairs have 2 features but W has 3 inputs"));
  REQUIRE_THROWS_WITH(lmshrink::reconstruction_target<double>(w, pairs, -1.0),
                      Contains("damping must be a finite value >= 0, got -1"));
  lmshrink::InputPairAccumulator wider(3);
  REQUIRE_THROWS_AS(pairs.merge(wider), lmshrink::shape_error);
}

// Per-matrix allocation (storage_allocation.hpp).
TEST_CASE("allocate_storage: the greedy allocation, hand-checked", "[storage_allocation]") {
  using lmshrink::StorageChoice;
  const std::vector<std::vector<StorageChoice>> table = {
      {{0, 10, 10, 0.9, 0}, {0, 20, 20, 0.5, 0}, {0, 30, 30, 0.4, 0}},
      {{0, 10, 10, 0.8, 0}, {0, 20, 20, 0.7, 0}}};
  // From 20 used: m0 → 20 gains (0.81 − 0.25) / 10 = 0.056 per parameter, the best; then m1 → 20
  // (0.015) beats m0 → 30 (0.009).
  REQUIRE(lmshrink::allocate_storage(table, 40) == std::vector<std::size_t>{1, 1});
  REQUIRE(lmshrink::allocate_storage(table, 30) == std::vector<std::size_t>{1, 0});
  REQUIRE(lmshrink::allocate_storage(table, 20) == std::vector<std::size_t>{0, 0});
  REQUIRE(lmshrink::allocate_storage(table, 100) == std::vector<std::size_t>{2, 1});
  // Weights: matrix 1 counted 10 times over takes the first upgrade ((0.64 − 0.49)·10 / 10 = 0.15).
  REQUIRE(lmshrink::allocate_storage(table, 30, {1.0, 10.0}) == std::vector<std::size_t>{0, 1});
  REQUIRE_THROWS_WITH(lmshrink::allocate_storage(table, 19),
                      Contains("the cheapest choices need 20 parameters but the budget is 19"));
  REQUIRE_THROWS_WITH(lmshrink::allocate_storage(table, 40, {1.0}), Contains("weights has 1 entries but there are 2 matrices"));
  REQUIRE_THROWS_AS(lmshrink::allocate_storage({{}}, 40), lmshrink::value_error);
}

TEST_CASE("storage_choices: a low-rank matrix picks U·V, a sparse one picks S", "[storage_allocation]") {
  // Diagonal statistics (every input equally used): the output error is the weight error.
  Matrix<double> x(8, 4);
  x.setZero();
  for (Index j = 0; j < 4; ++j) {
    x(2 * j, j) = 1;
    x(2 * j + 1, j) = -1;
  }
  GramAccumulator stats(4);
  stats.add<double>(x);
  lmshrink::StorageChoiceOptions opt;
  opt.budgets = {0.125, 0.5};  // 2 and 8 of 16 values
  opt.fit.damping = 0;
  opt.fit.iterations = 2;
  // Rank one: u·vᵀ with 8 values fits exactly at budget 0.5 (rank 1 costs 4 + 4).
  Matrix<double> low(4, 4);
  low = Eigen::Vector4d(1, 2, 3, 4) * Eigen::RowVector4d(1, -1, 2, 0.5);
  const auto a = lmshrink::storage_choices<double>(low, stats, opt);
  REQUIRE(a.size() == 2);
  REQUIRE(a[1].parameters == 8);
  REQUIRE(a[1].rank == 1);
  REQUIRE(a[1].sparse_entries == 0);
  REQUIRE(a[1].lowrank_share == 1.0);
  REQUIRE(a[1].relative_output_error < 1e-9);
  // Two entries: S alone at budget 0.125 reproduces it; no rank fits in 2 values.
  Matrix<double> sparse = Matrix<double>::Zero(4, 4);
  sparse(0, 3) = 5;
  sparse(2, 1) = -2;
  const auto b = lmshrink::storage_choices<double>(sparse, stats, opt);
  REQUIRE(b[0].parameters == 2);
  REQUIRE(b[0].rank == 0);
  REQUIRE(b[0].sparse_entries == 2);
  REQUIRE(b[0].relative_output_error < 1e-9);
  // Bad options.
  opt.budgets = {1.5};
  REQUIRE_THROWS_WITH(lmshrink::storage_choices<double>(low, stats, opt), Contains("budgets must be in (0, 1], got 1.5"));
  opt.budgets = {0.5};
  opt.lowrank_shares = {};
  REQUIRE_THROWS_AS(lmshrink::storage_choices<double>(low, stats, opt), lmshrink::value_error);
}
