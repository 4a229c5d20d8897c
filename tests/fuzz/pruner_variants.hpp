#pragma once
// The pruners whose saved states the pruner-state fuzz target parses: the first input byte picks
// one of these option sets (granularity, mask mode, uncertainty, score kind), over two small
// layers. The corpus generator saves a state of each.
#include <lmshrink/pruner.hpp>
#include <string>
#include <vector>

namespace fuzz {

constexpr int kPrunerVariants = 8;

inline lmshrink::PrunerOptions pruner_options(int variant) {
  lmshrink::PrunerOptions o;
  o.schedule = {12, 1, 2, 0.5, 2};
  o.granularity = variant % 3 == 0   ? lmshrink::Granularity::rows
                  : variant % 3 == 1 ? lmshrink::Granularity::columns
                                     : lmshrink::Granularity::elements;
  o.mode = (variant / 3) % 2 ? lmshrink::MaskMode::persistent : lmshrink::MaskMode::reference;
  if (variant >= 6) o.importance.beta2 = 0.9;  // uncertainty on
  if (variant == 7) o.importance.kind = lmshrink::ImportanceKind::movement;
  return o;
}

/// Two layers, their gradients and a pruner over them, for one variant.
struct PrunerRig {
  std::vector<lmshrink::LowRankSparseLinear<float>> layers;
  std::vector<lmshrink::LowRankSparseLinear<float>::Gradients> grads;
  lmshrink::Pruner<float> pruner;

  explicit PrunerRig(int variant) : pruner(pruner_options(variant)) {
    layers.emplace_back(3, 4, 1);
    layers.emplace_back(2, 5, 0);
    for (auto& l : layers) {
      for (lmshrink::Index i = 0; i < l.S().size(); ++i) l.S().data()[i] = 0.25f * float(i % 7) - 0.5f;
      grads.push_back(l.make_gradients());
      for (lmshrink::Index i = 0; i < grads.back().S.size(); ++i)
        grads.back().S.data()[i] = 0.125f * float(i % 5) - 0.25f;
    }
    pruner.add("layers.0.wq", layers[0], grads[0]);
    pruner.add("layers.0.w2", layers[1], grads[1]);
  }
};

}  // namespace fuzz
