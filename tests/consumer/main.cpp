// Builds a layer, runs one forward and checks it against the dense weight it represents; then
// packs it (some rows of S removed) with every kernel this CPU runs and checks the compact
// forward the same way, for one token and for a batch (the two kernel paths of each).
#include <algorithm>
#include <cstdio>
#include <string>
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
  const Matrix dense = layer.to_dense();
  std::string kernels;
  for (auto kernel : {lmshrink::CompactKernel::portable, lmshrink::CompactKernel::avx2,
                      lmshrink::CompactKernel::avx512}) {
    if (!lmshrink::compact_kernel_supported(kernel)) continue;
    lmshrink::PackOptions options;
    options.kernel = kernel;
    const auto compact = lmshrink::CompactLinear<float>::pack(layer, options);
    auto workspace = compact.make_workspace(7);
    for (int tokens : {1, 7}) {
      compact.forward(x.topRows(tokens), y.topRows(tokens), workspace);
      const Matrix want = x.topRows(tokens) * dense.transpose();
      err = std::max(err, (y.topRows(tokens) - want).cwiseAbs().maxCoeff());
    }
    kernels += std::string(kernels.empty() ? "" : ", ") + lmshrink::compact_kernel_name(compact.kernel());
  }
  std::printf("lmshrink %s (compiler %s): %ld of %ld parameters live, forward error %.2e (kernels %s)\n",
              LMSHRINK_VERSION_STRING, __VERSION__, static_cast<long>(layer.live_parameters()),
              static_cast<long>(layer.dense_parameters()), static_cast<double>(err), kernels.c_str());
  return err < 1e-4f ? 0 : 1;
}
