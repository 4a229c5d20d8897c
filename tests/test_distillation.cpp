// Distillation losses: values against naive double formulas, gradients against finite
// differences in double, masks, chunking, large logits, small temperatures, identical teacher
// and student, fully masked batches and bad input.
#include <catch2/catch.hpp>
#include <cmath>
#include <lmshrink/distillation.hpp>
#include <vector>

#include "test_helpers.hpp"

using lmshrink::Index;
using lmshrink::LossOptions;
using test::Matrix;
using MatD = Matrix<double>;

namespace {

// ---- naive references (double, explicit softmax) ----

// log softmax(z/T), computed directly: log p_j = z_j/T − max − log Σ exp(z/T − max).
std::vector<double> log_softmax(const double* z, Index n, double t) {
  double m = -INFINITY;
  for (Index j = 0; j < n; ++j) m = std::max(m, z[j] / t);
  double s = 0;
  for (Index j = 0; j < n; ++j) s += std::exp(z[j] / t - m);
  std::vector<double> lp(static_cast<std::size_t>(n), 0.0);
  for (Index j = 0; j < n; ++j) lp[std::size_t(j)] = z[j] / t - m - std::log(s);
  return lp;
}

double naive_kl(const MatD& s, const MatD& t, double T) {
  double total = 0;
  for (Index i = 0; i < s.rows(); ++i) {
    const auto lp = log_softmax(t.row(i).data(), t.cols(), T);
    const auto lq = log_softmax(s.row(i).data(), s.cols(), T);
    for (std::size_t j = 0; j < lp.size(); ++j) total += std::exp(lp[j]) * (lp[j] - lq[j]);
  }
  return total * T * T / double(s.rows());
}

double naive_reverse_kl(const MatD& s, const MatD& t, double T) { return naive_kl(t, s, T); }

double naive_jsd(const MatD& s, const MatD& t, double beta, double T) {
  double total = 0;
  for (Index i = 0; i < s.rows(); ++i) {
    const auto lp = log_softmax(s.row(i).data(), s.cols(), T);
    const auto lq = log_softmax(t.row(i).data(), t.cols(), T);
    for (std::size_t j = 0; j < lp.size(); ++j) {
      const double p = std::exp(lp[j]), q = std::exp(lq[j]);
      const double m = beta * q + (1 - beta) * p;
      if (q > 0) total += beta * q * std::log(q / m);
      if (p > 0) total += (1 - beta) * p * std::log(p / m);
    }
  }
  return total * T * T / double(s.rows());
}

double naive_ce(const MatD& z, const Eigen::VectorXi& y) {
  double total = 0;
  for (Index i = 0; i < z.rows(); ++i) total -= log_softmax(z.row(i).data(), z.cols(), 1)[std::size_t(y[i])];
  return total / double(z.rows());
}

double naive_mse(const MatD& s, const MatD& t, double f = 1) {
  return (s - f * t).squaredNorm() / double(s.size());
}

double naive_cos(const MatD& s, const MatD& t) {
  double total = 0;
  for (Index i = 0; i < s.rows(); ++i)
    total += 1 - s.row(i).dot(t.row(i)) / (s.row(i).norm() * t.row(i).norm());
  return total / double(s.rows());
}

Eigen::VectorXi random_targets(Index n, int vocab, std::uint64_t seed) {
  lmshrink::SplitMix64 rng(seed);
  Eigen::VectorXi y(n);
  for (Index i = 0; i < n; ++i) y[i] = int(rng.uniform() * vocab) % vocab;
  return y;
}

// Checks grad = ∂loss/∂s by central differences on every entry of a small s.
template <class Loss>
void check_gradient(MatD s, Loss loss) {
  MatD grad(s.rows(), s.cols());
  loss(s, grad);
  for (Index i = 0; i < s.rows(); ++i)
    for (Index j = 0; j < s.cols(); ++j) {
      MatD scratch(s.rows(), s.cols());
      const double fd = test::central_difference(&s(i, j), 1e-6, [&] { return loss(s, scratch); });
      CAPTURE(i, j, grad(i, j), fd);
      REQUIRE(std::abs(grad(i, j) - fd) <= 1e-7 * (1 + std::abs(fd)));
    }
}

}  // namespace

TEST_CASE("each loss equals its naive double formula", "[distillation]") {
  const Index n = 6, v = 37;
  const MatD s = test::random_matrix<double>(n, v, 1, 3.0), t = test::random_matrix<double>(n, v, 2, 3.0);
  const auto y = random_targets(n, int(v), 3);
  MatD g(n, v);
  for (double T : {0.05, 0.5, 1.0, 2.0, 7.0, 20.0}) {
    CAPTURE(T);
    LossOptions o;
    o.temperature = T;
    REQUIRE(lmshrink::kl_divergence<double>(s, t, g, o) == Approx(naive_kl(s, t, T)).epsilon(1e-12));
    REQUIRE(lmshrink::reverse_kl_divergence<double>(s, t, g, o) ==
            Approx(naive_reverse_kl(s, t, T)).epsilon(1e-12));
    for (double beta : {0.1, 0.5, 0.9})
      REQUIRE(lmshrink::jsd_divergence<double>(s, t, g, beta, o) ==
              Approx(naive_jsd(s, t, beta, T)).epsilon(1e-11));
  }
  REQUIRE(lmshrink::cross_entropy<double>(s, y, g) == Approx(naive_ce(s, y)).epsilon(1e-12));
  REQUIRE(lmshrink::mse_loss<double>(s, t, g) == Approx(naive_mse(s, t)).epsilon(1e-12));
  REQUIRE(lmshrink::mse_loss<double>(s, t, g, {}, 0.25) == Approx(naive_mse(s, t, 0.25)).epsilon(1e-12));
  REQUIRE(lmshrink::cosine_loss<double>(s, t, g) == Approx(naive_cos(s, t)).epsilon(1e-12));
  // The soft/hard mix: at T = 1 in one fused pass, a term of weight 0 skipped.
  for (double T : {1.0, 2.0})
    for (double alpha : {0.0, 0.3, 1.0}) {
      CAPTURE(T, alpha);
      LossOptions o2;
      o2.temperature = T;
      REQUIRE(lmshrink::soft_hard_loss<double>(s, t, y, g, alpha, o2) ==
              Approx(alpha * naive_kl(s, t, T) + (1 - alpha) * naive_ce(s, y)).epsilon(1e-12));
    }

  // DistilGPT-2's triple loss on logits and (here: 11-wide) hidden states.
  const MatD hs = test::random_matrix<double>(n, 11, 4), ht = test::random_matrix<double>(n, 11, 5);
  MatD gh(n, 11);
  const auto v3 = lmshrink::distilgpt2_loss<double>(s, t, y, hs, ht, g, gh);
  REQUIRE(v3.kl == Approx(naive_kl(s, t, 2)).epsilon(1e-12));
  REQUIRE(v3.clm == Approx(naive_ce(s, y)).epsilon(1e-12));
  REQUIRE(v3.cosine == Approx(naive_cos(hs, ht)).epsilon(1e-12));
  REQUIRE(v3.total == Approx(5 * naive_kl(s, t, 2) + 2 * naive_ce(s, y) + naive_cos(hs, ht)).epsilon(1e-12));
}

TEST_CASE("every gradient matches finite differences in double", "[distillation][gradient]") {
  const Index n = 3, v = 9;
  const MatD s0 = test::random_matrix<double>(n, v, 11, 2.0), t = test::random_matrix<double>(n, v, 12, 2.0);
  const auto y = random_targets(n, int(v), 13);
  lmshrink::RowMask mask(n);
  mask << 1, 0, 1;
  for (double T : {0.5, 1.0, 3.0}) {
    CAPTURE(T);
    LossOptions o;
    o.temperature = T;
    o.mask = &mask;
    check_gradient(s0, [&](const MatD& s, MatD& g) { return lmshrink::kl_divergence<double>(s, t, g, o); });
    check_gradient(s0, [&](const MatD& s, MatD& g) { return lmshrink::reverse_kl_divergence<double>(s, t, g, o); });
    check_gradient(s0, [&](const MatD& s, MatD& g) { return lmshrink::jsd_divergence<double>(s, t, g, 0.3, o); });
    check_gradient(s0, [&](const MatD& s, MatD& g) { return lmshrink::soft_hard_loss<double>(s, t, y, g, 0.6, o); });
  }
  LossOptions o;
  o.mask = &mask;
  check_gradient(s0, [&](const MatD& s, MatD& g) { return lmshrink::cross_entropy<double>(s, y, g, o); });
  check_gradient(s0, [&](const MatD& s, MatD& g) { return lmshrink::mse_loss<double>(s, t, g, o, 0.4); });
  check_gradient(s0, [&](const MatD& s, MatD& g) { return lmshrink::cosine_loss<double>(s, t, g, o); });
  const lmshrink::AnnealingKdSchedule sched{4.0, 10};
  for (std::int64_t step : {0, 5, 12})
    check_gradient(s0, [&](const MatD& s, MatD& g) {
      return lmshrink::annealing_kd_loss<double>(sched, step, s, t, y, g, o);
    });
  // The triple loss: logits and hidden states at once.
  const MatD hs0 = test::random_matrix<double>(n, 5, 14), ht = test::random_matrix<double>(n, 5, 15);
  check_gradient(s0, [&](const MatD& s, MatD& g) {
    MatD gh(n, 5);
    return lmshrink::distilgpt2_loss<double>(s, t, y, hs0, ht, g, gh, {}, o).total;
  });
  check_gradient(hs0, [&](const MatD& h, MatD& gh) {
    MatD g(n, v);
    return lmshrink::distilgpt2_loss<double>(s0, t, y, h, ht, g, gh, {}, o).total;
  });
}

TEST_CASE("Annealing-KD: the temperature schedule and its two phases", "[distillation]") {
  const lmshrink::AnnealingKdSchedule s{10.0, 10};
  REQUIRE(lmshrink::annealing_temperature(s, 0) == 1.0);
  REQUIRE(lmshrink::annealing_temperature(s, 9) == 10.0);
  REQUIRE(lmshrink::annealing_temperature(s, 3) == Approx(4.0));
  REQUIRE(lmshrink::annealing_temperature(s, 100) == 10.0);
  REQUIRE_THROWS_AS(lmshrink::annealing_temperature({0.5, 10}, 0), lmshrink::value_error);
  REQUIRE_THROWS_AS(lmshrink::annealing_temperature({2, 0}, 0), lmshrink::value_error);
  const MatD z = test::random_matrix<double>(4, 8, 1), t = test::random_matrix<double>(4, 8, 2);
  const auto y = random_targets(4, 8, 3);
  MatD g(4, 8);
  REQUIRE(lmshrink::annealing_kd_loss<double>(s, 3, z, t, y, g) == Approx(naive_mse(z, t, 0.4)));
  REQUIRE(lmshrink::annealing_kd_loss<double>(s, 10, z, t, y, g) == Approx(naive_ce(z, y)));
}

TEST_CASE("identical teacher and student give zero divergence and zero gradient", "[distillation]") {
  const MatD z = test::random_matrix<double>(5, 300, 7, 4.0);
  MatD g(5, 300);
  for (double T : {0.5, 2.0}) {
    LossOptions o;
    o.temperature = T;
    REQUIRE(std::abs(lmshrink::kl_divergence<double>(z, z, g, o)) < 1e-13);
    REQUIRE(g.cwiseAbs().maxCoeff() < 1e-15);
    REQUIRE(std::abs(lmshrink::reverse_kl_divergence<double>(z, z, g, o)) < 1e-13);
    REQUIRE(g.cwiseAbs().maxCoeff() < 1e-15);
    REQUIRE(std::abs(lmshrink::jsd_divergence<double>(z, z, g, 0.5, o)) < 1e-13);
    REQUIRE(g.cwiseAbs().maxCoeff() < 1e-15);
  }
  REQUIRE(std::abs(lmshrink::cosine_loss<double>(z, z, g)) < 1e-14);
  REQUIRE(lmshrink::mse_loss<double>(z, z, g) == 0.0);
  REQUIRE(g.cwiseAbs().maxCoeff() == 0.0);
}

TEST_CASE("large logits and extreme temperatures stay finite and exact", "[distillation]") {
  // Logits of ±1e4 in float: the online log-sum-exp never overflows.
  Matrix<float> s = test::random_matrix<float>(4, 5000, 21, 1.0), t = test::random_matrix<float>(4, 5000, 22, 1.0);
  s(0, 17) = 1e4f;
  s(1, 4000) = -1e4f;
  t(0, 3) = 1e4f;
  t(2, 2500) = 9999.f;
  s(2, 2500) = 9998.f;
  const MatD sd = s.cast<double>(), td = t.cast<double>();
  Matrix<float> g(4, 5000);
  for (double T : {0.5, 1.0, 20.0}) {
    CAPTURE(T);
    LossOptions o;
    o.temperature = T;
    const double kl = lmshrink::kl_divergence<float>(s, t, g, o);
    REQUIRE(std::isfinite(kl));
    REQUIRE(g.allFinite());
    REQUIRE(kl == Approx(naive_kl(sd, td, T)).epsilon(1e-6));
    const double rkl = lmshrink::reverse_kl_divergence<float>(s, t, g, o);
    REQUIRE(rkl == Approx(naive_reverse_kl(sd, td, T)).epsilon(1e-6));
    REQUIRE(g.allFinite());
    const double jsd = lmshrink::jsd_divergence<float>(s, t, g, 0.5, o);
    REQUIRE(std::isfinite(jsd));
    REQUIRE(g.allFinite());
  }
  Eigen::VectorXi y(4);
  y << 3, 4000, 2500, 0;
  const double ce = lmshrink::cross_entropy<float>(s, y, g);
  REQUIRE(ce == Approx(naive_ce(sd, y)).epsilon(1e-6));
  // Float logits take float exponentials: value and gradient against the double computation.
  MatD gd(4, 5000);
  for (double T : {1.0, 2.0}) {
    CAPTURE(T);
    LossOptions o;
    o.temperature = T;
    const double mix = lmshrink::soft_hard_loss<float>(s, t, y, g, 0.5, o);
    REQUIRE(mix == Approx(0.5 * naive_kl(sd, td, T) + 0.5 * naive_ce(sd, y)).epsilon(1e-6));
    lmshrink::soft_hard_loss<double>(sd, td, y, gd, 0.5, o);
    REQUIRE((g.cast<double>() - gd).cwiseAbs().maxCoeff() <= 1e-6 * gd.cwiseAbs().maxCoeff());
  }
}

TEST_CASE("masks, one-token sequences, fully masked batches and chunking", "[distillation]") {
  const Index n = 8, v = 4100;  // more than two vocabulary tiles
  const MatD s = test::random_matrix<double>(n, v, 31), t = test::random_matrix<double>(n, v, 32);
  MatD g(n, v);

  SECTION("a masked token contributes nothing and its gradient row is zero") {
    lmshrink::RowMask m = lmshrink::RowMask::Ones(n);
    m[2] = 0;
    LossOptions o;
    o.mask = &m;
    g.setConstant(5);
    const double masked = lmshrink::kl_divergence<double>(s, t, g, o);
    REQUIRE(g.row(2).cwiseAbs().maxCoeff() == 0.0);
    MatD s7(n - 1, v), t7(n - 1, v);
    s7 << s.topRows(2), s.bottomRows(n - 3);
    t7 << t.topRows(2), t.bottomRows(n - 3);
    REQUIRE(masked == Approx(naive_kl(s7, t7, 1)).epsilon(1e-12));
  }
  SECTION("one token") {
    MatD g1(1, v);
    REQUIRE(lmshrink::kl_divergence<double>(s.topRows(1), t.topRows(1), g1) ==
            Approx(naive_kl(s.topRows(1), t.topRows(1), 1)).epsilon(1e-12));
  }
  SECTION("a fully masked batch is a defined zero") {
    lmshrink::RowMask none = lmshrink::RowMask::Zero(n);
    LossOptions o;
    o.mask = &none;
    g.setConstant(5);
    REQUIRE(lmshrink::kl_divergence<double>(s, t, g, o) == 0.0);
    REQUIRE(g.cwiseAbs().maxCoeff() == 0.0);
    o.accumulate = true;
    g.setConstant(5);
    REQUIRE(lmshrink::cross_entropy<double>(s, random_targets(n, int(v), 1), g, o) == 0.0);
    REQUIRE((g.array() == 5).all());  // accumulate leaves masked rows alone
  }
  SECTION("chunks with scale = 1/total add up to the whole batch") {
    MatD whole(n, v), chunked(n, v);
    const double full = lmshrink::kl_divergence<double>(s, t, whole);
    LossOptions o;
    o.scale = 1.0 / double(n);
    double sum = 0;
    for (Index c0 = 0; c0 < n; c0 += 3) {
      const Index c = std::min<Index>(3, n - c0);
      sum += lmshrink::kl_divergence<double>(s.middleRows(c0, c), t.middleRows(c0, c),
                                             chunked.middleRows(c0, c), o);
    }
    REQUIRE(sum == Approx(full).epsilon(1e-13));
    REQUIRE((chunked - whole).cwiseAbs().maxCoeff() < 1e-18);
  }
  SECTION("accumulate adds, weight multiplies") {
    MatD once(n, v), twice(n, v);
    const double a = lmshrink::cross_entropy<double>(s, random_targets(n, int(v), 2), once);
    LossOptions o;
    o.weight = 2;
    const double b = lmshrink::cross_entropy<double>(s, random_targets(n, int(v), 2), twice, o);
    REQUIRE(b == Approx(2 * a));
    o.weight = 1;
    o.accumulate = true;
    lmshrink::cross_entropy<double>(s, random_targets(n, int(v), 2), once, o);
    REQUIRE((once - twice).cwiseAbs().maxCoeff() < 1e-15);
  }
}

TEST_CASE("bad input is rejected with a named error", "[distillation][errors]") {
  const MatD s = test::random_matrix<double>(3, 10, 1), t = test::random_matrix<double>(3, 10, 2);
  MatD g(3, 10), wrong(3, 11);
  LossOptions o;
  REQUIRE_THROWS_WITH(lmshrink::kl_divergence<double>(s, wrong, g),
                      Catch::Contains("kl_divergence") && Catch::Contains("teacher is 3x11 but the student is 3x10"));
  REQUIRE_THROWS_AS(lmshrink::kl_divergence<double>(s, t, wrong), lmshrink::shape_error);
  o.temperature = 0;
  REQUIRE_THROWS_WITH(lmshrink::kl_divergence<double>(s, t, g, o), Catch::Contains("temperature must be positive"));
  o.temperature = NAN;
  REQUIRE_THROWS_AS(lmshrink::kl_divergence<double>(s, t, g, o), lmshrink::value_error);
  REQUIRE_THROWS_WITH(lmshrink::jsd_divergence<double>(s, t, g, 1.0), Catch::Contains("beta must be in (0, 1), got 1"));
  Eigen::VectorXi y(3);
  y << 0, 10, 1;
  REQUIRE_THROWS_WITH(lmshrink::cross_entropy<double>(s, y, g),
                      Catch::Contains("target of token 1 is 10 but must be in [0, 10)"));
  REQUIRE_THROWS_WITH(lmshrink::cross_entropy<double>(s, Eigen::VectorXi(2), g), Catch::Contains("targets has 2 entries"));
  lmshrink::RowMask m(2);
  LossOptions om;
  om.mask = &m;
  REQUIRE_THROWS_WITH(lmshrink::mse_loss<double>(s, t, g, om), Catch::Contains("mask has 2 entries but there are 3 tokens"));
  MatD bad = s;
  bad(1, 4) = NAN;
  REQUIRE_THROWS_WITH(lmshrink::kl_divergence<double>(bad, t, g),
                      Catch::Contains("student has a non-finite value") && Catch::Contains("(1, 4)"));
  REQUIRE_THROWS_AS(lmshrink::cross_entropy<double>(bad, Eigen::VectorXi::Zero(3), g), lmshrink::numeric_error);
  REQUIRE_THROWS_AS(lmshrink::mse_loss<double>(bad, t, g), lmshrink::numeric_error);
  REQUIRE_THROWS_AS(lmshrink::cosine_loss<double>(t, bad, g), lmshrink::numeric_error);
  REQUIRE_THROWS_WITH(lmshrink::soft_hard_loss<double>(s, t, Eigen::VectorXi::Zero(3), g, 1.5),
                      Catch::Contains("alpha must be in [0, 1]"));
}
