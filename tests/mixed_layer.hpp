#pragma once
// The layers of the trainers' gradient checks: dense (rank 0), U·V + S with pruned rows, and
// U·V only, with entries drawn by the caller.
#include <lmshrink/low_rank_sparse_linear.hpp>
#include <lmshrink/pruner.hpp>

namespace test {

/// kind 0: dense; 1: rank 2, U·V + S with the first and last rows of S pruned; 2: rank 2, U·V
/// only. `fill(matrix)` draws the entries of U, V, S (and the bias when `bias`); U is halved.
template <class S, class Fill>
lmshrink::LowRankSparseLinear<S> mixed_layer(lmshrink::Index out, lmshrink::Index in, int kind, bool bias, Fill fill) {
  lmshrink::LowRankSparseLinear<S> layer(out, in, kind == 0 ? 0 : 2, bias);
  fill(layer.U());
  fill(layer.V());
  fill(layer.S());
  if (bias) fill(layer.bias());
  layer.U() *= S(0.5);
  if (kind == 1) {
    lmshrink::RowMask mask = lmshrink::RowMask::Ones(out);
    mask[0] = 0;
    mask[out - 1] = 0;
    layer.set_row_mask(mask);
  } else if (kind == 2) {
    lmshrink::make_low_rank_only(layer);
  }
  layer.apply_masks();
  return layer;
}

}  // namespace test
