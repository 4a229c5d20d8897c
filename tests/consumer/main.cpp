// Builds a layer, runs one forward and checks it against the dense weight it represents.
#include <cstdio>
#include <lmshrink/lmshrink.hpp>

int main() {
  using Matrix = lmshrink::RowMatrix<float>;
  lmshrink::LowRankSparseLinear<float> layer(24, 16, 4);
  layer.U().setRandom();
  layer.V().setRandom();
  layer.S().setRandom();
  const Matrix x = Matrix::Random(5, 16);
  Matrix y(5, 24);
  auto cache = layer.make_cache(5);
  layer.forward(x, y, cache);
  const float err = (y - x * layer.to_dense().transpose()).cwiseAbs().maxCoeff();
  std::printf("lmshrink %s: %ld of %ld parameters live, forward error %.2e\n",
              LMSHRINK_VERSION_STRING, static_cast<long>(layer.live_parameters()),
              static_cast<long>(layer.dense_parameters()), static_cast<double>(err));
  return err < 1e-4f ? 0 : 1;
}
