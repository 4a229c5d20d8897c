#pragma once
// The inference form of a compressed decoder: every linear layer packed as a
// lmshrink::CompactLinear (U, V, the kept rows of S and their indices), the rest as in the
// dense model. Runs through the same decoders as the teacher (llama_decoder.hpp):
//
//   examples::CompactLlama small = examples::CompactLlama::pack(trained_weights);
//   examples::KvDecoder<examples::CompactView> gen(small);        // token by token
//   examples::SequenceDecoder<examples::CompactView> score(small);

#include <array>
#include <lmshrink/compact.hpp>
#include <vector>

#include "llama_decoder.hpp"
#include "llama_trainer.hpp"

namespace examples {

struct CompactLlama {
  lmshrink::Llama2cConfig config;
  RowMat embedding, classifier;  // classifier empty when shared
  std::vector<Vec> rms_att, rms_ffn;
  Vec rms_final;
  std::vector<std::array<lmshrink::CompactLinear<float>, kLinearKinds>> linear;

  static CompactLlama pack(const LlamaWeights<float>& w) {
    CompactLlama m;
    m.config = w.config;
    m.embedding = w.embedding;
    m.classifier = w.classifier;
    m.rms_att = w.rms_att;
    m.rms_ffn = w.rms_ffn;
    m.rms_final = w.rms_final;
    for (const auto& block : w.linear) {
      std::array<lmshrink::CompactLinear<float>, kLinearKinds> packed;
      for (int k = 0; k < kLinearKinds; ++k)
        packed[std::size_t(k)] = lmshrink::CompactLinear<float>::pack(block[std::size_t(k)]);
      m.linear.push_back(std::move(packed));
    }
    return m;
  }

  /// Stored parameters: embedding, classifier, gains and the packed layers.
  std::int64_t parameters() const {
    std::int64_t n = embedding.size() + classifier.size() + rms_final.size();
    for (std::size_t l = 0; l < linear.size(); ++l) {
      n += rms_att[l].size() + rms_ffn[l].size();
      for (const auto& layer : linear[l]) n += layer.parameters();
    }
    return n;
  }

  /// Bytes of every tensor, float32 values and int32 indices of the packed layers.
  std::int64_t bytes() const {
    std::int64_t n = 4 * (embedding.size() + classifier.size() + rms_final.size());
    for (std::size_t l = 0; l < linear.size(); ++l) {
      n += 4 * (rms_att[l].size() + rms_ffn[l].size());
      for (const auto& layer : linear[l]) n += layer.weight_bytes();
    }
    return n;
  }
};

/// A decoder view of a CompactLlama; owns the one workspace its forwards share.
class CompactView {
 public:
  CompactView(const CompactLlama& m) : m_(&m) {}  // NOLINT: implicit, a view
  const lmshrink::Llama2cConfig& config() const { return m_->config; }
  const RowMat& embedding() const { return m_->embedding; }
  const RowMat& classifier() const {
    return m_->config.shared_classifier ? m_->embedding : m_->classifier;
  }
  const Vec& rms_att(int l) const { return m_->rms_att[std::size_t(l)]; }
  const Vec& rms_ffn(int l) const { return m_->rms_ffn[std::size_t(l)]; }
  const Vec& rms_final() const { return m_->rms_final; }
  void linear(int l, int kind, const float* x, Eigen::Index n, float* y) {
    const auto& layer = m_->linear[std::size_t(l)][std::size_t(kind)];
    layer.forward(x, n, layer.in_features(), y, layer.out_features(), ws_);
  }

 private:
  const CompactLlama* m_;
  lmshrink::CompactLinear<float>::Workspace ws_;
};

}  // namespace examples
