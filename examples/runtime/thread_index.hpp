#pragma once
// The calling thread's index in the enclosing OpenMP team (0 without OpenMP), for the examples'
// per-worker state; and the library's parallel options on OpenMP's threads (one thread without).
#include <lmshrink/compact.hpp>
#ifdef _OPENMP
#include <lmshrink/openmp.hpp>
#include <omp.h>
#endif

namespace examples {

inline int thread_index() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

/// `threads` threads of OpenMP's team for the library's parallel calls (one without OpenMP).
inline lmshrink::CompactForwardOptions thread_team(int threads) {
#ifdef _OPENMP
  return {threads, lmshrink::openmp_team()};
#else
  (void)threads;
  return {1};
#endif
}

}  // namespace examples
