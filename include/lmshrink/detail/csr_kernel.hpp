#pragma once
#if !defined(LMSHRINK_INSIDE_LIBRARY) && !defined(LMSHRINK_TESTING_INTERNALS)
#error "lmshrink/detail/ is internal: include the public header instead (lmshrink/files.hpp, lmshrink/random.hpp, ...; docs/design.md)"
#endif
// y[:, row] += x · S[row, :]ᵀ for S in compressed sparse rows: the unstructured (element-mask)
// sparse part of the compact form.
//
// A single token is a gathered dot product per row. A batch is processed 16 tokens at a time:
// the tokens' inputs are transposed into a (in, 16) block so that each stored value multiplies
// 16 contiguous inputs, which vectorizes without gathers.

#include <algorithm>
#include <cstdint>

#include "../config.hpp"
#include "../types.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace detail {

constexpr Index kCsrTokenBlock = 16;

template <class Scalar>
struct CsrView {
  const std::int32_t* row_ptr;  // out + 1 offsets
  const std::int32_t* col;
  const Scalar* val;
};

/// Rows [r0, r1) for one token.
template <class Scalar>
inline void csr_rows_one_token(const CsrView<Scalar>& s, Index r0, Index r1, const Scalar* x,
                               Scalar* y) {
  for (Index r = r0; r < r1; ++r) {
    const std::int32_t e0 = s.row_ptr[r], e1 = s.row_ptr[r + 1];
    if (e0 == e1) continue;
    Scalar a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    std::int32_t e = e0;
    for (; e + 4 <= e1; e += 4) {
      a0 += s.val[e] * x[s.col[e]];
      a1 += s.val[e + 1] * x[s.col[e + 1]];
      a2 += s.val[e + 2] * x[s.col[e + 2]];
      a3 += s.val[e + 3] * x[s.col[e + 3]];
    }
    for (; e < e1; ++e) a0 += s.val[e] * x[s.col[e]];
    y[r] += (a0 + a1) + (a2 + a3);
  }
}

/// Transposes tokens [0, tb) of x into xt (in, kCsrTokenBlock), zero-padding the missing tokens.
template <class Scalar>
inline void csr_transpose_block(Index tb, Index in, const Scalar* x, Index ldx, Scalar* xt) {
  for (Index k = 0; k < in; ++k) {
    Scalar* dst = xt + k * kCsrTokenBlock;
    for (Index t = 0; t < tb; ++t) dst[t] = x[t * ldx + k];
    for (Index t = tb; t < kCsrTokenBlock; ++t) dst[t] = Scalar(0);
  }
}

/// Rows [r0, r1) for a block of tb ≤ 16 tokens whose inputs are transposed in xt.
template <class Scalar>
inline void csr_rows_token_block(const CsrView<Scalar>& s, Index r0, Index r1, const Scalar* xt,
                                 Index tb, Scalar* y, Index ldy) {
  for (Index r = r0; r < r1; ++r) {
    const std::int32_t e0 = s.row_ptr[r], e1 = s.row_ptr[r + 1];
    if (e0 == e1) continue;
    Scalar acc[kCsrTokenBlock] = {};
    for (std::int32_t e = e0; e < e1; ++e) {
      const Scalar v = s.val[e];
      const Scalar* xc = xt + Index(s.col[e]) * kCsrTokenBlock;
      for (Index t = 0; t < kCsrTokenBlock; ++t) acc[t] += v * xc[t];
    }
    for (Index t = 0; t < tb; ++t) y[t * ldy + r] += acc[t];
  }
}

}  // namespace detail
LMSHRINK_NAMESPACE_END
