// lmshrink/openmp.hpp gives CompactLinear an OpenMP team; without OpenMP it refuses to compile
// (with a sentence saying so) instead of quietly running one thread.
#include <lmshrink/openmp.hpp>

int main() { return 0; }
