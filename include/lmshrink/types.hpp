#pragma once
// Matrix aliases used at every boundary. Weights are (out, in) and row-major, like nn.Linear,
// llm.c and llama2.c; activations are (tokens, features), row-major.
//
// Note: a `ConstMatrixRef` bound to an expression of another layout (column-major, or an inner
// stride other than 1) silently makes a temporary copy; a writable `MatrixRef` refuses to compile.

#include <Eigen/Core>
#include <string>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "config.hpp"
#include "errors.hpp"

LMSHRINK_NAMESPACE_BEGIN

using Index = Eigen::Index;

template <class Scalar>
using RowMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class Scalar>
using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

template <class Scalar>
using ConstMatrixRef = Eigen::Ref<const RowMatrix<Scalar>, 0, Eigen::OuterStride<>>;
template <class Scalar>
using MatrixRef = Eigen::Ref<RowMatrix<Scalar>, 0, Eigen::OuterStride<>>;
template <class Scalar>
using ConstMatrixMap = Eigen::Map<const RowMatrix<Scalar>, 0, Eigen::OuterStride<>>;
template <class Scalar>
using MatrixMap = Eigen::Map<RowMatrix<Scalar>, 0, Eigen::OuterStride<>>;
template <class Scalar>
using ConstVectorRef = Eigen::Ref<const Vector<Scalar>>;

/// Row mask of S: one byte per output row, 1 = live, 0 = pruned.
using RowMask = Eigen::Matrix<std::uint8_t, Eigen::Dynamic, 1>;
/// Element mask of S: (out, in), 1 = live, 0 = pruned.
using ElementMask = Eigen::Matrix<std::uint8_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Throws shape_error unless m is rows x cols, naming both shapes:
///   lmshrink::check_shape("my_loss", "dlogits", dlogits, logits.rows(), logits.cols());
template <class Derived>
void check_shape(const char* where, const char* what, const Eigen::DenseBase<Derived>& m,
                 Index rows, Index cols) {
  if (m.rows() != rows || m.cols() != cols)
    fail<shape_error>(where, what, " is ", m.rows(), "x", m.cols(), " but ", rows, "x", cols,
                      " was expected");
}

namespace detail {

using lmshrink::check_shape;

/// Keeps a parameter out of template argument deduction (std::type_identity before C++20).
template <class T>
struct non_deduced {
  using type = T;
};
template <class T>
using non_deduced_t = typename non_deduced<T>::type;

/// Throws shape_error unless the vector v has n entries.
template <class Derived>
void check_length(const char* where, const char* what, const Eigen::DenseBase<Derived>& v, Index n) {
  if (v.size() != n) fail<shape_error>(where, what, " has ", v.size(), " entries but ", n, " were expected");
}

/// Throws shape_error unless the input x has `in_features` columns (one row per token).
template <class Derived>
void check_input_width(const char* where, const Eigen::DenseBase<Derived>& x, Index in_features) {
  if (x.cols() != in_features)
    fail<shape_error>(where, "x has ", x.cols(), " columns but in_features is ", in_features);
}

/// Throws numeric_error if m holds NaN or Inf.
template <class Derived>
void check_finite(const char* where, const char* what, const Eigen::DenseBase<Derived>& m) {
  for (Index i = 0; i < m.rows(); ++i)
    for (Index j = 0; j < m.cols(); ++j)
      if (!std::isfinite(static_cast<double>(m(i, j))))
        fail<numeric_error>(where, what, " has a non-finite value (", m(i, j), ") at (", i, ", ",
                            j, "); finite values were expected");
}

/// Validates a raw row-major buffer and maps it without copying.
template <class Scalar>
ConstMatrixMap<Scalar> map_rows(const char* where, const char* what, const Scalar* data,
                                Index rows, Index cols, Index ld) {
  if (rows < 0 || cols < 0)
    fail<shape_error>(where, what, " has negative extent ", rows, "x", cols);
  if (ld < cols)
    fail<shape_error>(where, what, " leading dimension is ", ld, " but at least ", cols,
                      " (its column count) was expected");
  if (data == nullptr && rows > 0 && cols > 0)
    fail<value_error>(where, what, " is a null pointer for a ", rows, "x", cols, " matrix");
  return ConstMatrixMap<Scalar>(data, rows, cols, Eigen::OuterStride<>(ld));
}

template <class Scalar>
MatrixMap<Scalar> map_rows_mut(const char* where, const char* what, Scalar* data, Index rows,
                               Index cols, Index ld) {
  map_rows<Scalar>(where, what, data, rows, cols, ld);
  return MatrixMap<Scalar>(data, rows, cols, Eigen::OuterStride<>(ld));
}

}  // namespace detail

/// A named view of one linear weight of the model, (out, in) row-major.
struct NamedWeight {
  std::string name;  // e.g. "layers.3.feed_forward.w1"
  RowMatrix<float>* matrix;
};

LMSHRINK_NAMESPACE_END
