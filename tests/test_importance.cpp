#include <catch2/catch.hpp>
#include <lmshrink/importance.hpp>
#include <vector>

using Catch::Matchers::Contains;
using lmshrink::ImportanceKind;
using lmshrink::ImportanceOptions;
using lmshrink::ImportanceTracker;
using M = lmshrink::RowMatrix<double>;

namespace {

M row(double a, double b) {
  M m(1, 2);
  m << a, b;
  return m;
}

struct Step {
  M value, grad;
};

// Taylor sensitivities |S∘G|: [2,2], [1,3], [1,3], [4,0], [2,2], [0,0], then g6.
std::vector<Step> steps() {
  return {{row(1, 2), row(2, -1)},  {row(1, -3), row(1, 1)}, {row(2, 1), row(0.5, 3)},
          {row(1, 1), row(4, 0)},   {row(1, 1), row(2, 2)},  {row(0, 1), row(1, 0)},
          {row(1, 1), row(5, 6)}};
}

void require_row(const M& m, double a, double b) {
  REQUIRE(m(0, 0) == Approx(a).epsilon(1e-14));
  REQUIRE(m(0, 1) == Approx(b).epsilon(1e-14));
}

}  // namespace

TEST_CASE("windowed moving average across window boundaries, hand-computed", "[importance]") {
  ImportanceOptions o;
  o.beta1 = 0.5;
  o.window = 3;
  ImportanceTracker<double> t(1, 2, o);
  const auto s = steps();
  t.update(s[0].value, s[0].grad, 0);  // ℓ = 0: ema = 0.5·0 + 0.5·0; window restarts
  require_row(t.ema(), 0, 0);
  require_row(t.window_mean(), 2, 2);
  t.update(s[1].value, s[1].grad, 1);  // ℓ = 1: (2·1 + [1,3]) / 2
  require_row(t.window_mean(), 1.5, 2.5);
  t.update(s[2].value, s[2].grad, 2);  // ℓ = 2: ([1.5,2.5]·2 + [1,3]) / 3
  require_row(t.window_mean(), 4.0 / 3, 8.0 / 3);
  require_row(t.ema(), 0, 0);          // unchanged inside a window
  t.update(s[3].value, s[3].grad, 3);  // ℓ = 0: ema = 0.5·[4/3, 8/3]; window restarts at [4,0]
  require_row(t.ema(), 2.0 / 3, 4.0 / 3);
  require_row(t.window_mean(), 4, 0);
  t.update(s[4].value, s[4].grad, 4);
  require_row(t.window_mean(), 3, 1);
  t.update(s[5].value, s[5].grad, 5);
  require_row(t.window_mean(), 2, 2.0 / 3);
  t.update(s[6].value, s[6].grad, 6);  // ema = 0.5·[2/3, 4/3] + 0.5·[2, 2/3]
  require_row(t.ema(), 4.0 / 3, 1);
  require_row(t.window_mean(), 5, 6);
  M score(1, 2);
  t.score(score);
  require_row(score, 4.0 / 3, 1);  // β2 = 1: score = ema
  REQUIRE(t.last_step() == 6);
}

TEST_CASE("uncertainty (PLATON) updates at window starts with the new ema", "[importance]") {
  ImportanceOptions o;
  o.beta1 = 0.5;
  o.beta2 = 0.5;
  o.window = 3;
  ImportanceTracker<double> t(1, 2, o);
  const auto s = steps();
  for (int g = 0; g < 4; ++g) t.update(s[g].value, s[g].grad, g);
  // g = 3: unc = 0.5·0 + 0.5·|[4/3, 8/3] − [2/3, 4/3]|
  require_row(t.uncertainty(), 1.0 / 3, 2.0 / 3);
  for (int g = 4; g < 7; ++g) t.update(s[g].value, s[g].grad, g);
  // g = 6: unc = 0.5·[1/3, 2/3] + 0.5·|[2, 2/3] − [4/3, 1]| = [1/2, 1/2]
  require_row(t.uncertainty(), 0.5, 0.5);
  M score(1, 2);
  t.score(score);
  require_row(score, 2.0 / 3, 0.5);  // ema ∘ unc
}

TEST_CASE("magnitude and movement sensitivities", "[importance]") {
  ImportanceOptions o;
  o.window = 2;
  o.kind = ImportanceKind::magnitude;
  ImportanceTracker<double> mag(1, 2, o);
  mag.update(row(-3, 0.5), M(), 0);  // magnitude needs no gradient
  require_row(mag.window_mean(), 3, 0.5);
  o.kind = ImportanceKind::movement;
  ImportanceTracker<double> mov(1, 2, o);
  mov.update(row(2, -1), row(0.5, -4), 0);
  require_row(mov.window_mean(), -1, -4);  // −S∘G: weights moving toward zero score low
}

TEST_CASE("importance misuse is an error", "[importance][errors]") {
  ImportanceTracker<float> t(2, 3);
  lmshrink::RowMatrix<float> v = lmshrink::RowMatrix<float>::Ones(2, 3), g = v;
  REQUIRE_THROWS_WITH(t.update(lmshrink::RowMatrix<float>::Ones(3, 2), g, 0),
                      Contains("value is 3x2 but 2x3 was expected"));
  REQUIRE_THROWS_WITH(t.update(v, lmshrink::RowMatrix<float>::Ones(2, 2), 0),
                      Contains("grad is 2x2 but 2x3 was expected"));
  t.update(v, g, 4);
  REQUIRE_THROWS_WITH(t.update(v, g, 6),
                      Contains("[lmshrink.state] ImportanceTracker::update: step 6 follows step 4"));
  REQUIRE_THROWS_AS(t.update(v, g, 4), lmshrink::state_error);
  g(1, 1) = std::numeric_limits<float>::quiet_NaN();
  REQUIRE_THROWS_WITH(t.update(v, g, 5), Contains("non-finite sensitivity at (1, 1)"));
  ImportanceOptions bad;
  bad.beta1 = 1.0;
  REQUIRE_THROWS_AS(ImportanceTracker<float>(2, 2, bad), lmshrink::value_error);
  bad = {};
  bad.beta2 = 0;
  REQUIRE_THROWS_AS(ImportanceTracker<float>(2, 2, bad), lmshrink::value_error);
  bad = {};
  bad.window = 0;
  REQUIRE_THROWS_AS(ImportanceTracker<float>(2, 2, bad), lmshrink::value_error);
  REQUIRE_THROWS_AS(ImportanceTracker<float>(0, 2), lmshrink::value_error);
}
