#pragma once
// One student on several threads, and on several processes. The batch is split into a fixed
// number of shards of contiguous sequences; each shard has its own lmshrink::models::Net (activations,
// caches, gradients) over the same model. step() runs forward, the caller's loss and backward
// of every shard on up to `threads` threads (OpenMP), then sums the shards' gradients in shard
// order. The result depends on the shard count and never on the thread count: one thread runs
// the same shards one after the other. One shard is exactly the model's Net.
//
// In one process the batch's gradients are shard 0's own buffers: the other shards' are added
// into them after every backward (in shard order, the bits of a separate sum). The shards
// cannot share one buffer through the backward itself: a backward adds several terms into a
// parameter's gradient (a token's embedding row, a shared classifier), and adding them onto
// another shard's sums would change the rounding with the thread schedule. So S shards hold S
// gradient copies, not S + 1. Over several processes the batch's gradients are separate buffers
// (the ranks' sums land there).
//
// With a Team of N processes (examples/runtime/team.hpp), rank r runs shards [r·S/N, (r+1)·S/N)
// of the S shards (S a multiple of N) and the shards' gradients are summed across the ranks in
// the same shard order: every rank gets the bits of the single process with S shards.
//
//   examples::ShardedTrainer net(model, batch, n, /*shards=*/2);   // or (..., 2, &team)
//   double loss = net.step(tokens, threads, [&](int s, lmshrink::models::Net& shard,
//                                               const int* shard_tokens, const Mat& logits,
//                                               Mat& dlogits, std::vector<Mat>& dblock) {
//     ... the shard's mean loss; dlogits = ∂/∂logits, dblock left empty or ∂/∂block outputs
//   });
//   net.linear_grad(l, k), net.plain_grads()   // ∂(mean loss over the batch)/∂ every parameter
//
// `s` indexes this process's shards: first_sequence(s) is the shard's first sequence in the
// whole batch.

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "../models/registry.hpp"
#include "team.hpp"

namespace examples {

class ShardedTrainer {
 public:
  /// `mode`: NetMode::training, or recompute (each shard's net keeps one block's activations).
  ShardedTrainer(Model& model, int batch, int n, int shards, Team* team = nullptr,
                 lmshrink::models::NetMode mode = lmshrink::models::NetMode::training)
      : n_(n), team_(team) {
    if (shards < 1 || shards > batch)
      lmshrink::fail<lmshrink::value_error>("ShardedTrainer", "shards must be in [1, batch = ",
                                                    batch, "], got ", shards);
    const int ranks = team ? team->size() : 1, rank = team ? team->rank() : 0;
    if (shards % ranks != 0)
      lmshrink::fail<lmshrink::value_error>("ShardedTrainer", "the ", shards, " shards of a batch cannot be split evenly over ",
                                                    ranks, " processes; use a multiple of ", ranks);
    const int own = shards / ranks;
    for (int s = 0, first = 0; s < shards; ++s) {
      const int size = batch / shards + (s < batch % shards ? 1 : 0);
      if (s >= rank * own && s < (rank + 1) * own) {
        first_.push_back(first);
        shard_.push_back(model.net(size, n, mode));
      }
      first += size;
    }
    batch_ = batch;
    distributed_ = ranks > 1;
    single_shard_ = shards == 1;
    const ModelShape shape = model.shape();
    if (distributed_) {
      linear_.resize(std::size_t(shape.n_layers));
      for (int l = 0; l < shape.n_layers; ++l)
        for (int k = 0; k < model.linear_kinds(); ++k)
          linear_[std::size_t(l)].push_back(model.linear(l, k).make_gradients());
      for (const TensorRef& t : model.plain_params()) plain_.push_back(Eigen::VectorXf::Zero(t.size));
      for (auto& g : plain_) plain_refs_.push_back({g.data(), g.size()});
    } else {
      plain_refs_ = shard_[0]->plain_grads();
    }
    for (int l = 0; l < shape.n_layers; ++l) linear_layers_.push_back(model.linear_kinds());
    const int local = int(shard_.size());
    dlogits_.resize(std::size_t(local));
    dblock_.resize(std::size_t(local));
    loss_.resize(std::size_t(local));
  }

  /// This process's shards.
  int shards() const { return int(shard_.size()); }
  /// Tokens per sequence.
  int length() const { return n_; }
  /// First sequence of this process's shard s in the batch.
  int first_sequence(int s) const { return first_[std::size_t(s)]; }
  Net& shard(int s) { return *shard_[std::size_t(s)]; }
  /// The gradients of the last step: Σ over shards, each weighted by its share of the batch.
  Layer::Gradients& linear_grad(int l, int kind) {
    return distributed_ ? linear_[std::size_t(l)][std::size_t(kind)] : shard_[0]->linear_grad(l, kind);
  }
  /// In Model::plain_params() order.
  const std::vector<TensorRef>& plain_grads() const { return plain_refs_; }

  /// Forward, loss and backward of every shard over tokens (batch·n), on up to `threads`
  /// threads; returns the batch's mean loss Σ_s (rows_s/rows)·loss_s. `loss(s, shard,
  /// shard_tokens, logits, dlogits, dblock)` returns shard s's mean loss over its rows and writes
  /// its gradients (dlogits comes sized like logits; dblock stays empty for none).
  template <class Loss>
  double step(const int* tokens, int threads, Loss&& loss) {
    const int S = shards();
    std::vector<std::string> errors(static_cast<std::size_t>(S));
#ifdef _OPENMP
#pragma omp parallel for schedule(static, 1) num_threads(std::max(1, std::min(threads, S))) if (threads > 1)
#else
    static_cast<void>(threads);  // one thread without OpenMP
#endif
    for (int s = 0; s < S; ++s) {
      try {
        auto& net = *shard_[std::size_t(s)];
        const int* own = tokens + std::size_t(first_[std::size_t(s)]) * std::size_t(n_);
        auto& dlogits = dlogits_[std::size_t(s)];
        auto& dblock = dblock_[std::size_t(s)];
        const Mat& logits = net.forward(own);
        dlogits.resize(logits.rows(), logits.cols());
        dblock.clear();
        const double share = double(net.batch()) / double(batch_);
        loss_[std::size_t(s)] = share * loss(s, net, own, logits, dlogits, dblock);
        // The batch loss is the share-weighted sum, so is its gradient.
        if (!single_shard_) {
          dlogits *= float(share);
          for (auto& d : dblock) d *= float(share);
        }
        net.zero_grad();
        net.backward(dlogits, dblock.empty() ? nullptr : &dblock);
      } catch (const std::exception& e) {
        errors[std::size_t(s)] = e.what();
      }
    }
    for (const auto& e : errors)
      if (!e.empty()) throw std::runtime_error(e);
    reduce();
    std::vector<double> losses = loss_;
    if (distributed_) losses = team_->all_gather(loss_);  // in shard order
    double total = 0;
    for (double l : losses) total += l;
    return total;
  }

 private:
  // totals = Σ_s g_s over every shard of the batch, in shard order (in one process, onto shard
  // 0's own gradients).
  void reduce() {
    if (distributed_) {
      std::vector<std::vector<ConstSlice>> contributions(shard_.size());
      std::vector<TensorRef> out;
      for (std::size_t i = 0; i < plain_.size(); ++i) out.push_back({plain_[i].data(), plain_[i].size()});
      for (auto& layer : linear_)
        for (auto& g : layer)
          for (auto* m : {&g.U, &g.V, &g.S}) out.push_back({m->data(), m->size()});
      for (std::size_t s = 0; s < shard_.size(); ++s) {
        Net& net = *shard_[s];
        for (const TensorRef& t : net.plain_grads()) contributions[s].push_back({t.data, t.size});
        for (std::size_t l = 0; l < linear_.size(); ++l)
          for (std::size_t k = 0; k < linear_[l].size(); ++k) {
            const auto& g = net.linear_grad(int(l), int(k));
            for (const auto* m : {&g.U, &g.V, &g.S}) contributions[s].push_back({m->data(), m->size()});
          }
        // Biases after the weights, in the same order on both sides.
        for (std::size_t l = 0; l < linear_.size(); ++l)
          for (std::size_t k = 0; k < linear_[l].size(); ++k)
            contributions[s].push_back({net.linear_grad(int(l), int(k)).bias.data(), net.linear_grad(int(l), int(k)).bias.size()});
      }
      for (auto& layer : linear_)
        for (auto& g : layer) out.push_back({g.bias.data(), g.bias.size()});
      team_->sum_in_order(contributions, out);
      return;
    }
    Net& first = *shard_[0];
    const std::vector<TensorRef> totals = first.plain_grads();
    for (int s = 1; s < shards(); ++s) {
      Net& net = *shard_[std::size_t(s)];
      const std::vector<TensorRef> plain = net.plain_grads();
      for (std::size_t i = 0; i < plain.size(); ++i)
        Eigen::Map<Eigen::VectorXf>(totals[i].data, totals[i].size) +=
            Eigen::Map<const Eigen::VectorXf>(plain[i].data, plain[i].size);
      for (int l = 0; l < int(linear_layers_.size()); ++l)
        for (int k = 0; k < linear_layers_[std::size_t(l)]; ++k) {
          auto& to = first.linear_grad(l, k);
          const auto& g = net.linear_grad(l, k);
          to.U += g.U;
          to.V += g.V;
          to.S += g.S;
          to.bias += g.bias;
        }
    }
  }

  int n_ = 0, batch_ = 0;
  Team* team_ = nullptr;
  bool distributed_ = false, single_shard_ = true;
  std::vector<int> first_;
  std::vector<std::unique_ptr<Net>> shard_;
  std::vector<std::vector<Layer::Gradients>> linear_;  // the batch's, over several processes
  std::vector<Eigen::VectorXf> plain_;
  std::vector<TensorRef> plain_refs_;  // the batch's plain gradients (shard 0's in one process)
  std::vector<int> linear_layers_;     // linear layers per block
  std::vector<Mat> dlogits_;
  std::vector<std::vector<Mat>> dblock_;
  std::vector<double> loss_;
};

}  // namespace examples
