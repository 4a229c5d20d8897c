// lmshrink/mpi.hpp in a user's own loop: the seven weight matrices of one stories260K block
// compressed with LoSparse (SVD init, then fine-tuning to reproduce each dense matrix's outputs
// while the pruner removes rows of S), data parallel. Every rank draws its own inputs; the
// gradients are averaged through one fused buffer per step; every rank runs the pruner, and the
// pruners are compared at every mask step. Inputs are synthetic Gaussian vectors.
//
//   mpirun -np 2 lmshrink_data_parallel [--model stories260K.bin] [--layer 0] [--steps 200]

#include <lmshrink/models/llama/llama2c.hpp>
#include <cstdio>
#include <cstdlib>
#include <lmshrink/mpi.hpp>
#include <lmshrink/optim.hpp>
#include <lmshrink/svd_init.hpp>
#include <string>
#include <vector>

#ifndef LMSHRINK_DATA_DIR
#define LMSHRINK_DATA_DIR "examples/data"
#endif

using Matrix = lmshrink::RowMatrix<float>;
using Layer = lmshrink::LowRankSparseLinear<float>;

static int run(int argc, char** argv, int rank, int ranks) {
  std::string path = LMSHRINK_DATA_DIR "/stories260K.bin";
  int block = 0, steps = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--model") path = argv[i + 1];
    else if (a == "--layer") block = std::atoi(argv[i + 1]);
    else if (a == "--steps") steps = std::atoi(argv[i + 1]);
    else lmshrink::fail<lmshrink::value_error>("lmshrink_data_parallel", "unknown option ", a);
  }
  auto model = lmshrink::models::llama::read_llama2c(path);
  std::vector<lmshrink::NamedWeight> weights;
  for (auto& w : model.linear_weights())
    if (w.name.rfind("layers." + std::to_string(block) + ".", 0) == 0) weights.push_back(w);
  if (weights.empty())
    lmshrink::fail<lmshrink::value_error>("lmshrink_data_parallel", "no block ", block, " in ", path);
  const std::size_t n = weights.size();

  std::vector<Layer> layers(n);
  std::vector<Layer::Gradients> grads;
  std::vector<Layer::Cache> caches;
  std::vector<lmshrink::AdamW<float>> adams;
  lmshrink::PrunerOptions opt;
  opt.schedule = {steps, steps / 10, steps / 5, 0.3, 10};
  lmshrink::Pruner<float> pruner(opt);
  grads.reserve(n);  // the pruner keeps references to the layers and their gradients
  for (std::size_t i = 0; i < n; ++i) {
    lmshrink::SvdInitOptions svd;
    svd.ratio = 0.2;
    lmshrink::svd_init<float>(*weights[i].matrix, layers[i], svd);
    grads.push_back(layers[i].make_gradients());
    caches.push_back(layers[i].make_cache(64));
    adams.emplace_back(layers[i], lmshrink::AdamWOptions{2e-3, 0.9, 0.999, 1e-8, 0.0});
    pruner.add(weights[i].name, layers[i], grads[i]);
  }

  // --8<-- [parallel]
  lmshrink::mpi::Reducer<float> reducer(MPI_COMM_WORLD);
  std::vector<lmshrink::mpi::Tensor<float>> all_grads;  // one fused buffer per step
  std::vector<Layer*> all_layers;
  for (std::size_t i = 0; i < n; ++i) {
    lmshrink::mpi::append_gradients(all_grads, grads[i]);
    all_layers.push_back(&layers[i]);
  }
  lmshrink::mpi::broadcast_layers(MPI_COMM_WORLD, all_layers);  // every rank starts from rank 0's
  lmshrink::SplitMix64 rng(2026 + std::uint64_t(rank));   // each rank its own data
  int checks = 0;
  for (int step = 0; step < steps; ++step) {
    for (std::size_t i = 0; i < n; ++i) {
      Matrix x(64 / ranks, weights[i].matrix->cols());  // this rank's share of a 64-row batch
      for (Eigen::Index k = 0; k < x.size(); ++k) x.data()[k] = float(rng.normal());
      const Matrix target = x * weights[i].matrix->transpose();
      Matrix y(x.rows(), target.cols());
      layers[i].forward(x, y, caches[i]);
      grads[i].set_zero();
      layers[i].backward(x, (y - target) * (2.0f / float(x.rows())), caches[i], grads[i]);
    }
    reducer.average(all_grads);  // the mean of the ranks' gradients, on every rank
    for (std::size_t i = 0; i < n; ++i) adams[i].step(layers[i], grads[i]);
    if (pruner.after_optimizer_step(step).masked) {
      lmshrink::mpi::check_identical(MPI_COMM_WORLD, pruner);  // throws on every rank if one diverged
      ++checks;
    }
  }
  // --8<-- [parallel]

  // The fit on held-out inputs (the same on every rank), and the share of S rows left.
  lmshrink::SplitMix64 eval_rng(7);
  double error = 0;
  long live = 0, rows = 0;
  for (std::size_t i = 0; i < n; ++i) {
    Matrix x(64, weights[i].matrix->cols());
    for (Eigen::Index k = 0; k < x.size(); ++k) x.data()[k] = float(eval_rng.normal());
    const Matrix target = x * weights[i].matrix->transpose();
    Matrix y(64, target.cols());
    layers[i].forward(x, y, caches[i]);
    error += (y - target).norm() / target.norm() / double(n);
    live += long((pruner.row_mask(Eigen::Index(i)).array() != 0).count());
    rows += long(pruner.row_mask(Eigen::Index(i)).size());
  }
  if (rank == 0)
    std::printf("block %d of %s on %d processes, %d steps: %ld of %ld rows of S kept, relative output error "
                "%.4f; pruners identical on every rank at all %d mask steps; %lld bytes averaged per step\n",
                block, path.c_str(), ranks, steps, live, rows, error, checks,
                static_cast<long long>(reducer.last_values() * Eigen::Index(sizeof(float))));
  return 0;
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  int status = 0;
  try {
    status = run(argc, argv, rank, ranks);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lmshrink_data_parallel (rank %d of %d): %s\n", rank, ranks, e.what());
    MPI_Abort(MPI_COMM_WORLD, 1);  // another rank may be waiting in a collective
  }
  MPI_Finalize();
  return status;
}
