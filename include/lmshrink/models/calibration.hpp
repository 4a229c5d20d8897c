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
// thread. The accumulators are split among the threads by their cost (balanced_owners).

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

/// Which of `threads` threads does each item, so that the busiest thread's total cost is small:
/// items in decreasing cost (ties by index), each to the least loaded thread so far (ties: the
/// lowest). The same owners for the same inputs. Gram updates cost in² each: round-robin would
/// put every FFN down-projection's input (4·dim wide) on one of two threads.
inline std::vector<int> balanced_owners(const std::vector<double>& costs, int threads) {
  threads = std::max(1, threads);
  std::vector<int> order(costs.size()), owner(costs.size(), 0);
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = int(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return costs[std::size_t(a)] > costs[std::size_t(b)]; });
  std::vector<double> load(std::size_t(threads), 0.0);
  for (int i : order) {
    const auto least = std::min_element(load.begin(), load.end()) - load.begin();
    owner[std::size_t(i)] = int(least);
    load[std::size_t(least)] += costs[std::size_t(i)];
  }
  return owner;
}

/// The busiest thread's total cost under balanced_owners.
inline double balanced_makespan(const std::vector<double>& costs, int threads) {
  const std::vector<int> owner = balanced_owners(costs, threads);
  std::vector<double> load(std::size_t(std::max(1, threads)), 0.0);
  for (std::size_t i = 0; i < costs.size(); ++i) load[std::size_t(owner[i])] += costs[i];
  return load.empty() ? 0.0 : *std::max_element(load.begin(), load.end());
}

namespace detail_calibration {
// Runs work(i) for i in [0, n) on `parallel.threads` threads of its team (or the calling
// thread), split by balanced_owners when `costs` (n of them) are given, else round-robin; the
// first error is rethrown as a value_error from `where`.
inline void for_each(int n, const CompactForwardOptions& parallel, const std::function<void(int)>& work,
                     const char* where, const std::vector<double>* costs = nullptr) {
  std::vector<std::string> errors(std::size_t(std::max(n, 0)));
  const int threads = std::min(parallel.threads, n);
  struct Context {
    int n;
    const std::function<void(int)>* work;
    std::vector<std::string>* errors;
    const std::vector<double>* costs;
    int threads;
    std::vector<int> owner;  // for `threads`; a team that runs fewer recomputes its own
  } context{n, &work, &errors, costs, threads, costs ? balanced_owners(*costs, threads) : std::vector<int>{}};
  const auto body = [](void* c, int thread, int count) {
    auto& ctx = *static_cast<Context*>(c);
    const auto run = [&](int i) {
      try {
        (*ctx.work)(i);
      } catch (const std::exception& e) {
        (*ctx.errors)[std::size_t(i)] = e.what();
      }
    };
    if (!ctx.costs) {
      for (int i = thread; i < ctx.n; i += count) run(i);
      return;
    }
    const std::vector<int> fewer = count == ctx.threads ? std::vector<int>{} : balanced_owners(*ctx.costs, count);
    const std::vector<int>& owner = count == ctx.threads ? ctx.owner : fewer;
    for (int i = 0; i < ctx.n; ++i)
      if (owner[std::size_t(i)] == thread) run(i);
  };
  if (threads > 1) parallel.team.run(threads, body, &context);
  else body(&context, 0, 1);
  for (const auto& e : errors)
    if (!e.empty()) lmshrink::fail<value_error>(where, e);
}
}  // namespace detail_calibration

/// The Gram matrices of every linear layer's input over `windows` consecutive windows of
/// `length` tokens of `stream`, run forward by `model` (forward-only nets, one per thread).
/// `parallel`: threads and their team (threads > 1 needs a team's run). `progress(windows
/// done, windows)` after each group of windows. `windows_at_once` (0: one per thread) caps the
/// nets, each holding a window's every activation (5.7 GB for a 1.1B model at 2048 tokens):
/// fewer nets, the same sums.
inline Calibration collect_calibration(Model& model, const std::vector<int>& stream, int length, int windows,
                                       const CompactForwardOptions& parallel = {},
                                       const std::function<void(int, int)>& progress = {}, int windows_at_once = 0) {
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
  if (windows_at_once < 0)
    lmshrink::fail<value_error>(where, "windows_at_once must be >= 0 (0: one per thread), got ", windows_at_once);
  const int group = std::max(1, std::min(windows_at_once > 0 ? windows_at_once : parallel.threads, windows));
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
  std::vector<double> gram_cost(reader.size());  // an update costs in² per row
  for (std::size_t i = 0; i < reader.size(); ++i) {
    const Index in = model.linear(reader[i].first, reader[i].second).in_features();
    grams[i].reset(in);
    gram_cost[i] = double(in) * double(in);
  }
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
    }, where, &gram_cost);
    if (progress) progress(first + count, windows);
  }
  return Calibration(std::move(grams), std::move(input));
}

}  // namespace models
LMSHRINK_NAMESPACE_END
