#pragma once
// Rotary position embedding on adjacent pairs (llama2.c's and Meta Llama's layout): within each
// head of head_size features, the pair (2j, 2j+1) at position p turns by the angle
// p·theta^(−2j/head_size). The angles are computed in float as run.c does (float pow, cos and
// sin), so that a model trained or converted elsewhere meets the rotation it was trained with.
//
//   models::RopeTable<float> rope(max_positions, head_size, theta);   // , scaling (rope_scaling)
//   rope.cover(n);                                 // positions [0, n) available
//   rope.rotate_rows(q, n, +1);                    // rows are sequences of n tokens
//   rope.rotate_rows(dq, n, −1);                   // the backward: the inverse rotation
//
// A model's context can be far longer than what is trained, scored or generated, so the table
// grows with the positions used (doubling, at most to max_positions) instead of being sized to
// the context up front.

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../io/hf_config.hpp"
#include "../types.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {

/// A RoPE frequency after rope_scaling, in float as Hugging Face computes it (its inv_freq
/// tensors are float32): linear divides by the factor; llama3 divides frequencies whose
/// wavelength 2π/f exceeds original / low_freq_factor, keeps those below original /
/// high_freq_factor, and in between blends f/factor and f by s = (original/wavelength −
/// low_freq_factor) / (high_freq_factor − low_freq_factor): (1 − s)·f/factor + s·f.
inline float scaled_rope_frequency(float f, const RopeScaling& s) {
  if (!s.enabled()) return f;
  const float factor = float(s.factor);
  if (s.type == "linear") return f / factor;
  const float original = float(s.original_max_positions);
  const float low_wavelength = original / float(s.low_freq_factor);
  const float high_wavelength = original / float(s.high_freq_factor);
  const float wavelength = 2.0f * 3.14159265358979323846f / f;
  if (wavelength < high_wavelength) return f;
  if (wavelength > low_wavelength) return f / factor;
  const float smooth = (original / wavelength - float(s.low_freq_factor)) / float(s.high_freq_factor - s.low_freq_factor);
  return (1.0f - smooth) * f / factor + smooth * f;
}

template <class Scalar>
class RopeTable {
 public:
  RopeTable(int max_positions, int head_size, double theta, RopeScaling scaling = {})
      : half_(head_size / 2), head_size_(head_size), max_positions_(max_positions), theta_(theta),
        scaling_(std::move(scaling)) {
    static constexpr const char* where = "RopeTable";
    if (head_size < 2 || head_size % 2 != 0)
      lmshrink::detail::fail<value_error>(where, "head_size must be even and >= 2, got ", head_size);
    if (max_positions < 1)
      lmshrink::detail::fail<value_error>(where, "max_positions must be >= 1, got ", max_positions);
    if (!(theta > 0) || !std::isfinite(theta))
      lmshrink::detail::fail<value_error>(where, "theta must be a finite number > 0, got ", theta);
  }

  int head_size() const { return head_size_; }
  int max_positions() const { return max_positions_; }
  /// Positions [0, covered()) have their angles computed.
  int covered() const { return covered_; }

  /// Makes positions [0, positions) available; allocates only when they grow.
  void cover(int positions) {
    if (positions <= covered_) return;
    if (positions > max_positions_)
      lmshrink::detail::fail<value_error>("RopeTable::cover", "position ", positions - 1,
                                          " is beyond the model's context of ", max_positions_);
    const int target = std::min(max_positions_, std::max(positions, 2 * covered_));
    cos_.resize(std::size_t(target) * std::size_t(half_));
    sin_.resize(cos_.size());
    for (int pos = covered_; pos < target; ++pos)
      for (int j = 0; j < half_; ++j) {
        const float freq =
            scaled_rope_frequency(1.0f / std::pow(float(theta_), float(2 * j) / float(head_size_)), scaling_);
        const float angle = float(pos) * freq;
        cos_[std::size_t(pos) * half_ + std::size_t(j)] = Scalar(std::cos(angle));
        sin_[std::size_t(pos) * half_ + std::size_t(j)] = Scalar(std::sin(angle));
      }
    covered_ = target;
  }

  /// Rotates every head of v (`width` features, a multiple of head_size) to position pos; sign
  /// −1 rotates back (the transpose, which is the backward of the rotation).
  void rotate(Scalar* v, Index width, int pos, int sign = +1) const {
    LMSHRINK_ASSERT(pos >= 0 && pos < covered_ && width % head_size_ == 0);
    const Scalar* c = cos_.data() + std::size_t(pos) * half_;
    const Scalar* s = sin_.data() + std::size_t(pos) * half_;
    for (Index h = 0; h < width; h += head_size_)
      for (int j = 0; j < half_; ++j) {
        const Scalar sn = Scalar(sign) * s[j];
        const Scalar a = v[h + 2 * j], b = v[h + 2 * j + 1];
        v[h + 2 * j] = a * c[j] - b * sn;
        v[h + 2 * j + 1] = a * sn + b * c[j];
      }
  }

  /// Rotates every row of m, rows being sequences of `sequence_length` tokens one after the
  /// other (row t is at position t mod sequence_length); covers the positions first.
  void rotate_rows(MatrixRef<Scalar> m, int sequence_length, int sign) {
    static constexpr const char* where = "RopeTable::rotate_rows";
    if (sequence_length < 1 || m.rows() % sequence_length != 0)
      lmshrink::detail::fail<shape_error>(where, m.rows(), " rows are not whole sequences of ",
                                          sequence_length, " tokens");
    if (m.cols() % head_size_ != 0)
      lmshrink::detail::fail<shape_error>(where, "width ", m.cols(), " is not a whole number of heads of ",
                                          head_size_);
    cover(int(std::min<Index>(sequence_length, m.rows())));
    for (Index row = 0; row < m.rows(); ++row) rotate(m.row(row).data(), m.cols(), int(row % sequence_length), sign);
  }

 private:
  int half_, head_size_, max_positions_;
  double theta_;
  RopeScaling scaling_;
  int covered_ = 0;
  std::vector<Scalar> cos_, sin_;
};

}  // namespace models
LMSHRINK_NAMESPACE_END
