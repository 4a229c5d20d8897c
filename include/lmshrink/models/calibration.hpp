#pragma once
// Calibration statistics of every linear layer's inputs in a model, for data-aware
// initialisation (whitened SVD, S + L fits, output-energy priors):
//
//   models::Calibration calib = models::collect_calibration(teacher, stream, length, windows,
//                                                           {threads, lmshrink::openmp_team()});
//   const GramAccumulator& g = calib.at(block, kind);   // the Gram matrix of layer (block, kind)'s input
//   calib.clear();                                       // frees them once every student is initialised
//
// Layers that read the same activations share one accumulator (Llama's wq, wk and wv; w1 and w3;
// GPT-2's q, k and v): each distinct input's Gram matrix is accumulated once. The model runs
// forward-only nets (no gradients). With several threads (a ThreadTeam, as CompactLinear takes:
// lmshrink/openmp.hpp's, or your own), windows are run forward side by side and the
// accumulators are updated in parallel, each in window order: the sums are the bits of one
// thread.

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../calibration.hpp"
#include "../compact.hpp"
#include "../errors.hpp"
#include "model.hpp"

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

namespace detail_calibration {
// Runs work(i) for i in [0, n) on `parallel.threads` threads of its team (or the calling
// thread); the first error is rethrown as a value_error from `where`.
inline void for_each(int n, const CompactForwardOptions& parallel, const std::function<void(int)>& work,
                     const char* where) {
  std::vector<std::string> errors(std::size_t(std::max(n, 0)));
  struct Context {
    int n;
    const std::function<void(int)>* work;
    std::vector<std::string>* errors;
  } context{n, &work, &errors};
  const auto body = [](void* c, int thread, int count) {
    auto& ctx = *static_cast<Context*>(c);
    for (int i = thread; i < ctx.n; i += count) {
      try {
        (*ctx.work)(i);
      } catch (const std::exception& e) {
        (*ctx.errors)[std::size_t(i)] = e.what();
      }
    }
  };
  const int threads = std::min(parallel.threads, n);
  if (threads > 1) parallel.team.run(threads, body, &context);
  else body(&context, 0, 1);
  for (const auto& e : errors)
    if (!e.empty()) lmshrink::fail<value_error>(where, e);
}
}  // namespace detail_calibration

/// The Gram matrices of every linear layer's input over `windows` consecutive windows of
/// `length` tokens of `stream`, run forward by `model` (forward-only nets, one per thread).
/// `parallel`: threads and their team (threads > 1 needs a team's run). `progress(windows
/// done, windows)` after each group of windows.
inline Calibration collect_calibration(Model& model, const std::vector<int>& stream, int length, int windows,
                                       const CompactForwardOptions& parallel = {},
                                       const std::function<void(int, int)>& progress = {}) {
  static constexpr const char* where = "models::collect_calibration";
  if (length < 1 || windows < 1)
    lmshrink::fail<value_error>(where, "length and windows must be >= 1, got ", length, " and ", windows);
  if (stream.size() < std::size_t(windows) * std::size_t(length))
    lmshrink::fail<value_error>(where, "the stream has ", stream.size(), " tokens; ", windows, " windows of ",
                                length, " need ", std::size_t(windows) * std::size_t(length));
  if (parallel.threads < 1 || (parallel.threads > 1 && parallel.team.run == nullptr))
    lmshrink::fail<value_error>(where, "threads = ", parallel.threads, " needs threads >= 1 and, above 1, a "
                                "ThreadTeam with run (lmshrink/openmp.hpp's openmp_team(), or your own)");
  const int L = model.shape().n_layers, K = model.linear_kinds();
  const int group = std::max(1, std::min(parallel.threads, windows));
  std::vector<std::unique_ptr<Net>> nets;
  for (int i = 0; i < group; ++i) nets.push_back(model.net(1, length, NetMode::forward_only));
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
  for (int first = 0; first < windows; first += group) {
    const int count = std::min(group, windows - first);
    // The group's windows forward, one net each; then every accumulator adds them in order.
    detail_calibration::for_each(count, parallel, [&](int i) {
      nets[std::size_t(i)]->forward(stream.data() + std::size_t(first + i) * std::size_t(length));
    }, where);
    detail_calibration::for_each(int(grams.size()), parallel, [&](int g) {
      for (int i = 0; i < count; ++i)
        grams[std::size_t(g)].add<float>(
            nets[std::size_t(i)]->linear_input(reader[std::size_t(g)].first, reader[std::size_t(g)].second));
    }, where);
    if (progress) progress(first + count, windows);
  }
  return Calibration(std::move(grams), std::move(input));
}

}  // namespace models
LMSHRINK_NAMESPACE_END
