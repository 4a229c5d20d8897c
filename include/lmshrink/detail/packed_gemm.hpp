#pragma once
// Matrix products against weights packed once, for the compact inference form.
//
// A weight W (n, K) is stored as panels of kPanelWidth rows: panel p holds rows p·32 .. p·32+31
// transposed, K × 32 values, k-major, zero-padded past n. One pass of the micro-kernel computes
// a tile of MR tokens × 32 outputs over the whole K and then either stores the tile into
// contiguous output columns (adding a bias) or adds it into the scattered columns given by an
// index list. The second epilogue is how kept rows of S reach their outputs without a buffer.
//
// Kernels: an AVX-512 one for float when the translation unit is compiled with AVX-512F (e.g.
// -march=native on a machine that has it), an AVX2+FMA one when only those are enabled, and a
// portable one for everything else (double, other ISAs). All give the same result up to
// rounding; the tests compare each with a naive loop.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

#include "../config.hpp"
#include "../types.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace detail {

constexpr Index kPanelWidth = 32;

template <class Scalar>
using AlignedVector = std::vector<Scalar, Eigen::aligned_allocator<Scalar>>;

/// Rows of a row-major (n, K) matrix packed into 32-wide, k-major panels.
template <class Scalar>
struct PackedPanels {
  Index rows = 0;  // n
  Index depth = 0; // K
  AlignedVector<Scalar> data;

  Index panels() const { return (rows + kPanelWidth - 1) / kPanelWidth; }
  const Scalar* panel(Index p) const { return data.data() + p * depth * kPanelWidth; }
  /// Values that are not padding.
  Index stored_values() const { return rows * depth; }

  /// Packs `count` rows of `w`; row j of the packing is row `row_of(j)` of w.
  template <class RowOf>
  static PackedPanels pack(const Scalar* w, Index ldw, Index count, Index depth, RowOf row_of) {
    PackedPanels p;
    p.rows = count;
    p.depth = depth;
    p.data.assign(static_cast<std::size_t>(p.panels() * depth * kPanelWidth), Scalar(0));
    for (Index j = 0; j < count; ++j) {
      const Scalar* src = w + row_of(j) * ldw;
      Scalar* dst = p.data.data() + (j / kPanelWidth) * depth * kPanelWidth + j % kPanelWidth;
      for (Index k = 0; k < depth; ++k) dst[k * kPanelWidth] = src[k];
    }
    return p;
  }

  /// Row j, column k of the packed matrix.
  Scalar at(Index j, Index k) const {
    return data[static_cast<std::size_t>((j / kPanelWidth) * depth * kPanelWidth +
                                         k * kPanelWidth + j % kPanelWidth)];
  }
};

/// Where a tile goes: contiguous columns (store, plus bias) or scattered columns (add).
template <class Scalar>
struct TileOutput {
  Scalar* c = nullptr;            // row 0 of the output rows this call covers
  Index ldc = 0;
  const Scalar* bias = nullptr;   // store mode: per output column, may be null
  const std::int32_t* scatter = nullptr;  // scatter-add mode: output column of each packed row
};

// ---- epilogue shared by all kernels --------------------------------------------------------

template <class Scalar>
inline void finish_row(const Scalar* acc, Index valid, Index col0, Scalar* c_row,
                       const TileOutput<Scalar>& out) {
  if (out.scatter != nullptr) {
    const std::int32_t* idx = out.scatter + col0;
    for (Index j = 0; j < valid; ++j) c_row[idx[j]] += acc[j];
  } else if (out.bias != nullptr) {
    for (Index j = 0; j < valid; ++j) c_row[col0 + j] = acc[j] + out.bias[col0 + j];
  } else {
    for (Index j = 0; j < valid; ++j) c_row[col0 + j] = acc[j];
  }
}

// ---- portable kernel -----------------------------------------------------------------------

template <int MR, class Scalar>
inline void tile_portable(Index K, const Scalar* a, Index lda, const Scalar* b, Index valid,
                          Index col0, Scalar* c, const TileOutput<Scalar>& out) {
  Scalar acc[MR][kPanelWidth];
  for (int i = 0; i < MR; ++i)
    for (Index j = 0; j < kPanelWidth; ++j) acc[i][j] = Scalar(0);
  for (Index k = 0; k < K; ++k) {
    const Scalar* bk = b + k * kPanelWidth;
    for (int i = 0; i < MR; ++i) {
      const Scalar ai = a[i * lda + k];
      for (Index j = 0; j < kPanelWidth; ++j) acc[i][j] += ai * bk[j];
    }
  }
  for (int i = 0; i < MR; ++i) finish_row(acc[i], valid, col0, c + i * out.ldc, out);
}

#if defined(__AVX512F__)
// 16 floats per register, two registers per panel row. Small MR splits K into independent
// accumulator chains so that a single token is bound by memory, not by FMA latency.
template <int MR>
inline void tile_avx512(Index K, const float* a, Index lda, const float* b, Index valid,
                        Index col0, float* c, const TileOutput<float>& out) {
  constexpr int KU = MR == 1 ? 4 : (MR == 2 ? 2 : 1);
  __m512 acc[KU][MR][2];
  for (int u = 0; u < KU; ++u)
    for (int i = 0; i < MR; ++i) acc[u][i][0] = acc[u][i][1] = _mm512_setzero_ps();
  Index k = 0;
  for (; k + KU <= K; k += KU) {
    for (int u = 0; u < KU; ++u) {
      const float* bk = b + (k + u) * kPanelWidth;
      const __m512 b0 = _mm512_loadu_ps(bk);
      const __m512 b1 = _mm512_loadu_ps(bk + 16);
      for (int i = 0; i < MR; ++i) {
        const __m512 ai = _mm512_set1_ps(a[i * lda + k + u]);
        acc[u][i][0] = _mm512_fmadd_ps(ai, b0, acc[u][i][0]);
        acc[u][i][1] = _mm512_fmadd_ps(ai, b1, acc[u][i][1]);
      }
    }
  }
  for (; k < K; ++k) {
    const float* bk = b + k * kPanelWidth;
    const __m512 b0 = _mm512_loadu_ps(bk);
    const __m512 b1 = _mm512_loadu_ps(bk + 16);
    for (int i = 0; i < MR; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i * lda + k]);
      acc[0][i][0] = _mm512_fmadd_ps(ai, b0, acc[0][i][0]);
      acc[0][i][1] = _mm512_fmadd_ps(ai, b1, acc[0][i][1]);
    }
  }
  for (int u = 1; u < KU; ++u)
    for (int i = 0; i < MR; ++i) {
      acc[0][i][0] = _mm512_add_ps(acc[0][i][0], acc[u][i][0]);
      acc[0][i][1] = _mm512_add_ps(acc[0][i][1], acc[u][i][1]);
    }
  if (out.scatter == nullptr && valid == kPanelWidth) {
    __m512 bias0 = _mm512_setzero_ps(), bias1 = _mm512_setzero_ps();
    if (out.bias != nullptr) {
      bias0 = _mm512_loadu_ps(out.bias + col0);
      bias1 = _mm512_loadu_ps(out.bias + col0 + 16);
    }
    for (int i = 0; i < MR; ++i) {
      float* ci = c + i * out.ldc + col0;
      _mm512_storeu_ps(ci, _mm512_add_ps(acc[0][i][0], bias0));
      _mm512_storeu_ps(ci + 16, _mm512_add_ps(acc[0][i][1], bias1));
    }
    return;
  }
  alignas(64) float row[kPanelWidth];
  for (int i = 0; i < MR; ++i) {
    _mm512_store_ps(row, acc[0][i][0]);
    _mm512_store_ps(row + 16, acc[0][i][1]);
    finish_row(row, valid, col0, c + i * out.ldc, out);
  }
}
constexpr int kMaxTileRows = 12;
#elif defined(__AVX2__) && defined(__FMA__)
// 8 floats per register, four per panel row; 16 registers allow 3 token rows.
template <int MR>
inline void tile_avx2(Index K, const float* a, Index lda, const float* b, Index valid,
                      Index col0, float* c, const TileOutput<float>& out) {
  __m256 acc[MR][4];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < 4; ++v) acc[i][v] = _mm256_setzero_ps();
  for (Index k = 0; k < K; ++k) {
    const float* bk = b + k * kPanelWidth;
    const __m256 b0 = _mm256_loadu_ps(bk), b1 = _mm256_loadu_ps(bk + 8);
    const __m256 b2 = _mm256_loadu_ps(bk + 16), b3 = _mm256_loadu_ps(bk + 24);
    for (int i = 0; i < MR; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + i * lda + k);
      acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
      acc[i][2] = _mm256_fmadd_ps(ai, b2, acc[i][2]);
      acc[i][3] = _mm256_fmadd_ps(ai, b3, acc[i][3]);
    }
  }
  alignas(32) float row[kPanelWidth];
  for (int i = 0; i < MR; ++i) {
    for (int v = 0; v < 4; ++v) _mm256_store_ps(row + 8 * v, acc[i][v]);
    finish_row(row, valid, col0, c + i * out.ldc, out);
  }
}
constexpr int kMaxTileRows = 3;
#else
constexpr int kMaxTileRows = 4;
#endif

/// Name of the micro-kernel this translation unit uses for float.
inline const char* float_kernel_name() {
#if defined(__AVX512F__)
  return "avx512";
#elif defined(__AVX2__) && defined(__FMA__)
  return "avx2";
#else
  return "portable";
#endif
}

template <int MR, class Scalar>
inline void tile(Index K, const Scalar* a, Index lda, const Scalar* b, Index valid, Index col0,
                 Scalar* c, const TileOutput<Scalar>& out) {
#if defined(__AVX512F__)
  if constexpr (std::is_same<Scalar, float>::value) {
    tile_avx512<MR>(K, a, lda, b, valid, col0, c, out);
    return;
  }
#elif defined(__AVX2__) && defined(__FMA__)
  if constexpr (std::is_same<Scalar, float>::value && MR <= 3) {
    tile_avx2<MR>(K, a, lda, b, valid, col0, c, out);
    return;
  }
#endif
  tile_portable<MR>(K, a, lda, b, valid, col0, c, out);
}

template <class Scalar, int MR = kMaxTileRows>
inline void tile_rows(Index m, Index K, const Scalar* a, Index lda, const Scalar* b, Index valid,
                      Index col0, Scalar* c, const TileOutput<Scalar>& out) {
  if constexpr (MR > 0) {
    if (m == MR) {
      tile<MR>(K, a, lda, b, valid, col0, c, out);
    } else {
      tile_rows<Scalar, MR - 1>(m, K, a, lda, b, valid, col0, c, out);
    }
  }
}

/// For tokens [0, m) of A (m, K) and panels [p0, p1) of B: C = A·Bᵀ (+ bias) into contiguous
/// columns, or C[:, scatter] += A·Bᵀ.
template <class Scalar>
inline void gemm_panels(Index m, const Scalar* a, Index lda, const PackedPanels<Scalar>& b,
                        Index p0, Index p1, const TileOutput<Scalar>& out) {
  const Index K = b.depth;
  for (Index p = p0; p < p1; ++p) {
    const Scalar* bp = b.panel(p);
    const Index col0 = p * kPanelWidth;
    const Index valid = std::min(kPanelWidth, b.rows - col0);
    Index i = 0;
    for (; i + kMaxTileRows <= m; i += kMaxTileRows)
      tile<kMaxTileRows>(K, a + i * lda, lda, bp, valid, col0, out.c + i * out.ldc, out);
    if (i < m) tile_rows<Scalar>(m - i, K, a + i * lda, lda, bp, valid, col0, out.c + i * out.ldc, out);
  }
}

}  // namespace detail
LMSHRINK_NAMESPACE_END
