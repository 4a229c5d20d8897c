#pragma once
// Calibration statistics of every linear layer's inputs in a model, for data-aware
// initialisation (whitened SVD, S + L fits, output-energy priors):
//
//   models::Calibration calib = models::collect_calibration(teacher, stream, length, windows, threads);
//   const GramAccumulator& g = calib.at(block, kind);   // the Gram matrix of layer (block, kind)'s input
//   calib.clear();                                       // frees them once every student is initialised
//
// Layers that read the same activations share one accumulator (Llama's wq, wk and wv; w1 and w3;
// GPT-2's q, k and v): each distinct input's Gram matrix is accumulated once. The model runs
// forward-only nets (no gradients). With several threads, windows are run forward side by
// side and the accumulators are updated in parallel, each in window order: the sums are the
// bits of one thread.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../calibration.hpp"
#include "../errors.hpp"
#include "model.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

LMSHRINK_NAMESPACE_BEGIN
namespace models {

/// One Gram accumulator per distinct linear-layer input of a model, and which layer reads which.
class Calibration {
 public:
  Calibration() = default;
  /// `input[block][kind]` indexes `grams`; every index must be in range.
  Calibration(std::vector<GramAccumulator> grams, std::vector<std::vector<int>> input)
      : grams_(std::move(grams)), input_(std::move(input)) {
    for (const auto& block : input_)
      for (int i : block)
        if (i < 0 || std::size_t(i) >= grams_.size())
          lmshrink::fail<value_error>("models::Calibration", "input index ", i, " is outside [0, ",
                                      grams_.size(), ")");
  }

  /// No statistics (never collected, or cleared).
  bool empty() const { return grams_.empty(); }
  int blocks() const { return int(input_.size()); }
  /// The statistics of layer (block, kind)'s input.
  const GramAccumulator& at(int block, int kind) const {
    if (empty())
      lmshrink::fail<state_error>("models::Calibration::at", "there are no calibration statistics (",
                                  cleared_ ? "they were cleared" : "none were collected", ")");
    if (block < 0 || block >= blocks() || kind < 0 || kind >= int(input_[std::size_t(block)].size()))
      lmshrink::fail<value_error>("models::Calibration::at", "layer (", block, ", ", kind, ") is outside the ",
                                  blocks(), " blocks of ", input_.empty() ? 0 : input_[0].size(), " layers");
    return grams_[std::size_t(input_[std::size_t(block)][std::size_t(kind)])];
  }
  /// Accumulators held: one per distinct input.
  std::size_t distinct_inputs() const { return grams_.size(); }
  /// Bytes of the Gram matrices (double, in²) held.
  std::int64_t bytes() const {
    std::int64_t b = 0;
    for (const auto& g : grams_) b += std::int64_t(g.features()) * g.features() * std::int64_t(sizeof(double));
    return b;
  }
  /// Frees every accumulator (at() is a state_error afterwards).
  void clear() {
    grams_.clear();
    grams_.shrink_to_fit();
    cleared_ = true;
  }

 private:
  std::vector<GramAccumulator> grams_;
  std::vector<std::vector<int>> input_;  // [block][kind] → grams_
  bool cleared_ = false;
};

/// The Gram matrices of every linear layer's input over `windows` consecutive windows of
/// `length` tokens of `stream`, run forward by `model` (forward-only nets, one per thread).
/// `progress(windows done, windows)` after each group of windows.
inline Calibration collect_calibration(Model& model, const std::vector<int>& stream, int length, int windows,
                                       int threads = 1,
                                       const std::function<void(int, int)>& progress = {}) {
  static constexpr const char* where = "models::collect_calibration";
  if (length < 1 || windows < 1)
    lmshrink::fail<value_error>(where, "length and windows must be >= 1, got ", length, " and ", windows);
  if (stream.size() < std::size_t(windows) * std::size_t(length))
    lmshrink::fail<value_error>(where, "the stream has ", stream.size(), " tokens; ", windows, " windows of ",
                                length, " need ", std::size_t(windows) * std::size_t(length));
  const int L = model.shape().n_layers, K = model.linear_kinds();
  const int nets_wanted = std::max(1, std::min(threads, windows));
  std::vector<std::unique_ptr<Net>> nets;
  for (int i = 0; i < nets_wanted; ++i) nets.push_back(model.net(1, length, NetMode::forward_only));
  // Distinct inputs: the layers whose linear_input is the same matrix of one net.
  std::vector<std::vector<int>> input(std::size_t(L), std::vector<int>(std::size_t(K), -1));
  std::vector<std::pair<int, int>> reader;  // a layer that reads each distinct input
  for (int l = 0; l < L; ++l) {
    std::vector<const void*> seen;
    for (int k = 0; k < K; ++k) {
      const void* in = &nets[0]->linear_input(l, k);
      int found = -1;
      for (std::size_t j = 0; j < seen.size(); ++j)
        if (seen[j] == in) found = input[std::size_t(l)][std::size_t(j)];
      if (found < 0) {
        found = int(reader.size());
        reader.push_back({l, k});
      }
      seen.push_back(in);
      input[std::size_t(l)][std::size_t(k)] = found;
    }
  }
  std::vector<GramAccumulator> grams(reader.size());
  for (std::size_t i = 0; i < reader.size(); ++i)
    grams[i].reset(model.linear(reader[i].first, reader[i].second).in_features());
  const int group = int(nets.size());
  std::vector<std::string> errors(std::max(nets.size(), grams.size()));
  for (int first = 0; first < windows; first += group) {
    const int count = std::min(group, windows - first);
    // The group's windows forward, one net each; then every accumulator adds them in order.
#ifdef _OPENMP
#pragma omp parallel for schedule(static, 1) num_threads(count) if (count > 1)
#endif
    for (int i = 0; i < count; ++i) {
      try {
        nets[std::size_t(i)]->forward(stream.data() + std::size_t(first + i) * std::size_t(length));
      } catch (const std::exception& e) {
        errors[std::size_t(i)] = e.what();
      }
    }
    for (const auto& e : errors)
      if (!e.empty()) lmshrink::fail<value_error>(where, e);
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(group) if (group > 1)
#endif
    for (int g = 0; g < int(grams.size()); ++g) {
      try {
        for (int i = 0; i < count; ++i)
          grams[std::size_t(g)].add<float>(nets[std::size_t(i)]->linear_input(reader[std::size_t(g)].first,
                                                                             reader[std::size_t(g)].second));
      } catch (const std::exception& e) {
        errors[std::size_t(g)] = e.what();
      }
    }
    for (const auto& e : errors)
      if (!e.empty()) lmshrink::fail<value_error>(where, e);
    if (progress) progress(first + count, windows);
  }
  return Calibration(std::move(grams), std::move(input));
}

}  // namespace models
LMSHRINK_NAMESPACE_END
