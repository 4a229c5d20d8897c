#pragma once
// One student on several threads. The batch is split into a fixed number of shards of
// contiguous sequences; each shard has its own LlamaTrainer (activations, caches, gradients)
// over the same weights. step() runs forward, the caller's loss and backward of every shard on
// up to `threads` threads (OpenMP), then sums the shards' gradients in shard order. The result
// depends on the shard count and never on the thread count: one thread runs the same shards one
// after the other. One shard is exactly LlamaTrainer.
//
//   examples::ShardedTrainer<float> net(w, batch, n, /*shards=*/2);
//   double loss = net.step(tokens, threads, [&](int s, examples::LlamaTrainer<float>& shard,
//                                               const int* shard_tokens, const Mat& logits,
//                                               Mat& dlogits, std::vector<Mat>& dblock) {
//     ... the shard's mean loss; dlogits = ∂/∂logits, dblock left empty or ∂/∂block outputs
//   });
//   net.grads();   // ∂(mean loss over the batch)/∂ every parameter, for the optimizer

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "llama_trainer.hpp"

namespace examples {

template <class Scalar>
class ShardedTrainer {
 public:
  using W = LlamaWeights<Scalar>;
  using Mat = typename W::Mat;

  ShardedTrainer(W& weights, int batch, int n, int shards) : total_(weights), n_(n) {
    if (shards < 1 || shards > batch)
      lmshrink::detail::fail<lmshrink::value_error>("ShardedTrainer", "shards must be in [1, batch = ",
                                                    batch, "], got ", shards);
    for (int s = 0, first = 0; s < shards; ++s) {
      const int size = batch / shards + (s < batch % shards ? 1 : 0);
      first_.push_back(first);
      shard_.push_back(std::make_unique<LlamaTrainer<Scalar>>(weights, size, n));
      first += size;
    }
    batch_ = batch;
    dlogits_.resize(std::size_t(shards));
    dblock_.resize(std::size_t(shards));
    loss_.resize(std::size_t(shards));
  }

  int shards() const { return int(shard_.size()); }
  /// First sequence of shard s in the batch.
  int first_sequence(int s) const { return first_[std::size_t(s)]; }
  LlamaTrainer<Scalar>& shard(int s) { return *shard_[std::size_t(s)]; }
  /// The gradients of the last step: Σ over shards, each weighted by its share of the batch.
  LlamaGrads<Scalar>& grads() { return total_; }

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
          dlogits *= Scalar(share);
          for (auto& d : dblock) d *= Scalar(share);
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
  // total_ = Σ_s g_s, in shard order (one shard: a copy, so that 1 shard is LlamaTrainer exactly).
  void reduce() {
    for (int s = 0; s < shards(); ++s) {
      const auto& g = shard_[std::size_t(s)]->grads();
      const auto add = [s](auto& to, const auto& from) {
        if (s == 0) to = from;
        else to += from;
      };
      add(total_.embedding, g.embedding);
      add(total_.classifier, g.classifier);
      add(total_.rms_final, g.rms_final);
      for (std::size_t l = 0; l < g.linear.size(); ++l) {
        add(total_.rms_att[l], g.rms_att[l]);
        add(total_.rms_ffn[l], g.rms_ffn[l]);
        for (std::size_t k = 0; k < g.linear[l].size(); ++k) {
          add(total_.linear[l][k].U, g.linear[l][k].U);
          add(total_.linear[l][k].V, g.linear[l][k].V);
          add(total_.linear[l][k].S, g.linear[l][k].S);
          add(total_.linear[l][k].bias, g.linear[l][k].bias);
        }
      }
    }
  }

  LlamaGrads<Scalar> total_;
  int n_ = 0, batch_ = 0;
  std::vector<int> first_;
  std::vector<std::unique_ptr<LlamaTrainer<Scalar>>> shard_;
  std::vector<Mat> dlogits_;
  std::vector<std::vector<Mat>> dblock_;
  std::vector<double> loss_;
};

}  // namespace examples
