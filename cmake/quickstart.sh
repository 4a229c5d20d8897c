#!/usr/bin/env bash
# The two Quick start commands of README.md:
#   bash cmake/quickstart.sh main   installs what is missing, builds, runs the main job on the
#                                   bundled real model (output in out/compress; extra
#                                   arguments go to lmshrink_compress, e.g. --steps 1000)
#   bash cmake/quickstart.sh test   installs what is missing, builds and runs every test
# and one more, for docs/performance.md:
#   bash cmake/quickstart.sh perf   builds bench_compact and writes its tables and plots to
#                                   out/performance (about 10 minutes on one core)
set -euo pipefail
cd "$(dirname "$0")/.."

what="${1:-}"
case "$what" in
  main|test|perf) ;;
  *) echo "usage: bash cmake/quickstart.sh main|test|perf" >&2; exit 2 ;;
esac

bash cmake/setup_debian.sh
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"

if [ "$what" = test ]; then
  cmake --workflow --preset default
elif [ "$what" = perf ]; then
  cmake --preset default >/dev/null
  cmake --build --preset default --target bench_compact
  mkdir -p out/performance
  ./build/default/bench/bench_compact --benchmark_repetitions=5 \
    --benchmark_report_aggregates_only=true --benchmark_min_time=0.05 \
    --benchmark_out=out/performance/bench_compact.json --report=out/performance
else
  cmake --preset default >/dev/null
  cmake --build --preset default --target lmshrink_compress
  ./build/default/examples/lmshrink_compress --out out/compress "${@:2}"
fi
