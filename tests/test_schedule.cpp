#include <catch2/catch.hpp>
#include <cmath>
#include <lmshrink/schedule.hpp>

using Catch::Matchers::Contains;
using lmshrink::CubicSchedule;

namespace {
CubicSchedule sched() {
  CubicSchedule s;
  s.total_steps = 100;
  s.initial_warmup = 10;
  s.final_warmup = 20;
  s.final_keep = 0.2;
  s.mask_interval = 10;
  return s;  // cubic phase: steps 11..80, span T − t_i − t_f = 70
}
}  // namespace

TEST_CASE("cubic schedule values inside each phase and at the boundaries", "[schedule]") {
  const auto s = sched();
  // Initial warm-up, including its last step g = t_i.
  for (lmshrink::Index g : {0, 1, 9, 10}) {
    REQUIRE(lmshrink::cubic_keep_ratio(s, g) == 1.0);
    REQUIRE_FALSE(lmshrink::is_mask_step(s, g));
  }
  // First cubic step: 0.2 + 0.8·(69/70)³.
  REQUIRE(lmshrink::cubic_keep_ratio(s, 11) == Approx(0.2 + 0.8 * 328509.0 / 343000.0).epsilon(1e-15));
  REQUIRE_FALSE(lmshrink::is_mask_step(s, 11));
  // g = 20: (6/7)³ = 216/343, a mask step (20 mod 10 == 0).
  REQUIRE(lmshrink::cubic_keep_ratio(s, 20) == Approx(0.2 + 0.8 * 216.0 / 343.0).epsilon(1e-15));
  REQUIRE(lmshrink::is_mask_step(s, 20));
  // Half way: (1/2)³.
  REQUIRE(lmshrink::cubic_keep_ratio(s, 45) == Approx(0.3).epsilon(1e-15));
  REQUIRE_FALSE(lmshrink::is_mask_step(s, 45));
  REQUIRE(lmshrink::is_mask_step(s, 50));
  // g = T − t_f = 80 is still cubic: exactly p_final, masked because 80 mod 10 == 0.
  REQUIRE(lmshrink::cubic_keep_ratio(s, 80) == Approx(0.2).epsilon(1e-15));
  REQUIRE(lmshrink::is_mask_step(s, 80));
  REQUIRE(lmshrink::cubic_keep_ratio(s, 79) > 0.2);
  REQUIRE_FALSE(lmshrink::is_mask_step(s, 79));
  // Final phase: p_final and a mask every step, also past T.
  for (lmshrink::Index g : {81, 83, 99, 100, 150}) {
    REQUIRE(lmshrink::cubic_keep_ratio(s, g) == 0.2);
    REQUIRE(lmshrink::is_mask_step(s, g));
  }
}

TEST_CASE("the schedule decreases monotonically from 1 to p_final", "[schedule]") {
  const auto s = sched();
  double previous = 1.0;
  for (lmshrink::Index g = 0; g <= 120; ++g) {
    const double k = lmshrink::cubic_keep_ratio(s, g);
    REQUIRE(k <= previous);
    REQUIRE(k >= 0.2);
    previous = k;
  }
}

TEST_CASE("no warm-ups and an interval of one", "[schedule]") {
  CubicSchedule s;
  s.total_steps = 4;
  s.final_keep = 0.5;
  s.mask_interval = 1;
  REQUIRE(lmshrink::cubic_keep_ratio(s, 0) == 1.0);  // g ≤ t_i = 0
  REQUIRE(lmshrink::cubic_keep_ratio(s, 2) == Approx(0.5 + 0.5 * 0.125));
  REQUIRE(lmshrink::is_mask_step(s, 1));
  REQUIRE(lmshrink::cubic_keep_ratio(s, 4) == Approx(0.5));
}

TEST_CASE("invalid schedules are value errors", "[schedule][errors]") {
  auto s = sched();
  s.final_warmup = 90;
  REQUIRE_THROWS_WITH(lmshrink::cubic_keep_ratio(s, 5),
                      Contains("total_steps (100) must exceed initial_warmup + final_warmup (100)"));
  s = sched();
  s.final_keep = 0;
  REQUIRE_THROWS_WITH(lmshrink::is_mask_step(s, 5), Contains("final_keep must be in (0, 1], got 0"));
  s = sched();
  s.mask_interval = 0;
  REQUIRE_THROWS_AS(lmshrink::cubic_schedule(s, 5), lmshrink::value_error);
  s = sched();
  s.initial_warmup = -1;
  REQUIRE_THROWS_AS(lmshrink::cubic_schedule(s, 5), lmshrink::value_error);
  REQUIRE_THROWS_WITH(lmshrink::cubic_schedule(sched(), -1), Contains("step must be >= 0, got -1"));
}

TEST_CASE("warm-up then cosine: the ramp, the peak, the floor, and bad settings", "[schedule]") {
  lmshrink::WarmupCosine s;
  s.peak = 0.01;
  s.total_steps = 100;
  s.warmup_steps = 5;
  s.final_fraction = 0.1;
  CHECK(lmshrink::warmup_cosine_lr(s, 0) == Approx(0.002));
  CHECK(lmshrink::warmup_cosine_lr(s, 4) == Approx(0.01));         // the warm-up ends at the peak
  CHECK(lmshrink::warmup_cosine_lr(s, 5) == Approx(0.01));         // the cosine starts there
  // Halfway through the decay (f = 0.5): the midpoint between the peak and the floor.
  CHECK(lmshrink::warmup_cosine_lr(s, 5 + 95 / 2) == Approx(0.01 * (0.1 + 0.9 * 0.5 * (1 + std::cos(3.141592653589793 * 47.0 / 95)))));
  double previous = 1;
  for (lmshrink::Index step = 5; step < 100; ++step) {
    const double lr = lmshrink::warmup_cosine_lr(s, step);
    CHECK(lr <= previous);
    CHECK(lr >= 0.001);
    previous = lr;
  }
  CHECK(lmshrink::warmup_cosine_lr(s, 1000) == Approx(0.001));    // past the end: the floor
  s.warmup_steps = 0;
  CHECK_THROWS_WITH(lmshrink::warmup_cosine_lr(s, 0), Contains("1 <= warmup_steps <= total_steps"));
  s.warmup_steps = 5;
  CHECK_THROWS_AS(lmshrink::warmup_cosine_lr(s, -1), lmshrink::value_error);
}
