#pragma once
// Opt-in xtensor adapters (not included by lmshrink.hpp): zero-copy views both ways.
//
//   xt::xtensor<float, 2> w = ...;                  // (out, in), row-major
//   auto w_eigen = lmshrink::as_eigen(w);           // Eigen::Map, no copy
//   auto y_xt = lmshrink::as_xtensor(y_eigen);      // xtensor adaptor over Eigen memory, no copy
//
// The caller keeps the viewed memory alive and unresized while a view is used.

#include <Eigen/Core>
#include <array>
#include <cstddef>
#include <xtensor/xadapt.hpp>
#include <xtensor/xtensor.hpp>

#include "config.hpp"
#include "errors.hpp"
#include "types.hpp"

LMSHRINK_NAMESPACE_BEGIN

namespace detail {

template <class Tensor>
Index checked_outer_stride(const Tensor& t) {
  static_assert(std::is_floating_point<typename Tensor::value_type>::value,
                "lmshrink::as_eigen: the tensor's value_type must be float or double");
  if (t.dimension() != 2)
    fail<shape_error>("as_eigen", "a 2-D tensor was expected, got ", t.dimension(),
                      " dimensions");
  const auto& st = t.strides();
  const auto rows = static_cast<Index>(t.shape()[0]);
  const auto cols = static_cast<Index>(t.shape()[1]);
  // xtensor reports stride 0 along an axis of extent 1.
  const Index inner = cols == 1 ? 1 : static_cast<Index>(st[1]);
  const Index outer = rows == 1 ? cols : static_cast<Index>(st[0]);
  if (inner != 1 || outer < cols)
    fail<shape_error>("as_eigen", "a row-major tensor with unit column stride was expected, got "
                      "strides (", st[0], ", ", st[1], ") for shape (", rows, ", ", cols, ")");
  return outer;
}

}  // namespace detail

/// Eigen row-major view of a 2-D row-major xtensor container (xtensor, xarray, adaptors).
template <class Tensor>
auto as_eigen(Tensor& t) {
  using Scalar = typename std::remove_const<typename Tensor::value_type>::type;
  const Index outer = detail::checked_outer_stride(t);
  return MatrixMap<Scalar>(t.data() + t.data_offset(), static_cast<Index>(t.shape()[0]),
                           static_cast<Index>(t.shape()[1]), Eigen::OuterStride<>(outer));
}

template <class Tensor>
auto as_eigen(const Tensor& t) {
  using Scalar = typename std::remove_const<typename Tensor::value_type>::type;
  const Index outer = detail::checked_outer_stride(t);
  return ConstMatrixMap<Scalar>(t.data() + t.data_offset(), static_cast<Index>(t.shape()[0]),
                                static_cast<Index>(t.shape()[1]), Eigen::OuterStride<>(outer));
}

/// xtensor view (shape (rows, cols), strides (outer, 1)) of row-major Eigen memory: a matrix,
/// a Map, a Ref or a block of one. Writable unless the Eigen object is const.
template <class EigenMatrix>
auto as_xtensor(EigenMatrix&& m) {
  using Plain = typename std::decay<EigenMatrix>::type;
  static_assert(bool(Plain::IsRowMajor) || Plain::ColsAtCompileTime == 1,
                "lmshrink::as_xtensor: the Eigen matrix must be row-major");
  static_assert(bool(Eigen::internal::traits<Plain>::Flags & Eigen::DirectAccessBit),
                "lmshrink::as_xtensor: the Eigen expression must refer to memory (a matrix, Map, "
                "Ref or block), not a computed expression");
  if (m.innerStride() != 1)
    detail::fail<shape_error>("as_xtensor", "a unit column stride was expected, got ",
                              m.innerStride());
  const std::array<std::size_t, 2> shape = {static_cast<std::size_t>(m.rows()),
                                            static_cast<std::size_t>(m.cols())};
  const std::array<std::ptrdiff_t, 2> strides = {static_cast<std::ptrdiff_t>(m.outerStride()), 1};
  // xtensor's adaptor takes the element count, not the memory span, even when strided.
  const std::size_t count = shape[0] * shape[1];
  return xt::adapt(m.data(), count, xt::no_ownership(), shape, strides);
}

LMSHRINK_NAMESPACE_END
