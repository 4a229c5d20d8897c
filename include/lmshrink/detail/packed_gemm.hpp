#pragma once
#if !defined(LMSHRINK_INSIDE_LIBRARY) && !defined(LMSHRINK_TESTING_INTERNALS)
#error "lmshrink/detail/ is internal: include the public header instead (lmshrink/files.hpp, lmshrink/random.hpp, ...; docs/design.md)"
#endif
// Matrix products against weights packed once, for the compact inference form.
//
// A weight W (n, K) is stored as panels of kPanelWidth rows: panel p holds rows p·32 .. p·32+31
// transposed, K × 32 values, k-major, zero-padded past n. One pass of the micro-kernel computes
// a tile of MR tokens × 32 outputs over the whole K and then either stores the tile into
// contiguous output columns (adding a bias) or adds it into the scattered columns given by an
// index list. The second epilogue is how kept rows of S reach their outputs without a buffer.
//
// Kernels: for float an AVX-512 one and an AVX2+FMA one (x86 with GCC or Clang), and a portable
// one for everything else (double, other ISAs). Which one runs is a value (Isa) chosen when a
// layer is packed, not a property of the including translation unit: the SIMD kernels are
// compiled with target attributes, so every translation unit holds the same code whatever its
// -m flags (no one-definition-rule hazard), and a plain build still runs the fastest kernel the
// CPU has. All give the same result up to rounding; the tests compare each with a naive loop.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define LMSHRINK_X86_KERNELS 1
#include <immintrin.h>
#define LMSHRINK_TARGET_AVX512 __attribute__((target("avx512f,fma")))
#define LMSHRINK_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define LMSHRINK_X86_KERNELS 0
#endif

#include "../config.hpp"
#include "../types.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace detail {

constexpr Index kPanelWidth = 32;

/// The micro-kernels of one instruction set.
enum class Isa { portable, avx2, avx512 };

/// Whether this CPU (and its OS) can run `isa`'s kernels.
inline bool cpu_supports(Isa isa) {
#if LMSHRINK_X86_KERNELS
  __builtin_cpu_init();
  if (isa == Isa::avx512) return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
  if (isa == Isa::avx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return isa == Isa::portable;
}

/// Tokens per tile of a kernel (its register budget).
template <Isa I>
constexpr int kMaxTileRows = I == Isa::avx512 ? 12 : (I == Isa::avx2 ? 6 : 4);

inline Index max_tile_rows(Isa isa) {
  return isa == Isa::avx512 ? kMaxTileRows<Isa::avx512>
                            : (isa == Isa::avx2 ? kMaxTileRows<Isa::avx2> : kMaxTileRows<Isa::portable>);
}

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
    return pack_rows(count, depth, [&](Index j) { return w + row_of(j) * ldw; });
  }

  /// Packs `count` rows of `depth` values; row j starts at `row_ptr(j)`.
  template <class RowPtr>
  static PackedPanels pack_rows(Index count, Index depth, RowPtr row_ptr) {
    PackedPanels p;
    p.rows = count;
    p.depth = depth;
    p.data.assign(static_cast<std::size_t>(p.panels() * depth * kPanelWidth), Scalar(0));
    if (depth == 0) return p;  // nothing to copy (and data() may be null)
    for (Index j = 0; j < count; ++j) {
      const Scalar* src = row_ptr(j);
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

// COLS is 32, or 16 for a last panel with at most 16 rows (less padding computed).
template <int MR, int COLS, class Scalar>
inline void tile_portable(Index K, const Scalar* a, Index lda, const Scalar* b, Index valid,
                          Index col0, Scalar* c, const TileOutput<Scalar>& out) {
  Scalar acc[MR][COLS];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < COLS; ++j) acc[i][j] = Scalar(0);
  for (Index k = 0; k < K; ++k) {
    const Scalar* bk = b + k * kPanelWidth;
    for (int i = 0; i < MR; ++i) {
      const Scalar ai = a[i * lda + k];
      for (int j = 0; j < COLS; ++j) acc[i][j] += ai * bk[j];
    }
  }
  for (int i = 0; i < MR; ++i) finish_row(acc[i], valid, col0, c + i * out.ldc, out);
}

#if LMSHRINK_X86_KERNELS
// 16 floats per register, two registers per panel row. Small MR splits K into independent
// accumulator chains so that a single token is bound by memory, not by FMA latency.
// (No lambdas inside target-attributed kernels: a lambda would not inherit the target.)
template <int MR, int NV>
LMSHRINK_TARGET_AVX512 inline void step_avx512(__m512 (&acc)[MR][NV], const float* a, Index lda,
                                               const float* b, Index k) {
  const float* bk = b + k * kPanelWidth;
  __m512 bv[NV];
  LMSHRINK_UNROLL for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_ps(bk + 16 * v);
  LMSHRINK_UNROLL for (int i = 0; i < MR; ++i) {
    const __m512 ai = _mm512_set1_ps(a[i * lda + k]);
    LMSHRINK_UNROLL for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
  }
}

template <int MR, int NV>
LMSHRINK_TARGET_AVX512 inline void tile_avx512(Index K, const float* a, Index lda, const float* b,
                                               Index valid, Index col0, float* c,
                                               const TileOutput<float>& out) {
  constexpr int KU = MR == 1 ? 4 : (MR == 2 ? 2 : 1);
  __m512 acc[KU][MR][NV];
  LMSHRINK_UNROLL for (int u = 0; u < KU; ++u)
    LMSHRINK_UNROLL for (int i = 0; i < MR; ++i)
      LMSHRINK_UNROLL for (int v = 0; v < NV; ++v) acc[u][i][v] = _mm512_setzero_ps();
  Index k = 0;
  for (; k + KU <= K; k += KU)
    LMSHRINK_UNROLL for (int u = 0; u < KU; ++u) step_avx512<MR, NV>(acc[u], a, lda, b, k + u);
  for (; k < K; ++k) step_avx512<MR, NV>(acc[0], a, lda, b, k);
  LMSHRINK_UNROLL for (int u = 1; u < KU; ++u)
    LMSHRINK_UNROLL for (int i = 0; i < MR; ++i)
      LMSHRINK_UNROLL for (int v = 0; v < NV; ++v) acc[0][i][v] = _mm512_add_ps(acc[0][i][v], acc[u][i][v]);
  if (out.scatter == nullptr && valid == 16 * NV) {
    __m512 bias[NV];
    LMSHRINK_UNROLL for (int v = 0; v < NV; ++v)
      bias[v] = out.bias != nullptr ? _mm512_loadu_ps(out.bias + col0 + 16 * v)
                                    : _mm512_setzero_ps();
    LMSHRINK_UNROLL for (int i = 0; i < MR; ++i) {
      float* ci = c + i * out.ldc + col0;
      LMSHRINK_UNROLL for (int v = 0; v < NV; ++v) _mm512_storeu_ps(ci + 16 * v, _mm512_add_ps(acc[0][i][v], bias[v]));
    }
    return;
  }
  alignas(64) float row[16 * NV];
  LMSHRINK_UNROLL for (int i = 0; i < MR; ++i) {
    LMSHRINK_UNROLL for (int v = 0; v < NV; ++v) _mm512_store_ps(row + 16 * v, acc[0][i][v]);
    finish_row(row, valid, col0, c + i * out.ldc, out);
  }
}

// One token against NP panels at once, each split into KS segments of K: NP·KS weight streams
// in flight (one stream alone does not reach the memory bandwidth a dense matrix-vector product
// gets) and 2·NP·KS independent accumulator chains. KS is the same for every NP so that each
// output's summation order does not depend on how panels are grouped (or split over threads).
template <int NP, int KS>
LMSHRINK_TARGET_AVX512 inline void panels_one_token_avx512(Index K, const float* x, const float* b, Index stride,
                                    Index col0, Index valid_last, float* y,
                                    const TileOutput<float>& out) {
  __m512 acc[NP][KS][2];
  LMSHRINK_UNROLL for (int p = 0; p < NP; ++p)
    LMSHRINK_UNROLL for (int s = 0; s < KS; ++s) acc[p][s][0] = acc[p][s][1] = _mm512_setzero_ps();
  const Index seg = K / KS;
  for (Index k = 0; k < seg; ++k)
    LMSHRINK_UNROLL for (int s = 0; s < KS; ++s) {
      const Index ks = s * seg + k;
      const __m512 xk = _mm512_set1_ps(x[ks]);
      LMSHRINK_UNROLL for (int p = 0; p < NP; ++p) {
        const float* bk = b + p * stride + ks * kPanelWidth;
        acc[p][s][0] = _mm512_fmadd_ps(xk, _mm512_loadu_ps(bk), acc[p][s][0]);
        acc[p][s][1] = _mm512_fmadd_ps(xk, _mm512_loadu_ps(bk + 16), acc[p][s][1]);
      }
    }
  for (Index k = KS * seg; k < K; ++k) {
    const __m512 xk = _mm512_set1_ps(x[k]);
    LMSHRINK_UNROLL for (int p = 0; p < NP; ++p) {
      const float* bk = b + p * stride + k * kPanelWidth;
      acc[p][0][0] = _mm512_fmadd_ps(xk, _mm512_loadu_ps(bk), acc[p][0][0]);
      acc[p][0][1] = _mm512_fmadd_ps(xk, _mm512_loadu_ps(bk + 16), acc[p][0][1]);
    }
  }
  alignas(64) float row[kPanelWidth];
  LMSHRINK_UNROLL for (int p = 0; p < NP; ++p) {
    LMSHRINK_UNROLL for (int s = 1; s < KS; ++s) {
      acc[p][0][0] = _mm512_add_ps(acc[p][0][0], acc[p][s][0]);
      acc[p][0][1] = _mm512_add_ps(acc[p][0][1], acc[p][s][1]);
    }
    _mm512_store_ps(row, acc[p][0][0]);
    _mm512_store_ps(row + 16, acc[p][0][1]);
    finish_row(row, p + 1 == NP ? valid_last : kPanelWidth, col0 + p * kPanelWidth, y, out);
  }
}

// 8 floats per register and 16 registers. Batches use tiles of up to 6 tokens × 16 outputs
// (half a panel): 12 accumulators, 2 weight vectors and a broadcast, so FMAs and not loads
// bound it. One token keeps 32 outputs and splits K into two accumulator chains (FMA latency).
template <int MR, int NV>
LMSHRINK_TARGET_AVX2 inline void tile_avx2(Index K, const float* a, Index lda, const float* b, Index valid,
                      Index col0, float* c, const TileOutput<float>& out) {
  static_assert(MR * NV <= 12, "tile_avx2: accumulators must fit the 16 registers");
  __m256 acc[MR][NV];
  LMSHRINK_UNROLL for (int i = 0; i < MR; ++i)
    LMSHRINK_UNROLL for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_setzero_ps();
  Index k = 0;
  if constexpr (MR == 1) {
    __m256 acc2[NV];  // the second chain
    LMSHRINK_UNROLL for (int v = 0; v < NV; ++v) acc2[v] = _mm256_setzero_ps();
    for (; k + 2 <= K; k += 2) {
      const float* bk = b + k * kPanelWidth;
      const __m256 a0 = _mm256_broadcast_ss(a + k), a1 = _mm256_broadcast_ss(a + k + 1);
      LMSHRINK_UNROLL for (int v = 0; v < NV; ++v) {
        acc[0][v] = _mm256_fmadd_ps(a0, _mm256_loadu_ps(bk + 8 * v), acc[0][v]);
        acc2[v] = _mm256_fmadd_ps(a1, _mm256_loadu_ps(bk + kPanelWidth + 8 * v), acc2[v]);
      }
    }
    if (k < K) {
      const __m256 a0 = _mm256_broadcast_ss(a + k);
      LMSHRINK_UNROLL for (int v = 0; v < NV; ++v)
        acc[0][v] = _mm256_fmadd_ps(a0, _mm256_loadu_ps(b + k * kPanelWidth + 8 * v), acc[0][v]);
    }
    LMSHRINK_UNROLL for (int v = 0; v < NV; ++v) acc[0][v] = _mm256_add_ps(acc[0][v], acc2[v]);
  } else {
    for (; k < K; ++k) {
      const float* bk = b + k * kPanelWidth;
      __m256 bv[NV];
      LMSHRINK_UNROLL for (int v = 0; v < NV; ++v) bv[v] = _mm256_loadu_ps(bk + 8 * v);
      LMSHRINK_UNROLL for (int i = 0; i < MR; ++i) {
        const __m256 ai = _mm256_broadcast_ss(a + i * lda + k);
        LMSHRINK_UNROLL for (int v = 0; v < NV; ++v)
          acc[i][v] = _mm256_fmadd_ps(ai, bv[v], acc[i][v]);
      }
    }
  }
  if (out.scatter == nullptr && valid == 8 * NV) {
    __m256 bias[NV];
    LMSHRINK_UNROLL for (int v = 0; v < NV; ++v)
      bias[v] = out.bias != nullptr ? _mm256_loadu_ps(out.bias + col0 + 8 * v)
                                    : _mm256_setzero_ps();
    LMSHRINK_UNROLL for (int i = 0; i < MR; ++i) {
      float* ci = c + i * out.ldc + col0;
      LMSHRINK_UNROLL for (int v = 0; v < NV; ++v)
        _mm256_storeu_ps(ci + 8 * v, _mm256_add_ps(acc[i][v], bias[v]));
    }
    return;
  }
  alignas(32) float row[8 * NV];
  LMSHRINK_UNROLL for (int i = 0; i < MR; ++i) {
    LMSHRINK_UNROLL for (int v = 0; v < NV; ++v) _mm256_store_ps(row + 8 * v, acc[i][v]);
    finish_row(row, valid, col0, c + i * out.ldc, out);
  }
}

// One token against NP panels at once (NP ≤ 3: 4·NP accumulators): NP weight streams in flight,
// as for AVX-512 above. One accumulator chain per output for every NP, so that an output's
// summation order does not depend on how panels are grouped (or split over threads).
template <int NP>
LMSHRINK_TARGET_AVX2 inline void panels_one_token_avx2(Index K, const float* x, const float* b, Index stride,
                                  Index col0, Index valid_last, float* y,
                                  const TileOutput<float>& out) {
  __m256 acc[NP][4];
  LMSHRINK_UNROLL for (int p = 0; p < NP; ++p)
    LMSHRINK_UNROLL for (int v = 0; v < 4; ++v) acc[p][v] = _mm256_setzero_ps();
  for (Index k = 0; k < K; ++k) {
    const __m256 xk = _mm256_broadcast_ss(x + k);
    LMSHRINK_UNROLL for (int p = 0; p < NP; ++p) {
      const float* bk = b + p * stride + k * kPanelWidth;
      LMSHRINK_UNROLL for (int v = 0; v < 4; ++v)
        acc[p][v] = _mm256_fmadd_ps(xk, _mm256_loadu_ps(bk + 8 * v), acc[p][v]);
    }
  }
  alignas(32) float row[kPanelWidth];
  LMSHRINK_UNROLL for (int p = 0; p < NP; ++p) {
    LMSHRINK_UNROLL for (int v = 0; v < 4; ++v) _mm256_store_ps(row + 8 * v, acc[p][v]);
    finish_row(row, p + 1 == NP ? valid_last : kPanelWidth, col0 + p * kPanelWidth, y, out);
  }
}

// Several tokens of one panel as 16-wide halves (the second only when it has valid outputs).
template <int MR>
LMSHRINK_TARGET_AVX2 inline void tile_avx2_halves(Index K, const float* a, Index lda, const float* b, Index valid,
                             Index col0, float* c, const TileOutput<float>& out) {
  tile_avx2<MR, 2>(K, a, lda, b, std::min<Index>(valid, 16), col0, c, out);
  if (valid > 16) tile_avx2<MR, 2>(K, a, lda, b + 16, valid - 16, col0 + 16, c, out);
}
#endif  // LMSHRINK_X86_KERNELS

// HALF: the panel's valid rows fit in its first 16 columns.
template <Isa I, int MR, bool HALF, class Scalar>
inline void tile(Index K, const Scalar* a, Index lda, const Scalar* b, Index valid, Index col0,
                 Scalar* c, const TileOutput<Scalar>& out) {
#if LMSHRINK_X86_KERNELS
  if constexpr (std::is_same<Scalar, float>::value && I == Isa::avx512) {
    tile_avx512<MR, HALF ? 1 : 2>(K, a, lda, b, valid, col0, c, out);
    return;
  } else if constexpr (std::is_same<Scalar, float>::value && I == Isa::avx2) {
    if constexpr (MR == 1)
      tile_avx2<1, HALF ? 2 : 4>(K, a, lda, b, valid, col0, c, out);
    else
      tile_avx2_halves<MR>(K, a, lda, b, valid, col0, c, out);
    return;
  } else
#endif
  {
    tile_portable<MR, HALF ? 16 : 32>(K, a, lda, b, valid, col0, c, out);
  }
}

// Tokens [0, m) of one panel, m ≤ kMaxTileRows<I> picking the kernel of that height.
template <Isa I, bool HALF, class Scalar, int MR = kMaxTileRows<I>>
inline void tile_rows(Index m, Index K, const Scalar* a, Index lda, const Scalar* b, Index valid,
                      Index col0, Scalar* c, const TileOutput<Scalar>& out) {
  if constexpr (MR > 0) {
    if (m == MR) {
      tile<I, MR, HALF>(K, a, lda, b, valid, col0, c, out);
    } else {
      tile_rows<I, HALF, Scalar, MR - 1>(m, K, a, lda, b, valid, col0, c, out);
    }
  }
}

template <Isa I, bool HALF, class Scalar>
inline void panel_tokens(Index m, Index K, const Scalar* a, Index lda, const Scalar* bp,
                         Index valid, Index col0, const TileOutput<Scalar>& out) {
  constexpr int rows = kMaxTileRows<I>;
  Index i = 0;
  for (; i + rows <= m; i += rows)
    tile<I, rows, HALF>(K, a + i * lda, lda, bp, valid, col0, out.c + i * out.ldc, out);
  if (i < m)
    tile_rows<I, HALF, Scalar>(m - i, K, a + i * lda, lda, bp, valid, col0, out.c + i * out.ldc, out);
}

/// gemm_panels with the kernels of one instruction set.
template <Isa I, class Scalar>
inline void gemm_panels_with(Index m, const Scalar* a, Index lda, const PackedPanels<Scalar>& b,
                             Index p0, Index p1, const TileOutput<Scalar>& out) {
  const Index K = b.depth;
  // One token: panels side by side, valid_last(p) being the last one's valid rows.
  [[maybe_unused]] const Index stride = K * kPanelWidth;
  [[maybe_unused]] const auto valid_last = [&](Index last) {
    return std::min(kPanelWidth, b.rows - last * kPanelWidth);
  };
#if LMSHRINK_X86_KERNELS
  if constexpr (std::is_same<Scalar, float>::value && I == Isa::avx512) {
    if (m == 1) {
      for (; p0 + 4 <= p1; p0 += 4)
        panels_one_token_avx512<4, 2>(K, a, b.panel(p0), stride, p0 * kPanelWidth,
                                      valid_last(p0 + 3), out.c, out);
      switch (p1 - p0) {
        case 3:
          panels_one_token_avx512<3, 2>(K, a, b.panel(p0), stride, p0 * kPanelWidth,
                                        valid_last(p0 + 2), out.c, out);
          break;
        case 2:
          panels_one_token_avx512<2, 2>(K, a, b.panel(p0), stride, p0 * kPanelWidth,
                                        valid_last(p0 + 1), out.c, out);
          break;
        case 1:
          panels_one_token_avx512<1, 2>(K, a, b.panel(p0), stride, p0 * kPanelWidth,
                                        valid_last(p0), out.c, out);
          break;
        default:
          break;
      }
      return;
    }
  } else if constexpr (std::is_same<Scalar, float>::value && I == Isa::avx2) {
    if (m == 1) {
      for (; p0 + 3 <= p1; p0 += 3)
        panels_one_token_avx2<3>(K, a, b.panel(p0), stride, p0 * kPanelWidth,
                                 valid_last(p0 + 2), out.c, out);
      if (p1 - p0 == 2)
        panels_one_token_avx2<2>(K, a, b.panel(p0), stride, p0 * kPanelWidth,
                                 valid_last(p0 + 1), out.c, out);
      else if (p1 - p0 == 1)
        panels_one_token_avx2<1>(K, a, b.panel(p0), stride, p0 * kPanelWidth, valid_last(p0),
                                 out.c, out);
      return;
    }
  }
#endif
  for (Index p = p0; p < p1; ++p) {
    const Scalar* bp = b.panel(p);
    const Index col0 = p * kPanelWidth;
    const Index valid = std::min(kPanelWidth, b.rows - col0);
    if (valid <= kPanelWidth / 2)
      panel_tokens<I, true>(m, K, a, lda, bp, valid, col0, out);
    else
      panel_tokens<I, false>(m, K, a, lda, bp, valid, col0, out);
  }
}

/// For tokens [0, m) of A (m, K) and panels [p0, p1) of B: C = A·Bᵀ (+ bias) into contiguous
/// columns, or C[:, scatter] += A·Bᵀ, with `isa`'s kernels (double: always the portable one).
template <class Scalar>
inline void gemm_panels(Isa isa, Index m, const Scalar* a, Index lda, const PackedPanels<Scalar>& b,
                        Index p0, Index p1, const TileOutput<Scalar>& out) {
#if LMSHRINK_X86_KERNELS
  if constexpr (std::is_same<Scalar, float>::value) {
    if (isa == Isa::avx512) return gemm_panels_with<Isa::avx512>(m, a, lda, b, p0, p1, out);
    if (isa == Isa::avx2) return gemm_panels_with<Isa::avx2>(m, a, lda, b, p0, p1, out);
  }
#endif
  (void)isa;
  gemm_panels_with<Isa::portable>(m, a, lda, b, p0, p1, out);
}

}  // namespace detail
LMSHRINK_NAMESPACE_END
