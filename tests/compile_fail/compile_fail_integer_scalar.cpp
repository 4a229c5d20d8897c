// Must not compile: the layer is only defined for floating-point scalars.
#include <lmshrink/low_rank_sparse_linear.hpp>

int main() {
  lmshrink::LowRankSparseLinear<int> layer(4, 4, 2);
  return static_cast<int>(layer.rank());
}
