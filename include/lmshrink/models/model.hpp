#pragma once
// The model tier's interface: what a compression job, a trainer, the decoders, the compact form
// and the checkpoints need from a model family. A family is one folder under lmshrink/models/
// (llama/, gpt2/) that implements these classes under its own namespace
// (lmshrink::models::llama, lmshrink::models::gpt2), with symmetric names (llama::Model,
// gpt2::Model, llama::Trainer, gpt2::Trainer, ...).
//
//   std::unique_ptr<models::Model> teacher = examples::load_model("gpt2_dir");  // or a .bin
//   auto student = teacher->truncated({0, 2, 4, 7, 9, 11});
//   auto net = student->net(batch, n);              // forward / backward over batch × n tokens
//   auto packed = student->pack();                  // CompactLinear layers
//   auto dec = packed->decoder();                   // KV cache and full-sequence forward
//   student->save("student.safetensors", "losparse", {});
//   auto back = examples::load_checkpoint("student.safetensors");

#include <Eigen/Core>
#include <cmath>
#include "../random.hpp"
#include "../compact.hpp"
#include "../errors.hpp"
#include <cstdint>
#include "../low_rank_sparse_linear.hpp"
#include "linear_blocks.hpp"
#include "net_profile.hpp"
#include <map>
#include <memory>
#include <string>
#include <vector>

LMSHRINK_NAMESPACE_BEGIN
namespace models {

using Mat = lmshrink::RowMatrix<float>;
using Layer = lmshrink::LowRankSparseLinear<float>;

/// (rows, cols) draws of N(0, sd²) from rng, row by row: the families' from-scratch weights.
inline Mat random_normal(lmshrink::SplitMix64& rng, Eigen::Index rows, Eigen::Index cols, double sd) {
  Mat m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = float(rng.normal() * sd);
  return m;
}

/// A plain parameter tensor (embedding, norm gain or bias, position table), or its gradient.
struct TensorRef {
  float* data;
  Eigen::Index size;
};

/// The sizes every family has.
struct ModelShape {
  int n_layers = 0, dim = 0, vocab_size = 0, seq_len = 0, n_heads = 0, n_kv_heads = 0;
};

/// Forward and backward of one model over `batch()` sequences of n tokens, with its own
/// activations and gradients (it trains the Model that made it, which must outlive it).
class Net {
 public:
  virtual ~Net() = default;
  virtual int batch() const = 0;
  /// Logits (batch·n, vocab).
  virtual const Mat& forward(const int* tokens) = 0;
  /// Accumulates every gradient for dlogits, plus dblock[l] = ∂loss/∂block_output(l) when given
  /// (empty matrices skipped).
  virtual void backward(const Mat& dlogits, const std::vector<Mat>* dblock) = 0;
  virtual void zero_grad() = 0;
  /// The residual stream after block l, (batch·n, dim), from the last forward.
  virtual const Mat& block_output(int l) const = 0;
  /// The input of linear layer (l, kind) in the last forward (calibration statistics).
  virtual const Mat& linear_input(int l, int kind) const = 0;
  virtual Layer::Gradients& linear_grad(int l, int kind) = 0;
  /// Gradients of Model::plain_params(), in the same order.
  virtual std::vector<TensorRef> plain_grads() = 0;
  /// Bytes its activations, attention, logits, workspaces and linear caches hold now (not the
  /// gradients).
  virtual std::int64_t buffer_bytes() const = 0;
  /// Every later forward and backward adds its phase times to *profile (null: none);
  /// net_profile.hpp.
  virtual void set_profile(NetProfile* profile) = 0;
};

/// A family's trainer as a Net. The family provides plain_tensors(its gradients), found by
/// argument-dependent lookup, listing them in its Model::plain_params() order.
template <class Trainer>
class TrainerNet final : public Net {
 public:
  template <class Weights>
  TrainerNet(Weights& w, int batch, int n, NetMode mode = NetMode::training) : t_(w, batch, n, mode) {}
  int batch() const override { return t_.batch(); }
  const Mat& forward(const int* tokens) override { return t_.forward(tokens); }
  void backward(const Mat& dlogits, const std::vector<Mat>* dblock) override { t_.backward(dlogits, dblock); }
  void zero_grad() override { t_.zero_grad(); }
  const Mat& block_output(int l) const override { return t_.block_output(l); }
  const Mat& linear_input(int l, int kind) const override { return t_.linear_input(l, kind); }
  Layer::Gradients& linear_grad(int l, int kind) override {
    check_training("Net::linear_grad");
    return t_.grads().linear.at(std::size_t(l)).at(std::size_t(kind));
  }
  std::vector<TensorRef> plain_grads() override {
    check_training("Net::plain_grads");
    return plain_tensors(t_.grads());
  }
  std::int64_t buffer_bytes() const override { return t_.buffer_bytes(); }
  void set_profile(NetProfile* profile) override { t_.set_profile(profile); }

 private:
  void check_training(const char* where) const {
    if (!net_trains(t_.mode()))
      lmshrink::fail<lmshrink::state_error>(where, "this net was made without gradients (NetMode::forward_only or "
                                                   "outputs); make it with NetMode::training or recompute");
  }
  Trainer t_;
};

/// Inference on a packed model: a KV cache for generation and a full-sequence forward.
class Decoder {
 public:
  virtual ~Decoder() = default;
  /// Logits (vocab) of `token` at `pos`, given the positions before it.
  virtual const Eigen::VectorXf& forward_token(int token, int pos) = 0;
  /// Logits (n, vocab) of tokens at positions 0..n−1.
  virtual const Mat& forward_sequence(const int* tokens, int n) = 0;
};

/// A model with every linear layer packed as a lmshrink::CompactLinear.
class Packed {
 public:
  virtual ~Packed() = default;
  /// A decoder over this packed model (which must outlive it); `options` (threads and their
  /// team) for every product.
  virtual std::unique_ptr<Decoder> decoder(const lmshrink::CompactForwardOptions& options = {}) const = 0;
  virtual std::int64_t parameters() const = 0;
  /// Bytes of every stored tensor (float32 values and int32 indices), and of the indices alone.
  virtual std::int64_t bytes() const = 0;
  virtual std::int64_t index_bytes() const = 0;
  /// The form of every linear layer, block by block in the family's order (not the classifier).
  virtual std::vector<lmshrink::CompactForm> linear_forms() const = 0;
};

/// The trainable weights of one model of some family: a teacher or a student.
class Model {
 public:
  virtual ~Model() = default;
  virtual std::string family() const = 0;  // "llama", "gpt2"
  virtual ModelShape shape() const = 0;
  /// Linear layers per block, and the pruner's name of each ("layers.3.attention.wq").
  virtual int linear_kinds() const = 0;
  virtual std::string linear_name(int l, int kind) const = 0;
  /// Whether linear layer `kind` belongs to attention (else to the MLP).
  virtual bool attention_linear(int kind) const = 0;
  virtual Layer& linear(int l, int kind) = 0;
  const Layer& linear(int l, int kind) const { return const_cast<Model*>(this)->linear(l, kind); }
  /// Every parameter that is not a linear layer's (embeddings, norms), in a fixed order.
  virtual std::vector<TensorRef> plain_params() = 0;
  virtual std::unique_ptr<Model> clone() const = 0;
  /// The model made of blocks `keep` (in order), for truncation.
  virtual std::unique_ptr<Model> truncated(const std::vector<int>& keep) const = 0;
  /// A dense model of this family trained from nothing: the same embedding width, blocks and
  /// attention, its linear layers `linear_ratio` of this model's (the FFN narrowed to fit), and
  /// random weights from `seed`. The floor a compression method has to beat.
  virtual std::unique_ptr<Model> from_scratch(double linear_ratio, std::uint64_t seed) const = 0;
  /// A net over `batch` sequences of n tokens that trains this model (NetMode::training, or
  /// recompute: a block's activations at a time, for about one more forward), or only runs its
  /// forward (NetMode::forward_only, outputs: a teacher's; no gradients).
  virtual std::unique_ptr<Net> net(int batch, int n, NetMode mode = NetMode::training) = 0;
  /// The bytes a net(batch, n, mode) allocates for activations, attention, logits and
  /// workspaces (not its gradients, nor each linear layer's cache: 2 · batch · n · rank values,
  /// and 64 · (in + batch · n) where pruning scattered the live rows of S): for planning memory
  /// before any is allocated.
  virtual std::int64_t net_activation_bytes(int batch, int n, NetMode mode) const = 0;
  /// Every linear layer packed with `options` (lmshrink::PackOptions: the form, by modelled cost
  /// or by time on this machine, and the kernels); pack() as the families pack by default.
  virtual std::unique_ptr<Packed> pack(const lmshrink::PackOptions& options) const = 0;
  std::unique_ptr<Packed> pack() const { return pack(lmshrink::fastest_pack()); }
  /// A decoder over this model's own layers (KV cache and full sequence), the one forward its
  /// family trains with: a teacher is scored and sampled by the layers that give the
  /// distillation targets. It reads this model, which must outlive it and not change.
  virtual std::unique_ptr<Decoder> decoder() const = 0;
  /// lmshrink's self-describing checkpoint (dense layers as such, compressed ones by
  /// lmshrink::put_compressed_layer), atomically.
  virtual void save(const std::string& path, const std::string& method,
                    const std::map<std::string, std::string>& extra) const = 0;
  /// The dense model in its family's interchange format, for other programs: returns the path
  /// written (`stem` plus ".bin" for llama2.c, or `stem` + "_hf" for a Hugging Face directory).
  virtual std::string export_dense(const std::string& stem) const = 0;
  /// Stored parameters; live parameters of the linear layers; their dense count.
  virtual std::int64_t parameters() const = 0;
  virtual std::int64_t linear_parameters() const = 0;
  virtual std::int64_t linear_dense_parameters() const = 0;
};

/// Text ↔ tokens for a family's tokenizer, with its story conventions.
class TextCodec {
 public:
  virtual ~TextCodec() = default;
  virtual int vocab_size() const = 0;
  /// The tokens of one story as the model saw them in training (start token included).
  virtual std::vector<int> encode_story(const std::string& story) const = 0;
  virtual std::string decode(const std::vector<int>& ids) const = 0;
  /// The token a story starts with, and the one that ends it when generating.
  virtual int story_start() const = 0;
  virtual int story_end() const = 0;
  /// Where the tokenizer came from and what it is, for programs to print.
  virtual std::string description() const { return ""; }
};

/// The share of the teacher's linear weights a student keeps, live / teacher_linear, checked
/// against its nominal ratio: a state_error when they are more than `tolerance` (relative) apart,
/// so no report can state a ratio the model does not have.
inline double checked_linear_ratio(const std::string& name, std::int64_t live,
                                   std::int64_t teacher_linear, double nominal,
                                   double tolerance = 0.01) {
  static constexpr const char* where = "checked_linear_ratio";
  if (teacher_linear <= 0 || live < 0 || !(nominal > 0))
    lmshrink::fail<lmshrink::value_error>(where, name, ": counts must be positive, got ", live,
                                                  " of ", teacher_linear, " at nominal ", nominal);
  const double kept = double(live) / double(teacher_linear);
  if (!(std::abs(kept - nominal) <= tolerance * nominal))
    lmshrink::fail<lmshrink::state_error>(
        where, name, " keeps ", kept, " of the teacher's linear weights but its nominal ratio is ",
        nominal, ": more than ", tolerance * 100, " % apart, so it is not reported");
  return kept;
}

}  // namespace models
LMSHRINK_NAMESPACE_END
