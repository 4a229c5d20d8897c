#pragma once
// One student on several threads. The batch is split into a fixed number of shards of
// contiguous sequences; each shard has its own examples::Net (activations, caches, gradients)
// over the same model. step() runs forward, the caller's loss and backward of every shard on up
// to `threads` threads (OpenMP), then sums the shards' gradients in shard order. The result
// depends on the shard count and never on the thread count: one thread runs the same shards one
// after the other. One shard is exactly the model's Net.
//
//   examples::ShardedTrainer net(model, batch, n, /*shards=*/2);
//   double loss = net.step(tokens, threads, [&](int s, examples::Net& shard,
//                                               const int* shard_tokens, const Mat& logits,
//                                               Mat& dlogits, std::vector<Mat>& dblock) {
//     ... the shard's mean loss; dlogits = ∂/∂logits, dblock left empty or ∂/∂block outputs
//   });
//   net.linear_grad(l, k), net.plain_grads()   // ∂(mean loss over the batch)/∂ every parameter

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "../models/model.hpp"

namespace examples {

class ShardedTrainer {
 public:
  ShardedTrainer(Model& model, int batch, int n, int shards) : n_(n) {
    if (shards < 1 || shards > batch)
      lmshrink::detail::fail<lmshrink::value_error>("ShardedTrainer", "shards must be in [1, batch = ",
                                                    batch, "], got ", shards);
    for (int s = 0, first = 0; s < shards; ++s) {
      const int size = batch / shards + (s < batch % shards ? 1 : 0);
      first_.push_back(first);
      shard_.push_back(model.net(size, n));
      first += size;
    }
    batch_ = batch;
    const ModelShape shape = model.shape();
    linear_.resize(std::size_t(shape.n_layers));
    for (int l = 0; l < shape.n_layers; ++l)
      for (int k = 0; k < model.linear_kinds(); ++k) linear_[std::size_t(l)].push_back(model.linear(l, k).make_gradients());
    for (const TensorRef& t : model.plain_params()) plain_.push_back(Eigen::VectorXf::Zero(t.size));
    dlogits_.resize(std::size_t(shards));
    dblock_.resize(std::size_t(shards));
    loss_.resize(std::size_t(shards));
  }

  int shards() const { return int(shard_.size()); }
  /// First sequence of shard s in the batch.
  int first_sequence(int s) const { return first_[std::size_t(s)]; }
  Net& shard(int s) { return *shard_[std::size_t(s)]; }
  /// The gradients of the last step: Σ over shards, each weighted by its share of the batch.
  Layer::Gradients& linear_grad(int l, int kind) { return linear_[std::size_t(l)][std::size_t(kind)]; }
  /// In Model::plain_params() order.
  std::vector<Eigen::VectorXf>& plain_grads() { return plain_; }

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
        if (S > 1) {
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
    double total = 0;
    for (double l : loss_) total += l;  // in shard order
    return total;
  }

 private:
  // totals = Σ_s g_s, in shard order (one shard: a copy, so that 1 shard is the Net exactly).
  void reduce() {
    for (int s = 0; s < shards(); ++s) {
      Net& net = *shard_[std::size_t(s)];
      const auto add = [s](auto& to, const auto& from) {
        if (s == 0) to = from;
        else to += from;
      };
      const std::vector<TensorRef> plain = net.plain_grads();
      for (std::size_t i = 0; i < plain.size(); ++i)
        add(plain_[i], Eigen::Map<const Eigen::VectorXf>(plain[i].data, plain[i].size));
      for (std::size_t l = 0; l < linear_.size(); ++l)
        for (std::size_t k = 0; k < linear_[l].size(); ++k) {
          const auto& g = net.linear_grad(int(l), int(k));
          add(linear_[l][k].U, g.U);
          add(linear_[l][k].V, g.V);
          add(linear_[l][k].S, g.S);
          add(linear_[l][k].bias, g.bias);
        }
    }
  }

  int n_ = 0, batch_ = 0;
  std::vector<int> first_;
  std::vector<std::unique_ptr<Net>> shard_;
  std::vector<std::vector<Layer::Gradients>> linear_;
  std::vector<Eigen::VectorXf> plain_;
  std::vector<Mat> dlogits_;
  std::vector<std::vector<Mat>> dblock_;
  std::vector<double> loss_;
};

}  // namespace examples
