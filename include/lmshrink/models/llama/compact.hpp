#pragma once
// The inference form of a compressed decoder: every linear layer packed, in the form of least
// modelled cost (lmshrink::PackForm::fastest), as a
// lmshrink::CompactLinear (U, V, the kept rows of S and their indices), the rest as in the
// dense model. Runs through the same decoders as the teacher (decoder.hpp):
//
//   models::Compact small = models::Compact::pack(trained_weights);
//   models::KvDecoder<models::CompactView> gen(small);        // token by token
//   models::SequenceDecoder<models::CompactView> score(small);
//
// The teacher itself packs the same way (Compact::pack_dense: rank 0, every row kept), so
// that a speed ratio between teacher and student compares weights, not code paths. The
// classifier is packed too (dense, or low-rank + sparse for a speed study), for generation.

#include <array>
#include "../../compact.hpp"
#include "../../pruner.hpp"
#include <vector>

#include "decoder.hpp"
#include "trainer.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {
namespace llama {

struct Compact {
  Config config;
  RowMat embedding, classifier;  // classifier empty when shared
  std::vector<Vec> rms_att, rms_ffn;
  Vec rms_final;
  std::vector<std::array<lmshrink::CompactLinear<float>, kLinearKinds>> linear;
  /// The classifier (vocab, dim) packed for generation; a copy of the embedding when shared, so
  /// not counted by parameters() and bytes() unless it was compressed (classifier_compressed).
  lmshrink::CompactLinear<float> packed_classifier;
  bool classifier_compressed = false;

  /// `options`: the form each linear layer is packed in (lmshrink::PackOptions; the least
  /// modelled cost for one token per call by default, lmshrink::PackForm::timed to time them).
  static Compact pack(const Weights<float>& w, const lmshrink::PackOptions& options = lmshrink::fastest_pack()) {
    Compact m;
    m.config = w.config;
    m.embedding = w.embedding;
    m.classifier = w.classifier;
    m.rms_att = w.rms_att;
    m.rms_ffn = w.rms_ffn;
    m.rms_final = w.rms_final;
    m.linear = pack_blocks<lmshrink::CompactLinear<float>, kLinearKinds>(w.linear, options);
    m.pack_classifier();
    return m;
  }

  /// A dense model in the same form: every matrix packed as rank 0 with every row kept.
  static Compact pack_dense(const DenseModel& model) {
    Compact m;
    m.config = model.config;
    m.embedding = model.token_embedding;
    if (!model.config.shared_classifier) m.classifier = model.wcls;
    m.rms_att = model.rms_att;
    m.rms_ffn = model.rms_ffn;
    m.rms_final = model.rms_final;
    for (int l = 0; l < model.config.n_layers; ++l) {
      const std::size_t L = std::size_t(l);
      const RowMat* src[kLinearKinds] = {&model.wq[L], &model.wk[L], &model.wv[L], &model.wo[L],
                                         &model.w1[L], &model.w2[L], &model.w3[L]};
      std::array<lmshrink::CompactLinear<float>, kLinearKinds> packed;
      for (int k = 0; k < kLinearKinds; ++k) {
        const lmshrink::Vector<float>* b = qkv_bias_of(model, l, k);
        auto layer = lmshrink::make_dense_layer<float>(*src[k], b != nullptr);
        if (b != nullptr) layer.bias() = *b;
        packed[std::size_t(k)] = lmshrink::CompactLinear<float>::pack(layer);
      }
      m.linear.push_back(std::move(packed));
    }
    m.pack_classifier();
    return m;
  }

  /// Packs the classifier densely from `embedding` or `classifier`.
  void pack_classifier() {
    const RowMat& w = config.shared_classifier ? embedding : classifier;
    packed_classifier = lmshrink::CompactLinear<float>::pack(lmshrink::make_dense_layer<float>(w));
    classifier_compressed = false;
  }

  /// Stored parameters: embedding, classifier, gains and the packed layers.
  std::int64_t parameters() const {
    std::int64_t n = embedding.size() + rms_final.size() +
                     (classifier_compressed ? packed_classifier.parameters() : classifier.size());
    for (std::size_t l = 0; l < linear.size(); ++l) {
      n += rms_att[l].size() + rms_ffn[l].size();
      for (const auto& layer : linear[l]) n += layer.parameters();
    }
    return n;
  }

  /// Bytes of every tensor, float32 values and int32 indices of the packed layers.
  std::int64_t bytes() const {
    std::int64_t n = 4 * (embedding.size() + rms_final.size()) +
                     (classifier_compressed ? packed_classifier.weight_bytes()
                                            : 4 * classifier.size());
    for (std::size_t l = 0; l < linear.size(); ++l) {
      n += 4 * (rms_att[l].size() + rms_ffn[l].size());
      for (const auto& layer : linear[l]) n += layer.weight_bytes();
    }
    return n;
  }
  /// The part of bytes() that is the packed layers' int32 indices.
  std::int64_t index_bytes() const {
    std::int64_t n = classifier_compressed ? packed_classifier.index_bytes() : 0;
    for (const auto& block : linear)
      for (const auto& layer : block) n += layer.index_bytes();
    return n;
  }
};

/// A decoder view of a Compact; owns the one workspace its forwards share.
/// `options.threads` > 1 runs every product on that many threads of `options.team` (the same
/// result for any count).
class CompactView {
 public:
  CompactView(const Compact& m,  // NOLINT: implicit, a view
              const lmshrink::CompactForwardOptions& options = {})
      : m_(&m), options_(options) {}
  const Config& config() const { return m_->config; }
  const RowMat& embedding() const { return m_->embedding; }
  const RowMat& classifier() const {
    return m_->config.shared_classifier ? m_->embedding : m_->classifier;
  }
  const Vec& rms_att(int l) const { return m_->rms_att[std::size_t(l)]; }
  const Vec& rms_ffn(int l) const { return m_->rms_ffn[std::size_t(l)]; }
  const Vec& rms_final() const { return m_->rms_final; }
  void linear(int l, int kind, const float* x, Eigen::Index n, float* y) {
    const auto& layer = m_->linear[std::size_t(l)][std::size_t(kind)];
    layer.forward(x, n, layer.in_features(), y, layer.out_features(), ws_, options_);
  }
  /// logits (vocab) = classifier · x (dim), for one token.
  void classify(const float* x, float* logits) {
    const auto& c = m_->packed_classifier;
    c.forward(x, 1, c.in_features(), logits, c.out_features(), ws_, options_);
  }

 private:
  const Compact* m_;
  lmshrink::CompactForwardOptions options_;
  lmshrink::CompactLinear<float>::Workspace ws_;
};

// The decoders of a packed and of a trained model, compiled once by lmshrink::instances
// (src/instances/models/llama_decoders.cpp, docs/build.md) when LMSHRINK_EXTERN_TEMPLATES is set.
#ifdef LMSHRINK_EXTERN_TEMPLATES
extern template class KvDecoder<CompactView>;
extern template class SequenceDecoder<CompactView>;
extern template class KvDecoder<WeightsView>;
extern template class SequenceDecoder<WeightsView>;
#endif

}  // namespace llama
}  // namespace models
LMSHRINK_NAMESPACE_END
