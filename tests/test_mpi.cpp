// lmshrink/mpi.hpp under mpirun (ctest runs it with -np 2; with one process the checks that need
// two ranks are skipped with a message). Every check runs on every rank.
#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include <catch2/catch.hpp>
#include <lmshrink/mpi.hpp>
#include <lmshrink/optim.hpp>

#include <cstring>
#include <random>

namespace {

// MPI starts before the first test and ends after the last.
struct MpiSession : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;
  void testRunStarting(Catch::TestRunInfo const&) override { MPI_Init(nullptr, nullptr); }
  void testRunEnded(Catch::TestRunStats const&) override { MPI_Finalize(); }
};
CATCH_REGISTER_LISTENER(MpiSession)

using Matrix = lmshrink::RowMatrix<float>;
using Layer = lmshrink::LowRankSparseLinear<float>;
namespace mpi = lmshrink::mpi;

int rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int ranks() {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

// What `f` throws as an E ("nothing thrown" if it returns; another type propagates).
template <class E, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "nothing thrown";
}

bool same_bits(const float* a, const float* b, Eigen::Index n) {
  return std::memcmp(a, b, std::size_t(n) * sizeof(float)) == 0;
}

// A value that depends on the rank, the tensor and the position, exactly representable.
float value(int r, int tensor, Eigen::Index i) { return float((r + 1) * 1000 + tensor * 100) + float(i) * 0.25f; }

// Every rank's copy of `data` gathered; true when all equal rank 0's bit for bit.
bool equal_on_all_ranks(const void* data, std::size_t bytes) {
  std::vector<unsigned char> all(bytes * std::size_t(ranks()));
  MPI_Allgather(data, int(bytes), MPI_BYTE, all.data(), int(bytes), MPI_BYTE, MPI_COMM_WORLD);
  for (int r = 1; r < ranks(); ++r)
    if (std::memcmp(all.data(), all.data() + std::size_t(r) * bytes, bytes) != 0) return false;
  return true;
}

// A few layers with rank-independent initial values, and the pruner's options.
struct Model {
  std::vector<Layer> layers;
  std::vector<Layer::Gradients> grads;
  Model() {
    std::mt19937 gen(7);
    std::normal_distribution<float> normal(0.f, 0.3f);
    const int shapes[3][3] = {{12, 8, 2}, {8, 12, 3}, {10, 8, 2}};
    for (const auto& s : shapes) {
      layers.emplace_back(s[0], s[1], s[2], /*with_bias=*/true);
      Layer& l = layers.back();
      for (Eigen::Index i = 0; i < l.U().size(); ++i) l.U().data()[i] = normal(gen);
      for (Eigen::Index i = 0; i < l.V().size(); ++i) l.V().data()[i] = normal(gen);
      for (Eigen::Index i = 0; i < l.S().size(); ++i) l.S().data()[i] = normal(gen);
      l.bias().setZero();
    }
    for (const auto& l : layers) grads.push_back(l.make_gradients());
  }
  std::vector<mpi::Tensor<float>> gradient_tensors() {
    std::vector<mpi::Tensor<float>> t;
    for (auto& g : grads) mpi::append_gradients(t, g);
    return t;
  }
  std::vector<mpi::Tensor<float>> parameter_tensors() {
    std::vector<mpi::Tensor<float>> t;
    for (auto& l : layers) mpi::append_parameters(t, l);
    return t;
  }
};

lmshrink::PrunerOptions pruner_options(int steps) {
  lmshrink::PrunerOptions o;
  o.schedule.total_steps = steps;
  o.schedule.initial_warmup = 2;
  o.schedule.final_warmup = 2;
  o.schedule.final_keep = 0.4;
  o.schedule.mask_interval = 2;
  return o;
}

// Shard `shard` of a step's batch: inputs and targets drawn from (step, shard) alone.
void shard_batch(int step, int shard, Eigen::Index in, Eigen::Index out, Matrix& x, Matrix& y) {
  std::mt19937 gen(std::uint32_t(1000 * step + shard));
  std::normal_distribution<float> normal(0.f, 1.f);
  x.resize(5, in);
  y.resize(5, out);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = normal(gen);
  for (Eigen::Index i = 0; i < y.size(); ++i) y.data()[i] = normal(gen);
}

// Gradients of 0.5·|layer(x) − y|² / rows for every layer on one shard, into fresh grads.
void shard_gradients(Model& m, int step, int shard, std::vector<Layer::Gradients>& out) {
  out.clear();
  for (std::size_t i = 0; i < m.layers.size(); ++i) {
    Layer& l = m.layers[i];
    Matrix x, target, y(5, l.out_features());
    shard_batch(step, shard, l.in_features(), l.out_features(), x, target);
    auto cache = l.make_cache(5);
    l.forward(x, y, cache);
    const Matrix dy = (y - target) / 5.f;
    out.push_back(l.make_gradients());
    out.back().set_zero();
    l.backward(x, dy, cache, out.back());
  }
}

// Trains the model for `steps` steps: every rank computes its shards (rank r of n owns shards
// [r·k, (r+1)·k) of n·k), the gradients are summed in shard order across ranks, then AdamW and
// the pruner; the pruners are compared at every mask step. `diverge_at`: rank 1 nudges its own
// gradients after the reduction at that step (a bug that makes the ranks diverge).
struct RunResult {
  int mask_steps = 0;
};
RunResult train(Model& m, lmshrink::Pruner<float>& pruner, int steps, int shards_per_rank, int ranks_used,
                int my_rank, bool distributed, int diverge_at = -1) {
  std::vector<lmshrink::AdamW<float>> opt;
  lmshrink::AdamWOptions ao;
  ao.lr = 0.05;
  ao.weight_decay = 0;
  for (auto& l : m.layers) opt.emplace_back(l, ao);
  for (std::size_t i = 0; i < m.layers.size(); ++i) pruner.add("l" + std::to_string(i), m.layers[i], m.grads[i]);
  mpi::Reducer<float> reducer(MPI_COMM_WORLD, mpi::Order::ranks);
  std::vector<std::vector<Layer::Gradients>> shard_grads(std::size_t(shards_per_rank * ranks_used));
  RunResult result;
  for (int step = 0; step < steps; ++step) {
    const int first = distributed ? my_rank * shards_per_rank : 0;
    const int count = distributed ? shards_per_rank : shards_per_rank * ranks_used;
    std::vector<std::vector<mpi::Tensor<const float>>> contributions;
    for (int s = first; s < first + count; ++s) {
      shard_gradients(m, step, s, shard_grads[std::size_t(s)]);
      contributions.emplace_back();
      for (auto& g : shard_grads[std::size_t(s)]) {
        contributions.back().push_back(mpi::tensor(std::as_const(g.U)));
        contributions.back().push_back(mpi::tensor(std::as_const(g.V)));
        contributions.back().push_back(mpi::tensor(std::as_const(g.S)));
        contributions.back().push_back(mpi::tensor(std::as_const(g.bias)));
      }
    }
    if (distributed) {
      reducer.sum_in_order(contributions, m.gradient_tensors());
    } else {  // one process, the same additions in the same order
      auto out = m.gradient_tensors();
      for (std::size_t t = 0; t < out.size(); ++t) {
        Eigen::Map<Eigen::VectorXf> to(out[t].data, out[t].size);
        to = Eigen::Map<const Eigen::VectorXf>(contributions[0][t].data, out[t].size);
        for (std::size_t c = 1; c < contributions.size(); ++c)
          to += Eigen::Map<const Eigen::VectorXf>(contributions[c][t].data, out[t].size);
      }
    }
    if (step == diverge_at && my_rank == 1) m.grads[1].S.array() += 1e-3f;
    for (std::size_t i = 0; i < m.layers.size(); ++i) opt[i].step(m.layers[i], m.grads[i]);
    if (pruner.after_optimizer_step(step).masked) {
      ++result.mask_steps;
      if (distributed) mpi::check_identical(MPI_COMM_WORLD, pruner);
    }
  }
  return result;
}

}  // namespace

TEST_CASE("average and sum go through one fused buffer and give every rank the result") {
  const int r = rank(), n = ranks();
  for (mpi::Order order : {mpi::Order::mpi, mpi::Order::ranks}) {
    mpi::Reducer<float> reducer(MPI_COMM_WORLD, order);
    CHECK(reducer.rank() == r);
    CHECK(reducer.size() == n);
    Layer::Gradients g = Layer(6, 4, 2, true).make_gradients();
    Eigen::VectorXf plain(5);
    std::vector<mpi::Tensor<float>> tensors;
    mpi::append_gradients(tensors, g);
    tensors.push_back(mpi::tensor(plain));
    REQUIRE(tensors.size() == 5);  // U, V, S, bias, plain
    const auto fill = [&] {
      for (std::size_t t = 0; t < tensors.size(); ++t)
        for (Eigen::Index i = 0; i < tensors[t].size; ++i) tensors[t].data[i] = value(r, int(t), i);
    };
    fill();
    reducer.average(tensors);
    CHECK(reducer.last_values() == 12 + 8 + 24 + 6 + 5);
    for (std::size_t t = 0; t < tensors.size(); ++t)
      for (Eigen::Index i = 0; i < tensors[t].size; ++i) {
        double want = 0;
        for (int k = 0; k < n; ++k) want += value(k, int(t), i);
        REQUIRE(tensors[t].data[i] == float(want / n));  // exact: small integers and quarters
      }
    fill();
    reducer.sum(tensors);
    double want = 0;
    for (int k = 0; k < n; ++k) want += value(k, 2, 3);
    CHECK(g.S.data()[3] == float(want));
    CHECK(equal_on_all_ranks(g.U.data(), sizeof(float) * std::size_t(g.U.size())));
  }
}

TEST_CASE("sum_in_order has the bits of one process adding the contributions in rank order") {
  const int r = rank(), n = ranks();
  // Values whose sum depends on the order of the additions.
  const auto contribution = [](int c, Eigen::Index i) {
    return float(std::pow(10.0, double((c * 7 + i) % 9) - 4.0)) * (c % 2 ? -1.f : 1.f) + 1e-7f * float(i);
  };
  const int k = 2;  // contributions per rank
  std::vector<Eigen::VectorXf> mine(k, Eigen::VectorXf(64));
  std::vector<std::vector<mpi::Tensor<const float>>> contributions;
  for (int c = 0; c < k; ++c) {
    for (Eigen::Index i = 0; i < 64; ++i) mine[std::size_t(c)][i] = contribution(r * k + c, i);
    contributions.push_back({mpi::Tensor<const float>{mine[std::size_t(c)].data(), 40},
                             mpi::Tensor<const float>{mine[std::size_t(c)].data() + 40, 24}});
  }
  Eigen::VectorXf a(40), b(24);
  mpi::Reducer<float> reducer(MPI_COMM_WORLD, mpi::Order::ranks);
  reducer.sum_in_order(contributions, {mpi::tensor(a), mpi::tensor(b)});
  Eigen::VectorXf want(64);
  for (Eigen::Index i = 0; i < 64; ++i) {
    float s = contribution(0, i);
    for (int c = 1; c < n * k; ++c) s += contribution(c, i);
    want[i] = s;
  }
  CHECK(same_bits(a.data(), want.data(), 40));
  CHECK(same_bits(b.data(), want.data() + 40, 24));
  // A running sum from rank to rank, then broadcast: at most two buffers received per rank,
  // whatever the number of contributions (gathering them cost (ranks - 1) * k buffers).
  CHECK(reducer.last_values() == 64);
  CHECK(reducer.last_received_values() == (r > 0 ? 64 : 0) + (r + 1 < n ? 64 : 0));
  std::vector<std::vector<mpi::Tensor<const float>>> many;
  for (int c = 0; c < 8; ++c) many.push_back(contributions[std::size_t(c % k)]);
  reducer.sum_in_order(many, {mpi::tensor(a), mpi::tensor(b)});
  CHECK(reducer.last_received_values() == (r > 0 ? 64 : 0) + (r + 1 < n ? 64 : 0));
  // Order::mpi: each rank's contributions added locally, then MPI_Allreduce: the same sum within
  // rounding, and the same on every rank.
  mpi::Reducer<float> scalable(MPI_COMM_WORLD, mpi::Order::mpi);
  scalable.sum_in_order(contributions, {mpi::tensor(a), mpi::tensor(b)});
  for (Eigen::Index i = 0; i < 40; ++i) CHECK(a[i] == Approx(want[i]).epsilon(1e-5).margin(1e-6));
  CHECK(equal_on_all_ranks(a.data(), sizeof(float) * 40));
}

TEST_CASE("ranks that pass different tensors get a clear error on every rank") {
  if (ranks() < 2) {
    WARN("one process: the mismatch needs two ranks (ctest runs this under mpirun -np 2)");
    return;
  }
  mpi::Reducer<float> reducer(MPI_COMM_WORLD);
  Eigen::VectorXf v = Eigen::VectorXf::Ones(rank() == 1 ? 9 : 8);
  CHECK_THAT(message_of<lmshrink::value_error>([&] { reducer.average({mpi::tensor(v)}); }),
             Catch::Matchers::Contains("the ranks passed different numbers of values: from 8 to 9"));
  CHECK(v.sum() == float(v.size()));  // untouched
  std::vector<std::vector<mpi::Tensor<const float>>> one(std::size_t(rank() == 1 ? 2 : 1),
                                                           {mpi::Tensor<const float>{v.data(), 8}});
  Eigen::VectorXf out(8);
  CHECK_THAT(message_of<lmshrink::value_error>([&] { reducer.sum_in_order(one, {mpi::tensor(out)}); }),
             Catch::Matchers::Contains("different numbers of contributions: from 1 to 2"));
  CHECK_THAT(message_of<lmshrink::value_error>([&] { reducer.broadcast({mpi::tensor(v)}, 2 + ranks()); }),
             Catch::Matchers::Contains("root must be a rank in [0, 2)"));
  // A bad tensor is refused before any communication (on every rank alike, here).
  CHECK_THAT(message_of<lmshrink::value_error>([&] { reducer.sum({mpi::Tensor<float>{nullptr, 3}}); }),
             Catch::Matchers::Contains("tensor 0 has size 3 and no data"));
  CHECK_THROWS_AS(reducer.sum_in_order({{mpi::Tensor<const float>{v.data(), 7}}}, {mpi::tensor(out)}),
                  lmshrink::shape_error);
  CHECK_THAT(message_of<lmshrink::value_error>([&] { reducer.sum_in_order({}, {mpi::tensor(out)}); }),
             Catch::Matchers::Contains("every rank must pass at least one contribution"));
  CHECK_THAT(message_of<lmshrink::value_error>(
                 [&] { reducer.sum_in_order({{mpi::Tensor<const float>{nullptr, 8}}}, {mpi::tensor(out)}); }),
             Catch::Matchers::Contains("tensor 0 has size 8 and no data"));
}

TEST_CASE("tensors with the same total size but another layout are refused on every rank") {
  if (ranks() < 2) {
    WARN("one process: the mismatch needs two ranks (ctest runs this under mpirun -np 2)");
    return;
  }
  // Before: both passed the size check, and rank 1's two halves were added to rank 0's one tensor.
  mpi::Reducer<float> reducer(MPI_COMM_WORLD);
  Eigen::VectorXf eight = Eigen::VectorXf::Ones(8), a = Eigen::VectorXf::Ones(4), b = Eigen::VectorXf::Ones(4);
  std::vector<mpi::Tensor<float>> mine;
  if (rank() == 0) mine = {mpi::tensor(eight)};
  else mine = {mpi::tensor(a), mpi::tensor(b)};
  CHECK_THAT(message_of<lmshrink::value_error>([&] { reducer.average(mine); }),
             Catch::Matchers::Contains("the ranks passed different numbers of tensors: from 1 to 2"));
  CHECK(eight.sum() == 8.0f);
  // A (28, 12) layer against a (12, 28) one, rank 3: U and V have swapped sizes, S the same.
  const bool wide = rank() == 1;
  lmshrink::LowRankSparseLinear<float> layer(wide ? 12 : 28, wide ? 28 : 12, 3);
  auto grads = layer.make_gradients();
  std::vector<mpi::Tensor<float>> g;
  mpi::append_gradients(g, grads);
  for (auto* call : {+[](mpi::Reducer<float>& r, std::vector<mpi::Tensor<float>>& t) { r.average(t); },
                     +[](mpi::Reducer<float>& r, std::vector<mpi::Tensor<float>>& t) { r.broadcast(t); }})
    CHECK_THAT(message_of<lmshrink::value_error>([&] { call(reducer, g); }),
               Catch::Matchers::Contains("the ranks passed 3 tensors of 456 values in all, but of different sizes"));
  std::vector<mpi::Tensor<const float>> c;
  for (const auto& t : g) c.push_back({t.data, t.size});
  CHECK_THAT(message_of<lmshrink::value_error>([&] { reducer.sum_in_order({c}, g); }),
             Catch::Matchers::Contains("but of different sizes"));
}

TEST_CASE("broadcast_layers copies rank 0's parameters and masks; different shapes are refused") {
  const int r = rank();
  Layer a(6, 5, 2, true), b(4, 6, 1, false);
  for (Layer* l : {&a, &b}) {
    l->U().setConstant(float(r + 1));
    l->V().setConstant(float(r + 2));
    l->S().setConstant(float(r + 3));
    if (l->has_bias()) l->bias().setConstant(float(r + 4));
  }
  lmshrink::RowMask rows = lmshrink::RowMask::Ones(6);
  rows[r % 6] = 0;
  a.set_row_mask(rows);
  lmshrink::ElementMask elements = lmshrink::ElementMask::Ones(4, 6);
  elements(r % 4, 1) = 0;
  b.set_element_mask(elements);
  mpi::broadcast_layers<float>(MPI_COMM_WORLD, {&a, &b});
  CHECK((a.U().array() == 1.f).all());
  CHECK((a.bias().array() == 4.f).all());
  CHECK((b.S().array() == 3.f).count() == 23);  // rank 0's S: its masked entry zeroed
  CHECK(b.S()(0, 1) == 0.f);
  CHECK(a.row_mask()[0] == 0);
  CHECK(a.row_mask().cast<int>().sum() == 5);
  CHECK(b.element_mask()(0, 1) == 0);
  CHECK(b.element_mask().cast<int>().sum() == 23);
  if (ranks() < 2) return;
  Layer c(6, 5, r == 1 ? 3 : 2, true);
  CHECK_THAT(message_of<lmshrink::shape_error>([&] { mpi::broadcast_layers<float>(MPI_COMM_WORLD, {&a, &c}); }),
             Catch::Matchers::Contains("layer 1 differs across ranks: rank 0 has (6, 5) rank 2 with bias"));
}

TEST_CASE("data-parallel pruning keeps parameters and masks identical on every rank, and equal to one process") {
  const int steps = 14, k = 2, n = ranks();
  Model distributed, single;
  lmshrink::Pruner<float> p_distributed(pruner_options(steps)), p_single(pruner_options(steps));
  const RunResult run = train(distributed, p_distributed, steps, k, n, rank(), true);
  train(single, p_single, steps, k, n, rank(), false);  // every rank alone, all n·k shards
  CHECK(run.mask_steps >= 4);
  for (std::size_t i = 0; i < distributed.layers.size(); ++i) {
    INFO("layer " << i);
    const Layer& d = distributed.layers[i];
    const Layer& s = single.layers[i];
    for (auto [x, y] : {std::pair{&d.U(), &s.U()}, std::pair{&d.V(), &s.V()}, std::pair{&d.S(), &s.S()}}) {
      CHECK(same_bits(x->data(), y->data(), x->size()));
      CHECK(equal_on_all_ranks(x->data(), sizeof(float) * std::size_t(x->size())));
    }
    CHECK(p_distributed.row_mask(Eigen::Index(i)) == p_single.row_mask(Eigen::Index(i)));
    CHECK(equal_on_all_ranks(p_distributed.row_mask(Eigen::Index(i)).data(),
                             std::size_t(p_distributed.row_mask(Eigen::Index(i)).size())));
  }
  // Some rows are pruned, so the masks compared are not trivially all ones.
  Eigen::Index pruned = 0;
  for (Eigen::Index i = 0; i < p_distributed.layers(); ++i) pruned += (p_distributed.row_mask(i).array() == 0).count();
  CHECK(pruned > 0);
  const auto digests = mpi::digest(p_distributed);
  const auto single_digests = mpi::digest(p_single);
  for (std::size_t i = 0; i < digests.size(); ++i) {
    CHECK(digests[i].masks == single_digests[i].masks);
    CHECK(digests[i].importance == single_digests[i].importance);
  }
  CHECK_NOTHROW(mpi::check_identical(MPI_COMM_WORLD, p_distributed));
}

TEST_CASE("a rank whose state diverged is named at the next mask step, on every rank, without a hang") {
  if (ranks() < 2) {
    WARN("one process: divergence needs two ranks (ctest runs this under mpirun -np 2)");
    return;
  }
  const int steps = 14;
  Model m;
  lmshrink::Pruner<float> pruner(pruner_options(steps));
  // Rank 1 changes its own copy of layer 1's gradients at step 4; the next mask step sees it.
  CHECK_THAT(message_of<lmshrink::state_error>([&] { train(m, pruner, steps, 1, ranks(), rank(), true, /*diverge_at=*/4); }),
             Catch::Matchers::Contains("layer 1 ('l1') differs across ranks after step ") &&
                 Catch::Matchers::Contains(" on rank 1 (digest ") &&
                 Catch::Matchers::Contains("the ranks' gradients or parameters diverged"));
  // Masks alone: rank 1 flips a row of its own pruner's layer 2 by loading a changed state.
  Model m2;
  lmshrink::Pruner<float> p2(pruner_options(steps));
  train(m2, p2, 6, 1, ranks(), rank(), true);
  const std::string path = std::string(LMSHRINK_TEST_TMP) + "/mpi_state_" + std::to_string(rank()) + ".bin";
  p2.save(path);
  if (rank() == 1) {
    lmshrink::Pruner<float> changed(pruner_options(steps));
    Model m3;
    for (std::size_t i = 0; i < m3.layers.size(); ++i) changed.add("l" + std::to_string(i), m3.layers[i], m3.grads[i]);
    changed.load(path);
    // Re-mask with a different share: the importance state stays, the masks change.
    changed.mask(0.2);
    changed.save(path);
    p2.load(path);
  }
  CHECK_THAT(message_of<lmshrink::state_error>([&] { mpi::check_identical(MPI_COMM_WORLD, p2); }),
             Catch::Matchers::Contains("its masks on rank 1"));
  std::remove(path.c_str());
}
