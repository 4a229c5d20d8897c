#pragma once
// Data parallelism over MPI (opt-in: not part of lmshrink.hpp; link lmshrink::mpi, which CMake
// provides when MPI is found, see docs/parallel.md).
//
// Every rank holds the whole model and computes gradients on its own share of each batch. A
// Reducer replaces the gradients by their mean (or sum) over the ranks through one fused buffer
// per call; broadcast_layers() copies rank 0's parameters and masks to every rank; every rank
// runs its own Pruner on the same averaged gradients, and check_identical() compares digests of
// all the pruners' masks and importance state, throwing the same lmshrink::state_error on every
// rank, naming the first layer that differs, if any rank diverged.
//
//   lmshrink::mpi::Reducer<float> reducer(MPI_COMM_WORLD);
//   std::vector<lmshrink::mpi::Tensor<float>> grads;
//   for (auto& g : layer_grads) lmshrink::mpi::append_gradients(grads, g);
//   grads.push_back(lmshrink::mpi::tensor(embedding_grad));
//   lmshrink::mpi::broadcast_layers(MPI_COMM_WORLD, layers);            // once, after the init
//   for (step ...) {
//     ... forward and backward on this rank's share of the batch ...
//     reducer.average(grads);                                         // one MPI call
//     ... optimizer step ...
//     if (pruner.after_optimizer_step(step).masked) lmshrink::mpi::check_identical(MPI_COMM_WORLD, pruner);
//   }
//
// Every call is collective: all ranks of the communicator make it, in the same order, with
// tensors of the same sizes (a difference in size is detected and thrown on every rank).

#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "digest.hpp"
#include "errors.hpp"
#include "low_rank_sparse_linear.hpp"
#include "pruner.hpp"
#include "types.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace mpi {

namespace detail {

template <class T>
MPI_Datatype datatype() {
  using U = std::remove_const_t<T>;
  if constexpr (std::is_same_v<U, float>) return MPI_FLOAT;
  else if constexpr (std::is_same_v<U, double>) return MPI_DOUBLE;
  else if constexpr (std::is_same_v<U, std::uint8_t>) return MPI_UINT8_T;
  else if constexpr (std::is_same_v<U, std::uint64_t>) return MPI_UINT64_T;
  else if constexpr (std::is_same_v<U, std::int64_t>) return MPI_INT64_T;
  else static_assert(sizeof(U) == 0, "no MPI datatype for this type");
}

/// Throws io_error when an MPI call returned an error (with an error handler that returns).
inline void check(int rc, const char* where, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  MPI_Error_string(rc, text, &length);
  lmshrink::detail::fail<io_error>(where, call, " failed: ", std::string(text, std::size_t(std::max(0, length))));
}

inline int rank_of(MPI_Comm comm) {
  int r = 0;
  check(MPI_Comm_rank(comm, &r), "lmshrink::mpi", "MPI_Comm_rank");
  return r;
}

inline int size_of(MPI_Comm comm) {
  int n = 1;
  check(MPI_Comm_size(comm, &n), "lmshrink::mpi", "MPI_Comm_size");
  return n;
}

/// MPI counts are int: large buffers go in chunks.
constexpr Index kChunk = Index(1) << 30;

/// The smallest and largest `value` over the ranks, on every rank (one small all-reduce).
inline std::pair<std::int64_t, std::int64_t> min_max(MPI_Comm comm, std::int64_t value, const char* where) {
  std::int64_t in[2] = {value, -value}, out[2] = {0, 0};
  check(MPI_Allreduce(in, out, 2, MPI_INT64_T, MPI_MAX, comm), where, "MPI_Allreduce");
  return {-out[1], out[0]};
}

/// Throws value_error on every rank unless all ranks pass the same `count`.
inline void check_same_count(MPI_Comm comm, std::int64_t count, const char* where, const char* what) {
  const auto [lo, hi] = min_max(comm, count, where);
  if (lo != hi)
    lmshrink::detail::fail<value_error>(where, "the ranks passed different ", what, ": from ", lo, " to ", hi,
                                        " (this rank ", count, "); every rank must pass the same tensors");
}

template <class T>
void all_gather(MPI_Comm comm, const T* mine, Index count, T* all, const char* where) {
  if (count > std::numeric_limits<int>::max())
    lmshrink::detail::fail<value_error>(where, "gathering ", count, " values per rank; at most ",
                                        std::numeric_limits<int>::max());
  check(MPI_Allgather(mine, int(count), datatype<T>(), all, int(count), datatype<T>(), comm), where,
        "MPI_Allgather");
}

template <class T>
void broadcast(MPI_Comm comm, T* data, Index count, int root, const char* where) {
  for (Index at = 0; at < count; at += kChunk)
    check(MPI_Bcast(data + at, int(std::min(kChunk, count - at)), datatype<T>(), root, comm), where, "MPI_Bcast");
}

using lmshrink::Digest;  // digest.hpp

inline std::string hex(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

/// Throws value_error on every rank unless all ranks pass as many tensors, as many values, and
/// tensors of the same sizes in the same order (a digest of the sizes is compared: 4 + 4 values
/// against one tensor of 8, or a (28, 12) layer's U and V against a (12, 28) layer's, are refused).
inline void check_same_layout(MPI_Comm comm, const std::vector<Index>& sizes, const char* where) {
  check_same_count(comm, std::int64_t(sizes.size()), where, "numbers of tensors");
  Index n = 0;
  for (Index s : sizes) n += s;
  check_same_count(comm, n, where, "numbers of values");
  Digest layout;
  for (Index s : sizes) layout.add(std::int64_t(s));
  const std::uint64_t mine = layout.value();
  std::int64_t signed_digest;
  std::memcpy(&signed_digest, &mine, sizeof mine);
  const auto [lo, hi] = min_max(comm, signed_digest, where);
  if (lo != hi)
    lmshrink::detail::fail<value_error>(where, "the ranks passed ", sizes.size(), " tensors of ", n, " values in all, "
                                        "but of different sizes (this rank's sizes digest to ", hex(mine),
                                        "); every rank must pass the same tensors in the same order");
}

}  // namespace detail

// Collectives and digests that a data-parallel program needs beside the gradient reduction, with
// lmshrink's errors: all_gather(comm, mine, count, all, where), broadcast(comm, data, count, root,
// where) (any count: chunked under MPI's int limit), Digest (64 bits that tell whether two
// ranks hold the same bytes; not cryptographic) and hex(digest).
using detail::all_gather;
using detail::broadcast;
using detail::Digest;
using detail::hex;

/// A contiguous tensor to reduce or broadcast: `size` values from `data`.
template <class Scalar>
struct Tensor {
  Scalar* data = nullptr;
  Index size = 0;
};

/// A view of a dense Eigen matrix or vector (always contiguous).
template <class Derived>
Tensor<typename Derived::Scalar> tensor(Eigen::PlainObjectBase<Derived>& m) {
  return {m.data(), m.size()};
}
template <class Derived>
Tensor<const typename Derived::Scalar> tensor(const Eigen::PlainObjectBase<Derived>& m) {
  return {m.data(), m.size()};
}

/// Appends the tensors of a layer's gradients (LowRankSparseLinear<Scalar>::Gradients): U, V, S
/// and the bias when the layer has one.
template <class Gradients, class Scalar = typename decltype(Gradients::U)::Scalar>
void append_gradients(std::vector<Tensor<Scalar>>& out, Gradients& g) {
  out.push_back(tensor(g.U));
  out.push_back(tensor(g.V));
  out.push_back(tensor(g.S));
  if (g.bias.size() > 0) out.push_back(tensor(g.bias));
}

/// Appends the tensors of a layer's parameters: U, V, S and the bias when it has one.
template <class Scalar>
void append_parameters(std::vector<Tensor<Scalar>>& out, LowRankSparseLinear<Scalar>& layer) {
  out.push_back(tensor(layer.U()));
  out.push_back(tensor(layer.V()));
  out.push_back(tensor(layer.S()));
  if (layer.has_bias()) out.push_back(tensor(layer.bias()));
}

/// How the values of the ranks are added.
enum class Order {
  /// MPI_Allreduce: MPI's own algorithm (about 2·bytes sent per rank on a ring). The order of
  /// the additions is MPI's, so the rounding can differ from one process adding the same
  /// values; Open MPI's algorithms give every rank the same bits (check_identical() is the
  /// guard if one did not).
  mpi,
  /// A running sum passed from rank to rank in rank order (rank r adds its values to what rank
  /// r − 1 sent), then broadcast from the last rank: the same bits on every rank whatever the MPI
  /// library, and the same bits as one process adding the contributions in that order. Each rank
  /// receives at most 2·bytes, however many ranks and contributions per rank; the N − 1 hops run
  /// one after the other.
  ranks,
};

/// Reduces and broadcasts lists of tensors through one fused buffer per call, which it keeps
/// between calls (no allocation once it has grown to the largest call).
template <class Scalar>
class Reducer {
  static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>,
                "Scalar must be float or double");

 public:
  explicit Reducer(MPI_Comm comm = MPI_COMM_WORLD, Order order = Order::mpi)
      : comm_(comm), order_(order), rank_(detail::rank_of(comm)), size_(detail::size_of(comm)) {}

  MPI_Comm comm() const { return comm_; }
  Order order() const { return order_; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  /// Values in the fused buffer of the last call (its bytes: × sizeof(Scalar)).
  Index last_values() const { return last_values_; }
  /// Values this rank received in the last call: exact for Order::ranks and broadcasts; for
  /// Order::mpi, a ring all-reduce's 2·(N − 1)/N buffers (MPI's algorithm decides the real one).
  Index last_received_values() const { return last_received_; }

  /// Replaces every tensor by its sum over the ranks.
  void sum(const std::vector<Tensor<Scalar>>& tensors) { reduce(tensors, false, "lmshrink::mpi::Reducer::sum"); }

  /// Replaces every tensor by its mean over the ranks (the sum divided by the number of ranks).
  void average(const std::vector<Tensor<Scalar>>& tensors) {
    reduce(tensors, true, "lmshrink::mpi::Reducer::average");
  }

  /// out = the sum, in order, of every contribution of every rank: rank 0's contributions in
  /// their order, then rank 1's, and so on; each contribution is a list of tensors shaped like
  /// `out`, and every rank passes the same number. The first contribution is copied and the
  /// others added one by one, so the result has the same bits as one process adding all the
  /// contributions in that order (e.g. the shards of a batch, spread over the ranks). With
  /// Order::mpi, each rank adds its own contributions and MPI_Allreduce adds the ranks' sums:
  /// scalable, but equal to one process's sum only within rounding.
  void sum_in_order(const std::vector<std::vector<Tensor<const Scalar>>>& contributions,
                    const std::vector<Tensor<Scalar>>& out) {
    static constexpr const char* where = "lmshrink::mpi::Reducer::sum_in_order";
    const Index n = total(out, where);
    for (std::size_t c = 0; c < contributions.size(); ++c) {
      total(contributions[c], where);
      if (contributions[c].size() != out.size())
        lmshrink::detail::fail<shape_error>(where, "contribution ", c, " has ", contributions[c].size(),
                                            " tensors; out has ", out.size());
      for (std::size_t t = 0; t < out.size(); ++t)
        if (contributions[c][t].size != out[t].size)
          lmshrink::detail::fail<shape_error>(where, "contribution ", c, " tensor ", t, " has ",
                                              contributions[c][t].size, " values; out's has ", out[t].size);
    }
    const Index k = Index(contributions.size());
    detail::check_same_count(comm_, k, where, "numbers of contributions");
    detail::check_same_layout(comm_, sizes(out), where);
    if (k < 1) lmshrink::detail::fail<value_error>(where, "every rank must pass at least one contribution");
    last_values_ = n;
    buffer_.resize(std::size_t(n));
    std::size_t first = 0;  // the first contribution this rank adds to the running sum
    if (order_ == Order::mpi || rank_ == 0) {
      pack(contributions[0], buffer_.data());
      first = 1;
    } else {
      receive_running_sum(where);
    }
    for (std::size_t c = first; c < contributions.size(); ++c) add(contributions[c]);
    if (order_ == Order::mpi) all_reduce_sum(where);
    else pass_running_sum(where);
    unpack(out);
  }

  /// Copies rank `root`'s tensors to every rank.
  void broadcast(const std::vector<Tensor<Scalar>>& tensors, int root = 0) {
    static constexpr const char* where = "lmshrink::mpi::Reducer::broadcast";
    check_root(root, where);
    const Index n = total(tensors, where);
    detail::check_same_layout(comm_, sizes(tensors), where);
    last_values_ = n;
    buffer_.resize(std::size_t(n));
    if (rank_ == root) pack(tensors, buffer_.data());
    detail::broadcast(comm_, buffer_.data(), n, root, where);
    last_received_ = rank_ == root ? 0 : n;
    if (rank_ != root) unpack(tensors);
  }

 private:
  template <class T>
  static std::vector<Index> sizes(const std::vector<Tensor<T>>& tensors) {
    std::vector<Index> out;
    out.reserve(tensors.size());
    for (const auto& t : tensors) out.push_back(t.size);
    return out;
  }

  template <class T>
  static Index total(const std::vector<Tensor<T>>& tensors, const char* where) {
    Index n = 0;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      if (tensors[i].size < 0 || (tensors[i].size > 0 && tensors[i].data == nullptr))
        lmshrink::detail::fail<value_error>(where, "tensor ", i, " has size ", tensors[i].size,
                                            (tensors[i].size > 0 ? " and no data" : ""));
      n += tensors[i].size;
    }
    return n;
  }

  void check_root(int root, const char* where) const {
    if (root < 0 || root >= size_)
      lmshrink::detail::fail<value_error>(where, "root must be a rank in [0, ", size_, "), got ", root);
  }

  template <class T>
  static void pack(const std::vector<Tensor<T>>& tensors, Scalar* to) {
    for (const auto& t : tensors) {
      if (t.size > 0) std::memcpy(to, t.data, std::size_t(t.size) * sizeof(Scalar));
      to += t.size;
    }
  }

  void unpack(const std::vector<Tensor<Scalar>>& tensors) const {
    const Scalar* from = buffer_.data();
    for (const auto& t : tensors) {
      if (t.size > 0) std::memcpy(t.data, from, std::size_t(t.size) * sizeof(Scalar));
      from += t.size;
    }
  }

  /// buffer_ += the contribution's tensors, in order (each element one addition).
  void add(const std::vector<Tensor<const Scalar>>& contribution) {
    Scalar* to = buffer_.data();
    for (const auto& t : contribution) {
      Eigen::Map<Eigen::Matrix<Scalar, Eigen::Dynamic, 1>>(to, t.size) +=
          Eigen::Map<const Eigen::Matrix<Scalar, Eigen::Dynamic, 1>>(t.data, t.size);
      to += t.size;
    }
  }

  void all_reduce_sum(const char* where) {
    const Index n = Index(buffer_.size());
    for (Index at = 0; at < n; at += detail::kChunk)
      detail::check(MPI_Allreduce(MPI_IN_PLACE, buffer_.data() + at, int(std::min(detail::kChunk, n - at)),
                                  detail::datatype<Scalar>(), MPI_SUM, comm_),
                    where, "MPI_Allreduce");
    last_received_ = size_ > 1 ? 2 * n * (size_ - 1) / size_ : 0;
  }

  /// Order::ranks, on ranks after the first: the running sum of the ranks before this one.
  void receive_running_sum(const char* where) {
    const Index n = Index(buffer_.size());
    for (Index at = 0; at < n; at += detail::kChunk)
      detail::check(MPI_Recv(buffer_.data() + at, int(std::min(detail::kChunk, n - at)), detail::datatype<Scalar>(),
                             rank_ - 1, kRunningSumTag, comm_, MPI_STATUS_IGNORE),
                    where, "MPI_Recv");
  }

  /// Order::ranks, once this rank has added its values: on to the next rank, and the last rank's
  /// total back to every rank.
  void pass_running_sum(const char* where) {
    const Index n = Index(buffer_.size());
    if (rank_ + 1 < size_)
      for (Index at = 0; at < n; at += detail::kChunk)
        detail::check(MPI_Send(buffer_.data() + at, int(std::min(detail::kChunk, n - at)), detail::datatype<Scalar>(),
                               rank_ + 1, kRunningSumTag, comm_),
                      where, "MPI_Send");
    detail::broadcast(comm_, buffer_.data(), n, size_ - 1, where);
    last_received_ = (rank_ > 0 ? n : 0) + (rank_ + 1 < size_ ? n : 0);
  }

  void reduce(const std::vector<Tensor<Scalar>>& tensors, bool mean, const char* where) {
    const Index n = total(tensors, where);
    detail::check_same_layout(comm_, sizes(tensors), where);
    last_values_ = n;
    buffer_.resize(std::size_t(n));
    if (order_ == Order::mpi || rank_ == 0) {
      pack(tensors, buffer_.data());
    } else {
      receive_running_sum(where);
      std::vector<Tensor<const Scalar>> mine;
      for (const auto& t : tensors) mine.push_back({t.data, t.size});
      add(mine);
    }
    if (order_ == Order::mpi) all_reduce_sum(where);
    else pass_running_sum(where);
    if (mean && size_ > 1)
      Eigen::Map<Eigen::Matrix<Scalar, Eigen::Dynamic, 1>>(buffer_.data(), n) /= Scalar(size_);
    unpack(tensors);
  }

  static constexpr int kRunningSumTag = 0x6c6d;
  MPI_Comm comm_;
  Order order_;
  int rank_ = 0, size_ = 1;
  Index last_values_ = 0, last_received_ = 0;
  std::vector<Scalar> buffer_;
};

/// Copies rank `root`'s layers (U, V, S, bias, row and element masks) to every rank: one fused
/// buffer of parameters and one of masks. The layers must have the same shapes and ranks on
/// every rank; if not, every rank throws a shape_error naming the first layer that differs.
template <class Scalar>
void broadcast_layers(MPI_Comm comm, const std::vector<LowRankSparseLinear<Scalar>*>& layers, int root = 0) {
  static constexpr const char* where = "lmshrink::mpi::broadcast_layers";
  const int rank = detail::rank_of(comm), size = detail::size_of(comm);
  if (root < 0 || root >= size)
    lmshrink::detail::fail<value_error>(where, "root must be a rank in [0, ", size, "), got ", root);
  detail::check_same_count(comm, std::int64_t(layers.size()), where, "numbers of layers");
  // Each layer's shape (out, in, rank, bias, element mask), compared with the root's.
  std::vector<std::int64_t> shape, root_shape;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    if (layers[i] == nullptr) lmshrink::detail::fail<value_error>(where, "layer ", i, " is null");
    const auto& l = *layers[i];
    shape.insert(shape.end(), {std::int64_t(l.out_features()), std::int64_t(l.in_features()), std::int64_t(l.rank()),
                               std::int64_t(l.has_bias()), std::int64_t(l.has_element_mask())});
  }
  root_shape = shape;
  detail::broadcast(comm, root_shape.data(), Index(root_shape.size()), root, where);
  std::int64_t first_bad = std::numeric_limits<std::int64_t>::max();
  for (std::size_t i = 0; i < layers.size(); ++i)
    if (!std::equal(shape.begin() + std::ptrdiff_t(5 * i), shape.begin() + std::ptrdiff_t(5 * i + 5),
                    root_shape.begin() + std::ptrdiff_t(5 * i))) {
      first_bad = std::int64_t(i);
      break;
    }
  const std::int64_t bad = detail::min_max(comm, first_bad, where).first;
  if (bad != std::numeric_limits<std::int64_t>::max()) {
    const auto describe = [](const std::vector<std::int64_t>& s, std::int64_t i) {
      return lmshrink::detail::concat("(", s[std::size_t(5 * i)], ", ", s[std::size_t(5 * i + 1)], ") rank ",
                                      s[std::size_t(5 * i + 2)], s[std::size_t(5 * i + 3)] ? " with bias" : "",
                                      s[std::size_t(5 * i + 4)] ? " with an element mask" : "");
    };
    lmshrink::detail::fail<shape_error>(where, "layer ", bad, " differs across ranks: rank ", root, " has ",
                                        describe(root_shape, bad), ", this rank (", rank, ") ",
                                        describe(shape, bad));
  }
  // Masks first: setting them zeroes masked entries of S, which the parameters then overwrite
  // with the root's S exactly.
  std::vector<std::uint8_t> masks;
  for (auto* l : layers) {
    masks.insert(masks.end(), l->row_mask().data(), l->row_mask().data() + l->row_mask().size());
    if (l->has_element_mask())
      masks.insert(masks.end(), l->element_mask().data(), l->element_mask().data() + l->element_mask().size());
  }
  detail::broadcast(comm, masks.data(), Index(masks.size()), root, where);
  if (rank != root) {
    std::size_t at = 0;
    for (auto* l : layers) {
      const RowMask rows = Eigen::Map<const RowMask>(masks.data() + at, l->out_features());
      at += std::size_t(l->out_features());
      if (l->has_element_mask()) {
        const ElementMask elements =
            Eigen::Map<const ElementMask>(masks.data() + at, l->out_features(), l->in_features());
        at += std::size_t(elements.size());
        l->clear_element_mask();
        l->set_row_mask(rows);
        l->set_element_mask(elements);
      } else {
        l->set_row_mask(rows);
      }
    }
  }
  Reducer<Scalar> reducer(comm);
  std::vector<Tensor<Scalar>> params;
  for (auto* l : layers) append_parameters(params, *l);
  reducer.broadcast(params, root);
}

/// Digests of one pruned layer's state: its masks (rows and elements) and its importance state
/// (moving average, window mean, uncertainty, last step).
struct LayerDigest {
  std::uint64_t masks = 0, importance = 0;
};

/// The digests of every layer of a pruner, in the order the layers were added.
template <class Scalar>
std::vector<LayerDigest> digest(const Pruner<Scalar>& pruner) {
  std::vector<LayerDigest> out(std::size_t(pruner.layers()));
  for (Index i = 0; i < pruner.layers(); ++i) {
    detail::Digest masks, importance;
    masks.add(pruner.row_mask(i));
    masks.add(pruner.element_mask(i));
    const auto& t = pruner.importance(i);
    importance.add(std::int64_t(t.last_step()));
    importance.add(t.ema());
    importance.add(t.window_mean());
    importance.add(t.uncertainty());
    out[std::size_t(i)] = {masks.value(), importance.value()};
  }
  return out;
}

/// Compares every rank's pruner with rank 0's (the layers' digests, gathered: 16 bytes per layer
/// and rank) and, if any differs, throws the same state_error on every rank naming the first
/// layer that differs, what differs and on which rank. Call it on every rank at the same point,
/// e.g. after each mask step.
template <class Scalar>
void check_identical(MPI_Comm comm, const Pruner<Scalar>& pruner) {
  static constexpr const char* where = "lmshrink::mpi::check_identical";
  const int size = detail::size_of(comm);
  const std::int64_t layers = pruner.layers();
  const auto [lo, hi] = detail::min_max(comm, layers, where);
  if (lo != hi)
    lmshrink::detail::fail<state_error>(where, "the ranks' pruners have different numbers of layers: from ", lo,
                                        " to ", hi);
  std::vector<std::uint64_t> mine;
  mine.push_back(std::uint64_t(pruner.last_step()));
  for (const LayerDigest& d : digest(pruner)) {
    mine.push_back(d.masks);
    mine.push_back(d.importance);
  }
  std::vector<std::uint64_t> all(mine.size() * std::size_t(size));
  detail::all_gather(comm, mine.data(), Index(mine.size()), all.data(), where);
  const std::size_t per = mine.size();
  for (int r = 1; r < size; ++r) {
    const std::uint64_t* a = all.data();
    const std::uint64_t* b = all.data() + std::size_t(r) * per;
    if (a[0] != b[0])
      lmshrink::detail::fail<state_error>(where, "the pruners are at different steps: rank 0 at ",
                                          std::int64_t(a[0]), ", rank ", r, " at ", std::int64_t(b[0]));
  }
  for (std::int64_t i = 0; i < layers; ++i)
    for (int r = 1; r < size; ++r) {
      const std::uint64_t* a = all.data() + 1 + 2 * i;
      const std::uint64_t* b = all.data() + std::size_t(r) * per + 1 + 2 * i;
      if (a[0] != b[0] || a[1] != b[1]) {
        const bool masks = a[0] != b[0];
        lmshrink::detail::fail<state_error>(
            where, "layer ", i, " ('", pruner.name(i), "') differs across ranks after step ", pruner.last_step(),
            ": its ", masks ? "masks" : "importance scores", " on rank ", r, " (digest ",
            detail::hex(masks ? b[0] : b[1]), ") are not rank 0's (", detail::hex(masks ? a[0] : a[1]),
            "); the ranks' gradients or parameters diverged");
      }
    }
}

}  // namespace mpi
LMSHRINK_NAMESPACE_END
