// Builds a layer, runs one forward and checks it against the dense weight it represents; then
// packs it (some rows of S removed) and checks the compact forward the same way, for one token
// and for a batch (the two kernel paths).
#include <algorithm>
#include <cstdio>
#include <lmshrink/compact.hpp>  // only what it checks: the umbrella is the find_package consumer's
#include <lmshrink/low_rank_sparse_linear.hpp>
#include <lmshrink/version.hpp>

int main() {
  using Matrix = lmshrink::RowMatrix<float>;
  lmshrink::LowRankSparseLinear<float> layer(24, 16, 4);
  layer.U().setRandom();
  layer.V().setRandom();
  layer.S().setRandom();
  const Matrix x = Matrix::Random(7, 16);
  Matrix y(7, 24);
  auto cache = layer.make_cache(7);
  layer.forward(x, y, cache);
  float err = (y - x * layer.to_dense().transpose()).cwiseAbs().maxCoeff();

  lmshrink::RowMask keep = lmshrink::RowMask::Ones(24);
  for (int i = 0; i < 24; i += 3) keep[i] = 0;
  layer.set_row_mask(keep);
  const auto compact = lmshrink::CompactLinear<float>::pack(layer);
  auto workspace = compact.make_workspace(7);
  const Matrix dense = layer.to_dense();
  for (int tokens : {1, 7}) {
    compact.forward(x.topRows(tokens), y.topRows(tokens), workspace);
    const Matrix want = x.topRows(tokens) * dense.transpose();
    err = std::max(err, (y.topRows(tokens) - want).cwiseAbs().maxCoeff());
  }
  std::printf("lmshrink %s (compiler %s): %ld of %ld parameters live, forward error %.2e (%s)\n",
              LMSHRINK_VERSION_STRING, __VERSION__, static_cast<long>(layer.live_parameters()),
              static_cast<long>(layer.dense_parameters()), static_cast<double>(err),
              lmshrink::compact_kernel_name(compact.kernel()));
  return err < 1e-4f ? 0 : 1;
}
