#pragma once
// OpenMP as a ThreadTeam, for CompactLinear::forward on several threads:
//
//   lmshrink::CompactForwardOptions options;
//   options.threads = 4;
//   options.team = lmshrink::openmp_team();
//   compact.forward(x, y, ws, options);
//
// Opt-in (not in lmshrink.hpp): it needs the including file compiled with OpenMP (-fopenmp, or
// CMake's OpenMP::OpenMP_CXX). The team is a value, so files built with and without OpenMP
// share one definition of CompactLinear.

#ifndef _OPENMP
#error "lmshrink/openmp.hpp needs OpenMP: compile with -fopenmp (CMake: link OpenMP::OpenMP_CXX)"
#endif
#include <omp.h>

#include "compact.hpp"
#include "config.hpp"

LMSHRINK_NAMESPACE_BEGIN

namespace detail {
inline void run(int threads, void (*body)(void*, int, int), void* context) {
#pragma omp parallel num_threads(threads)
  body(context, omp_get_thread_num(), omp_get_num_threads());
}

// An orphaned barrier: it binds to the parallel region of run() that calls the body.
inline void barrier() {
#pragma omp barrier
}
}  // namespace detail

/// OpenMP's threads (omp parallel, omp barrier) as a ThreadTeam.
inline ThreadTeam openmp_team() { return ThreadTeam{&detail::run, &detail::barrier}; }

LMSHRINK_NAMESPACE_END
