// The installed package's check: every header the umbrella includes is installed and compiles,
// and the version macros agree with the package's version (the kernels are checked by main.cpp
// in the add_subdirectory consumer, with -march=native); with MPI, the package's mpi component.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <lmshrink/lmshrink.hpp>
#include <lmshrink/models/attention.hpp>
#include <lmshrink/models/norms.hpp>
#ifdef CONSUMER_WITH_MPI
#include <lmshrink/mpi.hpp>
#endif

int main(int argc, char** argv) {
  lmshrink::LowRankSparseLinear<float> layer(3, 2, 1);
#ifdef CONSUMER_WITH_MPI
  // One process (no launcher): the average over one rank is the value itself.
  MPI_Init(&argc, &argv);
  lmshrink::mpi::Reducer<float> reducer;
  std::vector<lmshrink::mpi::Tensor<float>> grads;
  auto g = layer.make_gradients();
  g.U.setConstant(2.f);
  lmshrink::mpi::append_gradients(grads, g);
  reducer.average(grads);
  const bool mpi_ok = reducer.size() >= 1 && g.U(0, 0) == 2.f;
  MPI_Finalize();
  std::printf("lmshrink::mpi component: %s\n", mpi_ok ? "ok" : "wrong average");
  if (!mpi_ok) return 1;
#else
  (void)argc;
  (void)argv;
#endif
  // The model tier: RMSNorm of (3, 4) with unit gains leaves each row with mean square ~1.
  lmshrink::RowMatrix<float> x(1, 2), y(1, 2);
  x << 3.f, 4.f;
  lmshrink::Vector<float> gain = lmshrink::Vector<float>::Ones(2), r(1);
  lmshrink::models::rms_norm_forward<float>(x, gain, 0.0, y, r);
  const bool models_ok = std::abs(y.squaredNorm() / 2 - 1.f) < 1e-6f;
  std::printf("lmshrink %s (compiler %s): installed headers compile, %ld dense parameters, models tier %s\n",
              LMSHRINK_VERSION_STRING, __VERSION__, static_cast<long>(layer.dense_parameters()),
              models_ok ? "ok" : "wrong RMSNorm");
  return std::strcmp(LMSHRINK_VERSION_STRING, CONSUMER_EXPECTED_VERSION) == 0 && models_ok ? 0 : 1;
}
