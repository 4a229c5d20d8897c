// The installed package's check: every header the umbrella includes is installed and compiles,
// and the version macros agree with the package's version (the kernels are checked by main.cpp
// in the add_subdirectory consumer, with -march=native).
#include <cstdio>
#include <cstring>
#include <lmshrink/lmshrink.hpp>

int main() {
  lmshrink::LowRankSparseLinear<float> layer(3, 2, 1);
  std::printf("lmshrink %s (compiler %s): installed headers compile, %ld dense parameters\n",
              LMSHRINK_VERSION_STRING, __VERSION__, static_cast<long>(layer.dense_parameters()));
  return std::strcmp(LMSHRINK_VERSION_STRING, CONSUMER_EXPECTED_VERSION) == 0 ? 0 : 1;
}
