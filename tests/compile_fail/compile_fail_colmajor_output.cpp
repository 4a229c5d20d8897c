// Must not compile: a writable output must be row-major; a column-major matrix cannot bind to
// the writable Ref (a silent copy would lose the result).
#include <lmshrink/low_rank_sparse_linear.hpp>

int main() {
  lmshrink::LowRankSparseLinear<float> layer(4, 3, 2);
  lmshrink::RowMatrix<float> x = lmshrink::RowMatrix<float>::Zero(2, 3);
  Eigen::MatrixXf y(2, 4);  // column-major
  auto cache = layer.make_cache(2);
  layer.forward(x, y, cache);
  return 0;
}
