#pragma once
// Causal multi-head softmax attention, for whole sequences (training, scoring) and one token at
// a time against a KV cache (generation). Rows are tokens; head h reads columns
// [h·hs, (h+1)·hs) of q and key/value head h / (heads / kv_heads) of k and v (grouped-query
// attention; kv_heads = heads is plain multi-head attention). Scores are scaled by 1/sqrt(hs).
//
//   models::AttentionShape s{batch, n, heads, kv_heads, head_size};
//   std::vector<RowMatrix<float>> p(batch * heads);         // kept for the backward
//   models::causal_attention_forward<float>(s, q, k, v, p, att);
//   models::causal_attention_backward<float>(s, q, k, v, p, datt, dp, dq, dk, dv);
//
//   models::KvCache<float> cache(layers, positions, heads, kv_heads, head_size);
//   cache.attend(layer, pos, q, k, v, out);                  // one token at position pos

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

#include "../config.hpp"
#include "../types.hpp"

LMSHRINK_NAMESPACE_BEGIN
namespace models {

struct AttentionShape {
  int batch = 1, n = 1, heads = 1, kv_heads = 1, head_size = 1;
};

namespace attention_checks {
inline void check(const char* where, const AttentionShape& s) {
  if (s.batch < 1 || s.n < 1 || s.heads < 1 || s.kv_heads < 1 || s.head_size < 1 || s.heads % s.kv_heads != 0)
    lmshrink::detail::fail<value_error>(where, "batch ", s.batch, ", n ", s.n, ", heads ", s.heads,
                                        ", kv_heads ", s.kv_heads, ", head_size ", s.head_size,
                                        ": positive sizes with heads a multiple of kv_heads were expected");
}
template <class M>
void check_rows(const char* where, const char* what, const M& m, const AttentionShape& s, int heads) {
  lmshrink::detail::check_shape(where, what, m, Index(s.batch) * s.n, Index(heads) * s.head_size);
}
/// The forward's operands: q and att of `heads` columns groups, k and v of `kv_heads`.
template <class Q, class K, class V, class A>
void check_forward(const char* where, const AttentionShape& s, const Q& q, const K& k, const V& v, const A& att) {
  check(where, s);
  check_rows(where, "q", q, s, s.heads);
  check_rows(where, "k", k, s, s.kv_heads);
  check_rows(where, "v", v, s, s.kv_heads);
  check_rows(where, "att", att, s, s.heads);
}
}  // namespace attention_checks

/// Query rows per panel of the kept-probability attention: panel i0 multiplies only keys
/// 0 .. i0 + kPanelRows − 1, about half the products of whole (n, n) squares at n = 512.
inline constexpr int kPanelRows = 64;

/// The kept-probability attention's workspace for small heads: one (sequence, key/value head)'s
/// keys and values transposed, (head_size, n), and the backward's key and value gradients in the
/// same layout. Pass one to reuse it across calls (the overloads without one make their own).
template <class Scalar>
struct AttentionWorkspace {
  RowMatrix<Scalar> kt, vt, dkt, dvt;
  /// kt and vt from sequence b's key/value head kvh (rows b·n .. b·n + n − 1 of k and v).
  void transpose_head(const ConstMatrixRef<Scalar>& k, const ConstMatrixRef<Scalar>& v, int b, int n, int kvh, int hs) {
    kt = k.block(Index(b) * n, Index(kvh) * hs, n, hs).transpose();
    vt = v.block(Index(b) * n, Index(kvh) * hs, n, hs).transpose();
  }
};

/// Products of the kept-probability attention at small head sizes, where every product has a
/// dimension of head_size (H) and a GEMM runs at a fraction of its rate: 16 positions per vector
/// of keys (or values) transposed, H multiply-adds deep, and for q·kᵀ four query rows sharing
/// each vector. Columns past the last multiple of 16 run as scalar loops.
namespace small_head {
inline constexpr int kLanes = 16;
template <class S>
using Lanes = Eigen::Array<S, kLanes, 1>;
/// Head sizes these kernels run (others take the GEMM path).
inline bool handles(int head_size) { return head_size == 8 || head_size == 16; }

/// c (rows, cols) = alpha · a (rows, H) · bt (H, cols).
template <int H, class S>
void product_by_transposed(int rows, int cols, const S* a, Index lda, const S* bt, Index ldb, S alpha, S* c,
                           Index ldc) {
  using L = Lanes<S>;
  const int full = cols / kLanes * kLanes;
  int r = 0;
  for (; r + 4 <= rows; r += 4) {
    const S *a0 = a + Index(r) * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
    for (int j = 0; j < full; j += kLanes) {
      L c0 = L::Zero(), c1 = L::Zero(), c2 = L::Zero(), c3 = L::Zero();
      for (int d = 0; d < H; ++d) {
        const L b = Eigen::Map<const L>(bt + d * ldb + j);
        c0 += a0[d] * b;
        c1 += a1[d] * b;
        c2 += a2[d] * b;
        c3 += a3[d] * b;
      }
      Eigen::Map<L>(c + Index(r) * ldc + j) = alpha * c0;
      Eigen::Map<L>(c + Index(r + 1) * ldc + j) = alpha * c1;
      Eigen::Map<L>(c + Index(r + 2) * ldc + j) = alpha * c2;
      Eigen::Map<L>(c + Index(r + 3) * ldc + j) = alpha * c3;
    }
  }
  // Rows left over (a decoder's one query per head): four column panels at a time, so that four
  // independent accumulator chains hide the multiply-add latency.
  for (; r < rows; ++r) {
    const S* ar = a + Index(r) * lda;
    S* cr = c + Index(r) * ldc;
    int j = 0;
    for (; j + 4 * kLanes <= full; j += 4 * kLanes) {
      L c0 = L::Zero(), c1 = L::Zero(), c2 = L::Zero(), c3 = L::Zero();
      for (int d = 0; d < H; ++d) {
        const S* b = bt + d * ldb + j;
        c0 += ar[d] * Eigen::Map<const L>(b);
        c1 += ar[d] * Eigen::Map<const L>(b + kLanes);
        c2 += ar[d] * Eigen::Map<const L>(b + 2 * kLanes);
        c3 += ar[d] * Eigen::Map<const L>(b + 3 * kLanes);
      }
      Eigen::Map<L>(cr + j) = alpha * c0;
      Eigen::Map<L>(cr + j + kLanes) = alpha * c1;
      Eigen::Map<L>(cr + j + 2 * kLanes) = alpha * c2;
      Eigen::Map<L>(cr + j + 3 * kLanes) = alpha * c3;
    }
    for (; j < full; j += kLanes) {
      L acc = L::Zero();
      for (int d = 0; d < H; ++d) acc += ar[d] * Eigen::Map<const L>(bt + d * ldb + j);
      Eigen::Map<L>(cr + j) = alpha * acc;
    }
  }
  for (r = 0; r < rows; ++r)
    for (int j = full; j < cols; ++j) {
      S t = 0;
      for (int d = 0; d < H; ++d) t += a[Index(r) * lda + d] * bt[d * ldb + j];
      c[Index(r) * ldc + j] = alpha * t;
    }
}

/// c (rows, H) = p (rows, cols) · bt (H, cols)ᵀ (overwritten).
template <int H, class S>
void product_with_transposed(int rows, int cols, const S* p, Index ldp, const S* bt, Index ldb, S* c, Index ldc) {
  using L = Lanes<S>;
  const int full = cols / kLanes * kLanes;
  for (int r = 0; r < rows; ++r) {
    const S* pr = p + Index(r) * ldp;
    L acc[H];
    for (int d = 0; d < H; ++d) acc[d].setZero();
    for (int j = 0; j < full; j += kLanes) {
      const L pv = Eigen::Map<const L>(pr + j);
      for (int d = 0; d < H; ++d) acc[d] += pv * Eigen::Map<const L>(bt + d * ldb + j);
    }
    for (int d = 0; d < H; ++d) {
      S t = acc[d].sum();
      for (int j = full; j < cols; ++j) t += pr[j] * bt[d * ldb + j];
      c[Index(r) * ldc + d] = t;
    }
  }
}

/// ct (H, cols) += a (rows, H)ᵀ · p (rows, cols).
template <int H, class S>
void add_transposed_product(int rows, int cols, const S* a, Index lda, const S* p, Index ldp, S* ct, Index ldc) {
  using L = Lanes<S>;
  const int full = cols / kLanes * kLanes;
  for (int j = 0; j < full; j += kLanes) {
    L acc[H];
    for (int d = 0; d < H; ++d) acc[d] = Eigen::Map<const L>(ct + d * ldc + j);
    for (int r = 0; r < rows; ++r) {
      const L pv = Eigen::Map<const L>(p + Index(r) * ldp + j);
      const S* ar = a + Index(r) * lda;
      for (int d = 0; d < H; ++d) acc[d] += ar[d] * pv;
    }
    for (int d = 0; d < H; ++d) Eigen::Map<L>(ct + d * ldc + j) = acc[d];
  }
  for (int d = 0; d < H; ++d)
    for (int j = full; j < cols; ++j) {
      S t = ct[d * ldc + j];
      for (int r = 0; r < rows; ++r) t += a[Index(r) * lda + d] * p[Index(r) * ldp + j];
      ct[d * ldc + j] = t;
    }
}
}  // namespace small_head

namespace attention_detail {
// The address of m(r, c) in a row-major matrix or Ref.
template <class M>
auto at(M&& m, Index r, Index c) {
  return m.data() + r * m.outerStride() + c;
}
// Row r of a panel (query i0 + r, `keys` keys): softmax over its visible keys, zeros after.
template <class Row>
void softmax_visible(Row row, int visible, int keys) {
  const auto max = row.head(visible).maxCoeff();
  row.head(visible) = (row.head(visible).array() - max).exp().matrix();
  row.head(visible) /= row.head(visible).sum();
  row.tail(keys - visible).setZero();
}
// ds = p∘(dp − Σ p∘dp)·scale over a row's visible keys, zeros after.
template <class Row, class ConstRow, class Scalar>
void softmax_backward_visible(Row drow, ConstRow prow, int visible, int keys, Scalar scale) {
  auto d = drow.head(visible);
  const auto pv = prow.head(visible);
  const Scalar dot = d.dot(pv);
  d = (pv.array() * (d.array() - dot) * scale).matrix();
  drow.tail(keys - visible).setZero();
}

template <int H, class Scalar>
void small_head_forward(const AttentionShape& s, const ConstMatrixRef<Scalar>& q, const ConstMatrixRef<Scalar>& k,
                        const ConstMatrixRef<Scalar>& v, std::vector<RowMatrix<Scalar>>& p, MatrixRef<Scalar> att,
                        AttentionWorkspace<Scalar>& work) {
  const int group = s.heads / s.kv_heads, n = s.n;
  const Scalar scale = Scalar(1) / std::sqrt(Scalar(H));
  for (int b = 0; b < s.batch; ++b)
    for (int kvh = 0; kvh < s.kv_heads; ++kvh) {
      work.transpose_head(k, v, b, n, kvh, H);
      for (int h = kvh * group; h < (kvh + 1) * group; ++h) {
        auto& ph = p.size() == 1 ? p[0] : p[std::size_t(b * s.heads + h)];
        ph.resize(n, n);
        for (int i0 = 0; i0 < n; i0 += kPanelRows) {
          const int rows = std::min(kPanelRows, n - i0), keys = i0 + rows;
          small_head::product_by_transposed<H>(rows, keys, at(q, b * n + i0, h * H), q.outerStride(), work.kt.data(), n,
                                               scale, at(ph, i0, 0), n);
          for (int r = 0; r < rows; ++r) softmax_visible(ph.row(i0 + r).head(keys), i0 + r + 1, keys);
          small_head::product_with_transposed<H>(rows, keys, at(ph, i0, 0), n, work.vt.data(), n, at(att, b * n + i0, h * H),
                                                 att.outerStride());
        }
      }
    }
}

template <int H, class Scalar>
void small_head_backward(const AttentionShape& s, const ConstMatrixRef<Scalar>& q, const ConstMatrixRef<Scalar>& k,
                         const ConstMatrixRef<Scalar>& v, const std::vector<RowMatrix<Scalar>>& p,
                         const ConstMatrixRef<Scalar>& datt, RowMatrix<Scalar>& dp, MatrixRef<Scalar> dq,
                         MatrixRef<Scalar> dk, MatrixRef<Scalar> dv, AttentionWorkspace<Scalar>& work) {
  const int group = s.heads / s.kv_heads, n = s.n;
  const Scalar scale = Scalar(1) / std::sqrt(Scalar(H));
  for (int b = 0; b < s.batch; ++b)
    for (int kvh = 0; kvh < s.kv_heads; ++kvh) {
      work.transpose_head(k, v, b, n, kvh, H);
      work.dkt.setZero(H, n);
      work.dvt.setZero(H, n);
      for (int h = kvh * group; h < (kvh + 1) * group; ++h) {
        const auto& ph = p[std::size_t(b * s.heads + h)];
        for (int i0 = 0; i0 < n; i0 += kPanelRows) {
          const int rows = std::min(kPanelRows, n - i0), keys = i0 + rows;
          const Scalar* dout = at(datt, b * n + i0, h * H);
          const Scalar* panel = at(ph, i0, 0);
          small_head::add_transposed_product<H>(rows, keys, dout, datt.outerStride(), panel, n, work.dvt.data(), n);
          small_head::product_by_transposed<H>(rows, keys, dout, datt.outerStride(), work.vt.data(), n, Scalar(1),
                                               dp.data(), n);
          for (int r = 0; r < rows; ++r)
            softmax_backward_visible(dp.row(r).head(keys), ph.row(i0 + r).head(keys), i0 + r + 1, keys, scale);
          small_head::product_with_transposed<H>(rows, keys, dp.data(), n, work.kt.data(), n, at(dq, b * n + i0, h * H),
                                                 dq.outerStride());
          small_head::add_transposed_product<H>(rows, keys, at(q, b * n + i0, h * H), q.outerStride(), dp.data(), n,
                                                work.dkt.data(), n);
        }
      }
      dk.block(b * n, kvh * H, n, H) = work.dkt.transpose();
      dv.block(b * n, kvh * H, n, H) = work.dvt.transpose();
    }
}
}  // namespace attention_detail

/// att = softmax(q·kᵀ/sqrt(hs), causal)·v per (sequence, head). p holds batch·heads (n, n)
/// matrices that keep the probabilities for the backward, or a single one, reused, when no
/// backward follows (scoring). Queries run in panels of kPanelRows rows; a panel's scores,
/// probabilities and products stop at its last query's key, so entries of p right of a panel's
/// last key are never written or read.
/// Small heads (small_head::handles) run the small_head kernels in `work`; the results equal the
/// GEMM path's within rounding.
template <class Scalar>
void causal_attention_forward(const AttentionShape& s, const ConstMatrixRef<Scalar>& q,
                              const ConstMatrixRef<Scalar>& k, const ConstMatrixRef<Scalar>& v,
                              std::vector<RowMatrix<Scalar>>& p, MatrixRef<Scalar> att,
                              AttentionWorkspace<Scalar>& work) {
  static constexpr const char* where = "causal_attention_forward";
  attention_checks::check_forward(where, s, q, k, v, att);
  const std::size_t kept = std::size_t(s.batch) * std::size_t(s.heads);
  if (p.size() != kept && p.size() != 1)
    lmshrink::detail::fail<shape_error>(where, "p has ", p.size(), " matrices but ", kept,
                                        " (one per sequence and head) or 1 (reused) were expected");
  if (s.head_size == 8) return attention_detail::small_head_forward<8>(s, q, k, v, p, att, work);
  if (s.head_size == 16) return attention_detail::small_head_forward<16>(s, q, k, v, p, att, work);
  const int group = s.heads / s.kv_heads, n = s.n, hs = s.head_size;
  const Scalar scale = Scalar(1) / std::sqrt(Scalar(hs));
  for (int b = 0; b < s.batch; ++b)
    for (int h = 0; h < s.heads; ++h) {
      auto& ph = p.size() == 1 ? p[0] : p[std::size_t(b * s.heads + h)];
      ph.resize(n, n);
      const int kvh = h / group;
      for (int i0 = 0; i0 < n; i0 += kPanelRows) {
        const int rows = std::min(kPanelRows, n - i0), keys = i0 + rows;
        auto panel = ph.block(i0, 0, rows, keys);
        panel.noalias() = q.block(b * n + i0, h * hs, rows, hs) * k.block(b * n, kvh * hs, keys, hs).transpose();
        panel *= scale;
        for (int r = 0; r < rows; ++r) attention_detail::softmax_visible(panel.row(r), i0 + r + 1, keys);
        att.block(b * n + i0, h * hs, rows, hs).noalias() = panel * v.block(b * n, kvh * hs, keys, hs);
      }
    }
}

template <class Scalar>
void causal_attention_forward(const AttentionShape& s, const ConstMatrixRef<Scalar>& q,
                              const ConstMatrixRef<Scalar>& k, const ConstMatrixRef<Scalar>& v,
                              std::vector<RowMatrix<Scalar>>& p, MatrixRef<Scalar> att) {
  AttentionWorkspace<Scalar> work;
  causal_attention_forward<Scalar>(s, q, k, v, p, att, work);
}

/// From datt = ∂loss/∂att and the forward's p (one per sequence and head): dq (overwritten), dk
/// and dv (zeroed, then accumulated over the heads that share them). dp is an (n, n) workspace.
template <class Scalar>
void causal_attention_backward(const AttentionShape& s, const ConstMatrixRef<Scalar>& q,
                               const ConstMatrixRef<Scalar>& k, const ConstMatrixRef<Scalar>& v,
                               const std::vector<RowMatrix<Scalar>>& p, const ConstMatrixRef<Scalar>& datt,
                               RowMatrix<Scalar>& dp, MatrixRef<Scalar> dq, MatrixRef<Scalar> dk,
                               MatrixRef<Scalar> dv, AttentionWorkspace<Scalar>& work) {
  static constexpr const char* where = "causal_attention_backward";
  attention_checks::check(where, s);
  attention_checks::check_rows(where, "q", q, s, s.heads);
  attention_checks::check_rows(where, "k", k, s, s.kv_heads);
  attention_checks::check_rows(where, "v", v, s, s.kv_heads);
  attention_checks::check_rows(where, "datt", datt, s, s.heads);
  attention_checks::check_rows(where, "dq", dq, s, s.heads);
  attention_checks::check_rows(where, "dk", dk, s, s.kv_heads);
  attention_checks::check_rows(where, "dv", dv, s, s.kv_heads);
  if (p.size() != std::size_t(s.batch) * std::size_t(s.heads))
    lmshrink::detail::fail<shape_error>(where, "p has ", p.size(), " matrices but the backward needs the ",
                                        s.batch * s.heads, " kept by the forward (one per sequence and head)");
  const int group = s.heads / s.kv_heads, n = s.n, hs = s.head_size;
  const Scalar scale = Scalar(1) / std::sqrt(Scalar(hs));
  dp.resize(n, n);
  if (hs == 8) return attention_detail::small_head_backward<8>(s, q, k, v, p, datt, dp, dq, dk, dv, work);
  if (hs == 16) return attention_detail::small_head_backward<16>(s, q, k, v, p, datt, dp, dq, dk, dv, work);
  dk.setZero();
  dv.setZero();
  for (int b = 0; b < s.batch; ++b)
    for (int h = 0; h < s.heads; ++h) {
      const auto& ph = p[std::size_t(b * s.heads + h)];
      const int kvh = h / group;
      for (int i0 = 0; i0 < n; i0 += kPanelRows) {
        const int rows = std::min(kPanelRows, n - i0), keys = i0 + rows;
        const auto panel = ph.block(i0, 0, rows, keys);
        const auto dout = datt.block(b * n + i0, h * hs, rows, hs);
        const auto kp = k.block(b * n, kvh * hs, keys, hs);
        dv.block(b * n, kvh * hs, keys, hs).noalias() += panel.transpose() * dout;
        auto ds = dp.block(0, 0, rows, keys);
        ds.noalias() = dout * v.block(b * n, kvh * hs, keys, hs).transpose();
        // Softmax backward per row: ds = p∘(dp − Σ p∘dp), then the scale.
        for (int r = 0; r < rows; ++r)
          attention_detail::softmax_backward_visible(ds.row(r), panel.row(r), i0 + r + 1, keys, scale);
        dq.block(b * n + i0, h * hs, rows, hs).noalias() = ds * kp;
        dk.block(b * n, kvh * hs, keys, hs).noalias() += ds.transpose() * q.block(b * n + i0, h * hs, rows, hs);
      }
    }
}

template <class Scalar>
void causal_attention_backward(const AttentionShape& s, const ConstMatrixRef<Scalar>& q,
                               const ConstMatrixRef<Scalar>& k, const ConstMatrixRef<Scalar>& v,
                               const std::vector<RowMatrix<Scalar>>& p, const ConstMatrixRef<Scalar>& datt,
                               RowMatrix<Scalar>& dp, MatrixRef<Scalar> dq, MatrixRef<Scalar> dk,
                               MatrixRef<Scalar> dv) {
  AttentionWorkspace<Scalar> work;
  causal_attention_backward<Scalar>(s, q, k, v, p, datt, dp, dq, dk, dv, work);
}

/// Trainers keep every head's (n, n) probabilities for sequences of up to this many positions
/// (fastest at small head sizes); longer ones run BlockedAttention, whose memory grows with n,
/// not n².
inline constexpr int kKeptProbabilitiesUpTo = 512;
inline bool blocked_attention_for(int n) { return n > kKeptProbabilitiesUpTo; }

/// Values a trainer of `layers` blocks holds for attention over `batch` sequences of n tokens:
/// training, each block's probabilities (or, blocked, its log-sum-exp) and the backward's
/// (n, n) workspace; otherwise one buffer every block reuses.
inline std::int64_t attention_buffer_values(int layers, int batch, int heads, int n, bool training) {
  const std::int64_t rows = std::int64_t(batch) * heads, square = std::int64_t(n) * n;
  const bool blocked = blocked_attention_for(n);
  if (!training) return blocked ? rows * n : square;
  return layers * (blocked ? rows * n : rows * square) + (blocked ? 0 : square);
}

/// Attention over long sequences without the (n, n) probabilities: queries and keys in blocks
/// of kBlock positions, an online softmax in the forward (FlashAttention's recurrence), and a
/// backward that recomputes each block's probabilities from the forward's per-row log-sum-exp.
/// Memory is O(n·hs) per head instead of O(n²); the results equal the kept-probability
/// functions above within rounding (not bit for bit: the sums run in another order).
template <class Scalar>
struct BlockedAttention {
  static constexpr int kBlock = 64;
  using Mat = RowMatrix<Scalar>;
  Mat scores, probs, dprobs;  // (kBlock, kBlock) workspaces
  Mat acc;                    // (kBlock, hs)
  Vector<Scalar> max, sum, delta;

  /// att = softmax(q·kᵀ/sqrt(hs), causal)·v, and lse (batch·heads, n): every row's log Σ exp of
  /// its scaled scores, kept for the backward.
  void forward(const AttentionShape& s, const ConstMatrixRef<Scalar>& q, const ConstMatrixRef<Scalar>& k,
               const ConstMatrixRef<Scalar>& v, Mat& lse, MatrixRef<Scalar> att) {
    static constexpr const char* where = "BlockedAttention::forward";
    attention_checks::check_forward(where, s, q, k, v, att);
    const int group = s.heads / s.kv_heads, n = s.n, hs = s.head_size;
    const Scalar scale = Scalar(1) / std::sqrt(Scalar(hs));
    lse.resize(Index(s.batch) * s.heads, n);
    reserve(hs);
    for (int b = 0; b < s.batch; ++b)
      for (int h = 0; h < s.heads; ++h) {
        const int kvh = h / group;
        for (int i0 = 0; i0 < n; i0 += kBlock) {
          const int bq = std::min(kBlock, n - i0);
          const auto qi = q.block(b * n + i0, h * hs, bq, hs);
          auto m = max.head(bq);
          auto l = sum.head(bq);
          auto o = acc.topRows(bq);
          m.setConstant(-std::numeric_limits<Scalar>::infinity());
          l.setZero();
          o.setZero();
          for (int j0 = 0; j0 < i0 + bq; j0 += kBlock) {
            const int bk = std::min(kBlock, n - j0);
            auto sc = scores.topLeftCorner(bq, bk);
            sc.noalias() = qi * k.block(b * n + j0, kvh * hs, bk, hs).transpose();
            sc *= scale;
            for (int r = 0; r < bq; ++r) {
              // Keys after the query are masked: row r sees keys j0 .. i0 + r.
              const int visible = std::min(bk, i0 + r - j0 + 1);
              if (visible <= 0) {
                sc.row(r).setZero();
                continue;
              }
              const Scalar row_max = sc.row(r).head(visible).maxCoeff();
              const Scalar new_max = std::max(m[r], row_max);
              const Scalar rescale = std::exp(m[r] - new_max);  // 0 for the first block
              sc.row(r).head(visible) = (sc.row(r).head(visible).array() - new_max).exp().matrix();
              sc.row(r).tail(bk - visible).setZero();
              l[r] = l[r] * rescale + sc.row(r).head(visible).sum();
              o.row(r) *= rescale;
              m[r] = new_max;
            }
            o.noalias() += sc * v.block(b * n + j0, kvh * hs, bk, hs);
          }
          for (int r = 0; r < bq; ++r) {
            att.block(b * n + i0 + r, h * hs, 1, hs) = o.row(r) / l[r];
            lse(b * s.heads + h, i0 + r) = m[r] + std::log(l[r]);
          }
        }
      }
  }

  /// From datt = ∂loss/∂att, the forward's att and lse: dq (overwritten), dk and dv (zeroed,
  /// then accumulated over the heads that share them).
  void backward(const AttentionShape& s, const ConstMatrixRef<Scalar>& q, const ConstMatrixRef<Scalar>& k,
                const ConstMatrixRef<Scalar>& v, const ConstMatrixRef<Scalar>& att, const Mat& lse,
                const ConstMatrixRef<Scalar>& datt, MatrixRef<Scalar> dq, MatrixRef<Scalar> dk, MatrixRef<Scalar> dv) {
    static constexpr const char* where = "BlockedAttention::backward";
    attention_checks::check(where, s);
    for (const auto& [what, m, heads] : {std::tuple{"q", &q, s.heads}, std::tuple{"k", &k, s.kv_heads},
                                         std::tuple{"v", &v, s.kv_heads}, std::tuple{"att", &att, s.heads},
                                         std::tuple{"datt", &datt, s.heads}})
      attention_checks::check_rows(where, what, *m, s, heads);
    attention_checks::check_rows(where, "dq", dq, s, s.heads);
    attention_checks::check_rows(where, "dk", dk, s, s.kv_heads);
    attention_checks::check_rows(where, "dv", dv, s, s.kv_heads);
    lmshrink::detail::check_shape(where, "lse", lse, Index(s.batch) * s.heads, s.n);
    const int group = s.heads / s.kv_heads, n = s.n, hs = s.head_size;
    const Scalar scale = Scalar(1) / std::sqrt(Scalar(hs));
    reserve(hs);
    delta.resize(n);
    dq.setZero();
    dk.setZero();
    dv.setZero();
    for (int b = 0; b < s.batch; ++b)
      for (int h = 0; h < s.heads; ++h) {
        const int kvh = h / group;
        // D_i = Σ_d datt(i, d)·att(i, d): the softmax backward's row term.
        for (int i = 0; i < n; ++i)
          delta[i] = datt.block(b * n + i, h * hs, 1, hs).cwiseProduct(att.block(b * n + i, h * hs, 1, hs)).sum();
        for (int j0 = 0; j0 < n; j0 += kBlock) {
          const int bk = std::min(kBlock, n - j0);
          const auto kj = k.block(b * n + j0, kvh * hs, bk, hs);
          const auto vj = v.block(b * n + j0, kvh * hs, bk, hs);
          auto dkj = dk.block(b * n + j0, kvh * hs, bk, hs);
          auto dvj = dv.block(b * n + j0, kvh * hs, bk, hs);
          for (int i0 = j0; i0 < n; i0 += kBlock) {  // query blocks that see key block j0
            const int bq = std::min(kBlock, n - i0);
            const auto qi = q.block(b * n + i0, h * hs, bq, hs);
            const auto doi = datt.block(b * n + i0, h * hs, bq, hs);
            auto p = probs.topLeftCorner(bq, bk);
            p.noalias() = qi * kj.transpose();
            for (int r = 0; r < bq; ++r) {
              const int visible = std::min(bk, i0 + r - j0 + 1);
              const Scalar row_lse = lse(b * s.heads + h, i0 + r);
              p.row(r).head(visible) = (p.row(r).head(visible).array() * scale - row_lse).exp().matrix();
              p.row(r).tail(bk - visible).setZero();
            }
            dvj.noalias() += p.transpose() * doi;
            auto dp = dprobs.topLeftCorner(bq, bk);
            dp.noalias() = doi * vj.transpose();
            for (int r = 0; r < bq; ++r)
              dp.row(r) = (p.row(r).array() * (dp.row(r).array() - delta[i0 + r]) * scale).matrix();
            dq.block(b * n + i0, h * hs, bq, hs).noalias() += dp * kj;
            dkj.noalias() += dp.transpose() * qi;
          }
        }
      }
  }

 private:
  void reserve(int hs) {
    if (scores.rows() != kBlock) {
      scores.resize(kBlock, kBlock);
      probs.resize(kBlock, kBlock);
      dprobs.resize(kBlock, kBlock);
      max.resize(kBlock);
      sum.resize(kBlock);
    }
    if (acc.cols() != hs) acc.resize(kBlock, hs);
  }
};

/// Keys and values of every layer for positions [0, positions), and attention of one new token
/// against them. Keys and values are stored transposed per layer, [kv head][feature][position],
/// so that both products of a step (scores = Kᵀq, out = V·a) run along contiguous positions.
template <class Scalar>
class KvCache {
 public:
  /// A cache for up to `positions` positions. Its memory grows with the positions used (doubling,
  /// at most to `positions`): a model's context can be far longer than what is generated (Llama
  /// 3.1's 131,072 positions would be gigabytes up front).
  KvCache(int layers, int positions, int heads, int kv_heads, int head_size)
      : layers_(layers), positions_(positions), shape_{1, 1, heads, kv_heads, head_size},
        kv_dim_(kv_heads * head_size) {
    attention_checks::check("KvCache", shape_);
    if (layers < 1 || positions < 1)
      lmshrink::detail::fail<value_error>("KvCache", "layers ", layers, " and positions ", positions,
                                          " must be >= 1");
  }

  int positions() const { return positions_; }
  /// Positions the cache has memory for now.
  int capacity() const { return capacity_; }

  /// Makes room for positions [0, n) (allocates only when they grow).
  void reserve(int n) {
    if (n <= capacity_) return;
    const int grown = std::min(positions_, std::max(n, 2 * capacity_));
    // Layout per layer: kv_dim rows of `capacity` positions; re-laid out at the new stride.
    std::vector<Scalar> keys(std::size_t(layers_) * std::size_t(grown) * std::size_t(kv_dim_), Scalar(0));
    std::vector<Scalar> values(keys.size(), Scalar(0));
    for (std::size_t row = 0; row < std::size_t(layers_) * std::size_t(kv_dim_); ++row)
      for (int t = 0; t < capacity_; ++t) {
        keys[row * std::size_t(grown) + std::size_t(t)] = keys_[row * std::size_t(capacity_) + std::size_t(t)];
        values[row * std::size_t(grown) + std::size_t(t)] = values_[row * std::size_t(capacity_) + std::size_t(t)];
      }
    keys_.swap(keys);
    values_.swap(values);
    scores_.resize(Index(grown) * Index(shape_.heads / shape_.kv_heads));
    sums_.resize(std::size_t(shape_.heads / shape_.kv_heads));
    capacity_ = grown;
  }

  /// Stores layer `layer`'s key k and value v (kv_heads·hs each) at position pos, then writes
  /// out (heads·hs) = attention of q (heads·hs) over positions 0..pos. Positions before pos must
  /// have been stored since the sequence started (a new sequence starts again at 0).
  void attend(int layer, int pos, const Scalar* q, const Scalar* k, const Scalar* v, Scalar* out) {
    if (layer < 0 || layer >= layers_ || pos < 0 || pos >= positions_)
      lmshrink::detail::fail<value_error>("KvCache::attend", "layer ", layer, " and position ", pos,
                                          " must be in [0, ", layers_, ") and [0, ", positions_, ")");
    reserve(pos + 1);
    using Rows = Eigen::Map<const RowMatrix<Scalar>, 0, Eigen::OuterStride<>>;
    using Vec = Vector<Scalar>;
    const int T = capacity_, n = pos + 1, hs = shape_.head_size, group = shape_.heads / shape_.kv_heads;
    Scalar* keys = keys_.data() + std::size_t(layer) * T * kv_dim_;
    Scalar* values = values_.data() + std::size_t(layer) * T * kv_dim_;
    for (int i = 0; i < kv_dim_; ++i) {
      keys[std::size_t(i) * T + pos] = k[i];
      values[std::size_t(i) * T + pos] = v[i];
    }
    const Scalar inv_sqrt_hs = Scalar(1) / std::sqrt(Scalar(hs));
    if (hs == 8) return attend_small_head<8>(keys, values, T, n, q, out, inv_sqrt_hs);
    if (hs == 16) return attend_small_head<16>(keys, values, T, n, q, out, inv_sqrt_hs);
    auto s = scores_.head(n);
    for (int h = 0; h < shape_.heads; ++h) {
      const std::size_t kv_offset = std::size_t(h / group) * hs * T;
      const Rows K(keys + kv_offset, hs, n, Eigen::OuterStride<>(T));
      const Rows V(values + kv_offset, hs, n, Eigen::OuterStride<>(T));
      s.noalias() = K.transpose() * Eigen::Map<const Vec>(q + h * hs, hs);
      s *= inv_sqrt_hs;
      s = (s.array() - s.maxCoeff()).exp().matrix();
      s /= s.sum();
      Eigen::Map<Vec>(out + h * hs, hs).noalias() = V * s;
    }
  }

 private:
  // Head sizes 8 and 16: the query heads of one key/value head together, through the
  // small-head kernels (Eigen's matrix-vector products cost more in set-up than in work here).
  template <int H>
  void attend_small_head(const Scalar* keys, const Scalar* values, int T, int n, const Scalar* q, Scalar* out,
                         Scalar scale) {
    using Row = Eigen::Map<Vector<Scalar>>;
    const int group = shape_.heads / shape_.kv_heads;
    Scalar* s = scores_.data();
    for (int kvh = 0; kvh < shape_.kv_heads; ++kvh) {
      const Scalar* kt = keys + std::size_t(kvh) * H * T;
      const Scalar* vt = values + std::size_t(kvh) * H * T;
      small_head::product_by_transposed<H>(group, n, q + kvh * group * H, H, kt, T, scale, s, T);
      // Unnormalised weights exp(s − max); each head's output is divided by their sum after
      // the product (H divisions instead of n).
      for (int g = 0; g < group; ++g) {
        Row row(s + std::size_t(g) * T, n);
        row = (row.array() - row.maxCoeff()).exp().matrix();
        sums_[std::size_t(g)] = row.sum();
      }
      Scalar* o = out + kvh * group * H;
      small_head::product_with_transposed<H>(group, n, s, T, vt, T, o, H);
      for (int g = 0; g < group; ++g)
        for (int d = 0; d < H; ++d) o[g * H + d] /= sums_[std::size_t(g)];
    }
  }

  int layers_, positions_;
  AttentionShape shape_;
  int kv_dim_;
  int capacity_ = 0;
  std::vector<Scalar> keys_, values_;
  Vector<Scalar> scores_;
  std::vector<Scalar> sums_;  // per query head of a group: the softmax denominators
};

}  // namespace models
LMSHRINK_NAMESPACE_END
