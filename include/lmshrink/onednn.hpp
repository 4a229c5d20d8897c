#pragma once
// oneDNN's sgemm (the GEMM behind PyTorch's CPU Linear) as CompactLinear's external low-rank
// GEMM:
//
//   lmshrink::PackOptions options;
//   options.low_rank_sgemm = lmshrink::onednn_sgemm;
//   auto compact = lmshrink::CompactLinear<float>::pack(layer, options);
//
// Opt-in (not in lmshrink.hpp): it needs oneDNN's headers and library (Debian: libdnnl-dev;
// CMake: find_package(dnnl CONFIG), link DNNL::dnnl).

#include <oneapi/dnnl/dnnl.h>

#include "compact.hpp"
#include "config.hpp"
#include "errors.hpp"

LMSHRINK_NAMESPACE_BEGIN

/// C (m×n, ldc) = A (m×k, lda)·Bᵀ (B: n×k, ldb) + beta·C, row-major, with dnnl_sgemm. A LowRankSgemm.
inline void onednn_sgemm(Index m, Index n, Index k, const float* a, Index lda, const float* b,
                         Index ldb, float beta, float* c, Index ldc) {
  const dnnl_status_t status = dnnl_sgemm('N', 'T', m, n, k, 1.f, a, lda, b, ldb, beta, c, ldc);
  if (status != dnnl_success)
    fail<state_error>("onednn_sgemm", "dnnl_sgemm failed with status ", int(status),
                      " for ", m, "x", k, " · (", n, "x", k, ")ᵀ");
}

LMSHRINK_NAMESPACE_END
