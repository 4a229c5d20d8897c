#pragma once
// The calling thread's index in the enclosing OpenMP team (0 without OpenMP), for the examples'
// per-worker state.
#ifdef _OPENMP
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

}  // namespace examples
