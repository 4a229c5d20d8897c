#pragma once
// Choosing the next token from logits: greedy, temperature, nucleus (top-p), with llama2.c
// run.c's generator and rules, so that a seed gives the text run.c gives for the same model.
//
//   models::Sampler sampler(vocab, {/*temperature=*/1.0f, /*top_p=*/0.9f, /*seed=*/133742});
//   int next = sampler.sample(decoder->forward_token(token, pos));
//
// Temperature 0 is greedy (the first largest logit). Otherwise the logits are divided by the
// temperature and soft-maxed in float; one draw u in [0, 1) of the xorshift* generator picks the
// token whose cumulative probability first exceeds u, over every token when top_p is outside
// (0, 1), else over the most probable tokens (those of probability at least (1 - top_p)/(n - 1),
// in decreasing order) until their mass exceeds top_p, with u scaled by that mass.

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../errors.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {

/// run.c's xorshift* generator (its state is the seed).
class XorShiftStar {
 public:
  explicit XorShiftStar(std::uint64_t seed) : state_(seed) {}
  std::uint32_t next_u32() {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return std::uint32_t((state_ * 0x2545F4914F6CDD1Dull) >> 32);
  }
  /// Uniform in [0, 1) with 24 random bits.
  float next_f32() { return float(next_u32() >> 8) / 16777216.0f; }

 private:
  std::uint64_t state_;
};

struct SamplingOptions {
  float temperature = 1.0f;  ///< 0: greedy
  float top_p = 0.9f;        ///< nucleus mass; outside (0, 1): every token
  std::uint64_t seed = 1;    ///< the generator's state; not 0 (xorshift would stay at 0)
};

class Sampler {
 public:
  /// value_error for a vocabulary below 1, a negative or non-finite temperature, a NaN top_p or
  /// a zero seed with a temperature above 0.
  Sampler(int vocab, SamplingOptions options)
      : options_(options), rng_(options.seed), probs_(std::size_t(std::max(vocab, 0))),
        order_(std::size_t(std::max(vocab, 0))) {
    static constexpr const char* where = "Sampler";
    if (vocab < 1) fail<value_error>(where, "the vocabulary must hold at least one token, got ", vocab);
    if (!(options.temperature >= 0) || !std::isfinite(options.temperature))
      fail<value_error>(where, "temperature must be finite and >= 0, got ", options.temperature);
    if (std::isnan(options.top_p)) fail<value_error>(where, "top_p is NaN");
    if (options.temperature > 0 && options.seed == 0)
      fail<value_error>(where, "the seed must not be 0 (the generator would only draw 0)");
  }

  const SamplingOptions& options() const { return options_; }

  /// The next token for `logits` (the vocabulary's size); no allocation.
  int sample(const Eigen::Ref<const Eigen::VectorXf>& logits) {
    const int n = int(probs_.size());
    if (logits.size() != n)
      fail<shape_error>("Sampler::sample", "logits of ", logits.size(), " tokens; the vocabulary has ", n);
    if (options_.temperature == 0) {
      Eigen::Index best = 0;
      logits.maxCoeff(&best);
      return int(best);
    }
    // Soft-max of logits / temperature, in float as run.c.
    float max = logits[0] / options_.temperature;
    for (int i = 0; i < n; ++i) max = std::max(max, logits[i] / options_.temperature);
    float sum = 0;
    for (int i = 0; i < n; ++i) {
      probs_[std::size_t(i)] = std::exp(logits[i] / options_.temperature - max);
      sum += probs_[std::size_t(i)];
    }
    for (float& p : probs_) p /= sum;
    const float coin = rng_.next_f32();
    if (options_.top_p <= 0 || options_.top_p >= 1) {
      float cdf = 0;
      for (int i = 0; i < n; ++i) {
        cdf += probs_[std::size_t(i)];
        if (coin < cdf) return i;
      }
      return n - 1;
    }
    const float cutoff = n > 1 ? (1.0f - options_.top_p) / float(n - 1) : 0.0f;
    int kept = 0;
    for (int i = 0; i < n; ++i)
      if (probs_[std::size_t(i)] >= cutoff) order_[std::size_t(kept++)] = i;
    if (kept == 0) {  // a near-uniform distribution and a tiny top_p: the most probable token
      Eigen::Index best = 0;
      logits.maxCoeff(&best);
      return int(best);
    }
    std::stable_sort(order_.begin(), order_.begin() + kept,
                     [&](int a, int b) { return probs_[std::size_t(a)] > probs_[std::size_t(b)]; });
    float mass = 0;
    int last = kept - 1;
    for (int i = 0; i < kept; ++i) {
      mass += probs_[std::size_t(order_[std::size_t(i)])];
      if (mass > options_.top_p) {
        last = i;
        break;
      }
    }
    const float r = coin * mass;
    float cdf = 0;
    for (int i = 0; i <= last; ++i) {
      cdf += probs_[std::size_t(order_[std::size_t(i)])];
      if (r < cdf) return order_[std::size_t(i)];
    }
    return order_[std::size_t(last)];
  }

 private:
  SamplingOptions options_;
  XorShiftStar rng_;
  std::vector<float> probs_;
  std::vector<int> order_;
};

}  // namespace models
LMSHRINK_NAMESPACE_END
