// examples::make_team with MPI: the ranks of MPI_COMM_WORLD when an MPI launcher started the
// process, else one process (no MPI_Init, so a plain run behaves as without MPI).
#include <lmshrink/mpi.hpp>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "../cli/progress.hpp"
#include "team.hpp"

namespace examples {
namespace {


class MpiTeam final : public Team {
 public:
  MpiTeam(int* argc, char*** argv) {
    MPI_Init(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    reducer_.emplace(MPI_COMM_WORLD, lmshrink::mpi::Order::ranks);
    if (rank_ != 0 && std::freopen("/dev/null", "w", stdout) == nullptr)
      lmshrink::fail<lmshrink::io_error>("examples::Team", "rank ", rank_, " cannot silence its output");
  }
  ~MpiTeam() override { MPI_Finalize(); }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  std::vector<int> all_gather(const std::vector<int>& mine) override { return gather(mine, MPI_INT); }
  std::vector<double> all_gather(const std::vector<double>& mine) override { return gather(mine, MPI_DOUBLE); }

  void sum_in_order(const std::vector<std::vector<ConstSlice>>& contributions,
                    const std::vector<TensorRef>& out) override {
    std::vector<std::vector<lmshrink::mpi::Tensor<const float>>> in(contributions.size());
    for (std::size_t c = 0; c < contributions.size(); ++c)
      for (const ConstSlice& s : contributions[c]) in[c].push_back({s.data, s.size});
    std::vector<lmshrink::mpi::Tensor<float>> to;
    for (const TensorRef& t : out) to.push_back({t.data, t.size});
    reducer_->sum_in_order(in, to);
  }
  std::int64_t last_received_values() const override { return reducer_->last_received_values(); }
  void set_exact_sums(bool exact) override {
    reducer_.emplace(MPI_COMM_WORLD, exact ? lmshrink::mpi::Order::ranks : lmshrink::mpi::Order::mpi);
  }

  void broadcast(Model& model) override {
    std::vector<Layer*> layers;
    for (int l = 0; l < model.shape().n_layers; ++l)
      for (int k = 0; k < model.linear_kinds(); ++k) layers.push_back(&model.linear(l, k));
    lmshrink::mpi::broadcast_layers(MPI_COMM_WORLD, layers);
    std::vector<lmshrink::mpi::Tensor<float>> plain;
    for (const TensorRef& t : model.plain_params()) plain.push_back({t.data, t.size});
    reducer_->broadcast(plain);
  }

  void check_identical(const lmshrink::Pruner<float>& pruner) override {
    lmshrink::mpi::check_identical(MPI_COMM_WORLD, pruner);
  }
  void broadcast_bytes(std::vector<char>& bytes) override {
    static constexpr const char* where = "examples::Team::broadcast_bytes";
    std::int64_t size = std::int64_t(bytes.size());
    lmshrink::mpi::broadcast(MPI_COMM_WORLD, &size, 1, 0, where);
    bytes.resize(std::size_t(size));
    lmshrink::mpi::broadcast(MPI_COMM_WORLD, reinterpret_cast<std::uint8_t*>(bytes.data()), size, 0, where);
  }

  void check_same(const std::string& what, const std::vector<ByteSpan>& parts) override {
    static constexpr const char* where = "lmshrink_compress";
    lmshrink::mpi::Digest digest;
    for (const ByteSpan& p : parts) digest.add(p.data, p.bytes);
    const std::uint64_t mine = digest.value();
    std::vector<std::uint64_t> all(static_cast<std::size_t>(size_));
    lmshrink::mpi::all_gather(MPI_COMM_WORLD, &mine, 1, all.data(), where);
    for (int r = 1; r < size_; ++r)
      if (all[std::size_t(r)] != all[0])
        lmshrink::fail<lmshrink::state_error>(
            where, "rank ", r, "'s ", what, " differs from rank 0's (digest ", lmshrink::mpi::hex(all[std::size_t(r)]),
            " against ", lmshrink::mpi::hex(all[0]), "); every process must be given the same model, "
            "tokenizer, text and options");
  }

  void barrier() override { MPI_Barrier(MPI_COMM_WORLD); }
  void abort(int code) override { MPI_Abort(MPI_COMM_WORLD, code); }

 private:
  template <class T>
  std::vector<T> gather(const std::vector<T>& mine, MPI_Datatype type) {
    int count = int(mine.size());
    std::vector<int> counts(static_cast<std::size_t>(size_)), offsets(static_cast<std::size_t>(size_));
    MPI_Allgather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD);
    std::size_t total = 0;
    for (int r = 0; r < size_; ++r) {
      offsets[std::size_t(r)] = int(total);
      total += std::size_t(counts[std::size_t(r)]);
    }
    std::vector<T> all(total);
    MPI_Allgatherv(mine.data(), count, type, all.data(), counts.data(), offsets.data(), type, MPI_COMM_WORLD);
    return all;
  }

  int rank_ = 0, size_ = 1;
  std::optional<lmshrink::mpi::Reducer<float>> reducer_;  // after MPI_Init
};

}  // namespace

std::unique_ptr<Team> make_team(int* argc, char*** argv) {
  if (!under_mpi_launcher()) return std::make_unique<Team>();
  return std::make_unique<MpiTeam>(argc, argv);
}
bool built_with_mpi() { return true; }

}  // namespace examples
