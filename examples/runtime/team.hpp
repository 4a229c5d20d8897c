#pragma once
// The processes of one run of an example. One process (the default): rank 0 of 1, and every
// call is local. Under an MPI launcher (`mpirun -np N lmshrink_compress ...`), with the examples
// built with MPI: the N ranks of MPI_COMM_WORLD, through lmshrink/mpi.hpp (team_mpi.cpp). The
// main job splits each batch's shards, the teacher's story generation and every scoring pass
// over the ranks, and gathers the results in an order that makes them the single process's bits.
//
//   const std::unique_ptr<examples::Team> team = examples::make_team(&argc, &argv);
//   if (team->leader()) write(...);        // rank 0 alone writes and prints
//
// The other ranks' standard output goes to /dev/null; their errors still reach standard error.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <lmshrink/pruner.hpp>

#include "../models/registry.hpp"

namespace examples {

/// `bytes` bytes from `data`, read-only.
struct ByteSpan {
  const void* data;
  std::size_t bytes;
};

/// `size` values from `data`, read-only.
struct ConstSlice {
  const float* data;
  Eigen::Index size;
};

class Team {
 public:
  virtual ~Team() = default;
  virtual int rank() const { return 0; }
  virtual int size() const { return 1; }
  bool leader() const { return rank() == 0; }
  /// Every rank's values, concatenated in rank order (the counts may differ between ranks).
  virtual std::vector<int> all_gather(const std::vector<int>& mine) { return mine; }
  virtual std::vector<double> all_gather(const std::vector<double>& mine) { return mine; }
  /// out = the sum of every rank's contributions, rank 0's first, each added in turn (the first
  /// copied): the bits of one process adding them all in that order.
  virtual void sum_in_order(const std::vector<std::vector<ConstSlice>>& contributions,
                            const std::vector<TensorRef>& out) {
    for (std::size_t t = 0; t < out.size(); ++t) {
      Eigen::Map<Eigen::VectorXf> to(out[t].data, out[t].size);
      for (std::size_t c = 0; c < contributions.size(); ++c) {
        const Eigen::Map<const Eigen::VectorXf> from(contributions[c][t].data, contributions[c][t].size);
        if (c == 0) to = from;
        else to += from;
      }
    }
  }
  /// Values this rank received in the last sum_in_order.
  virtual std::int64_t last_received_values() const { return 0; }
  /// Exact sums (the default): the bits of one process. Off: MPI_Allreduce, equal within rounding.
  virtual void set_exact_sums(bool) {}
  /// Rank 0's parameters and masks copied to every rank.
  virtual void broadcast(Model&) {}
  /// Throws lmshrink::state_error on every rank if any rank's pruner differs from rank 0's.
  virtual void check_identical(const lmshrink::Pruner<float>&) {}
  /// Rank 0's bytes copied to every rank (the others' are replaced): a file only rank 0 can read.
  virtual void broadcast_bytes(std::vector<char>&) {}
  /// Throws lmshrink::state_error on every rank, naming `what` and the first rank that differs,
  /// unless every rank passes the same bytes as rank 0 (compared by a 64-bit digest).
  virtual void check_same(const std::string& what, const std::vector<ByteSpan>& parts) {
    (void)what;
    (void)parts;
  }
  virtual void barrier() {}
  /// Ends every rank's process (an error on some ranks only would leave the others waiting).
  virtual void abort(int) {}
};

/// An MPI team when the process was started by an MPI launcher and the examples were built with
/// MPI; else one process.
std::unique_ptr<Team> make_team(int* argc, char*** argv);

/// Whether the examples were built with MPI.
bool built_with_mpi();

}  // namespace examples
