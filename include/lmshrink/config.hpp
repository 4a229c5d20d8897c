#pragma once
// Build-time configuration: namespace macros and the internal-invariant assertion.

#include <cassert>

#include "version.hpp"

// Every public symbol lives in lmshrink::v0 (inline), so two versions can link into one program.
#define LMSHRINK_NAMESPACE_BEGIN \
  namespace lmshrink {           \
  inline namespace v0 {
#define LMSHRINK_NAMESPACE_END \
  }                            \
  }

// Internal invariants in hot loops. Users may define LMSHRINK_ASSERT before including lmshrink
// (for example to throw, or to log); bad *input* never reaches it: that throws lmshrink::error.
#ifndef LMSHRINK_ASSERT
#define LMSHRINK_ASSERT(cond) assert(cond)
#endif

// Fully unrolls a short fixed-count loop. Kernels index arrays of SIMD accumulators in such
// loops; unrolled, GCC keeps them in registers instead of storing them to the stack every step.
#if defined(__clang__) || defined(__GNUC__)
#define LMSHRINK_UNROLL _Pragma("GCC unroll 32")
#else
#define LMSHRINK_UNROLL
#endif
