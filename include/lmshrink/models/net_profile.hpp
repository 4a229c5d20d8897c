#pragma once
// Where a trainer's forward and backward spend their time, for benchmarks and profilers
// (bench/bench_train.cpp). A trainer with a profile attached adds the wall seconds of each
// phase, on the thread that runs it; without one (the default) a phase costs one test of a null
// pointer.
//
//   models::NetProfile profile;
//   net.set_profile(&profile);      // a family's Trainer, or a models::Net
//   ... forward, backward ...
//   profile.linear, profile.attention, profile.classifier, profile.rest()
//
// A recompute net's second forward of each block (in its backward) counts where it runs: its
// linear layers under linear, its attention under attention.

#include <chrono>
#include <cstdint>

#include "../config.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {

struct NetProfile {
  double linear = 0;      // every linear layer's forward and backward (U·V + S, biases)
  double attention = 0;   // attention's forward and backward, RoPE included
  double classifier = 0;  // the logits' product and its two backward products
  double total = 0;       // whole forward and backward calls
  std::int64_t forwards = 0, backwards = 0;

  /// Norms, activations, residual adds, embeddings: the time of the calls outside the phases.
  double rest() const { return total - linear - attention - classifier; }
  void clear() { *this = NetProfile(); }
  NetProfile& operator+=(const NetProfile& o) {
    linear += o.linear, attention += o.attention, classifier += o.classifier, total += o.total;
    forwards += o.forwards, backwards += o.backwards;
    return *this;
  }
};

/// Adds the wall time of its scope to *slot; nothing when slot is null.
class ProfileScope {
 public:
  explicit ProfileScope(double* slot) : slot_(slot) {
    if (slot_ != nullptr) start_ = Clock::now();
  }
  ~ProfileScope() {
    if (slot_ != nullptr) *slot_ += std::chrono::duration<double>(Clock::now() - start_).count();
  }
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  using Clock = std::chrono::steady_clock;
  double* slot_;
  Clock::time_point start_{};
};

/// The slot of field `phase` in *profile, or null without a profile.
inline double* profile_slot(NetProfile* profile, double NetProfile::*phase) {
  return profile != nullptr ? &(profile->*phase) : nullptr;
}

}  // namespace models
LMSHRINK_NAMESPACE_END
