#pragma once
// A small seeded generator whose stream is the same on every platform and standard library
// (std::normal_distribution is not), so seeded results are reproducible everywhere. The library
// draws every random number it uses from it (randomized SVD, from-scratch weights in the
// examples), and programs built on lmshrink can too:
//
//   lmshrink::SplitMix64 rng(seed);
//   double x = rng.normal();      // N(0, 1)
//   double u = rng.uniform();     // (0, 1)

#include <cmath>
#include <cstdint>

#include "config.hpp"

LMSHRINK_NAMESPACE_BEGIN

/// SplitMix64 (Steele, Lea, Flood 2014).
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  /// Uniform in (0, 1): 53 random bits, never exactly 0.
  double uniform() { return (static_cast<double>(next() >> 11) + 0.5) * 0x1.0p-53; }
  /// Standard normal by Box–Muller; both outputs are used.
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double r = std::sqrt(-2.0 * std::log(uniform()));
    const double t = 6.283185307179586476925 * uniform();
    spare_ = r * std::sin(t);
    has_spare_ = true;
    return r * std::cos(t);
  }

 private:
  std::uint64_t state_;
  double spare_ = 0;
  bool has_spare_ = false;
};

LMSHRINK_NAMESPACE_END
