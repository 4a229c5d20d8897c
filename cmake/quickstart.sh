#!/usr/bin/env bash
# The two Quick start commands of README.md:
#   bash cmake/quickstart.sh main   installs what is missing, builds, runs the main job on the
#                                   bundled real model (output in out/)
#   bash cmake/quickstart.sh test   installs what is missing, builds and runs every test
set -euo pipefail
cd "$(dirname "$0")/.."

what="${1:-}"
case "$what" in
  main|test) ;;
  *) echo "usage: bash cmake/quickstart.sh main|test" >&2; exit 2 ;;
esac

bash cmake/setup_debian.sh
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"

if [ "$what" = test ]; then
  cmake --workflow --preset default
else
  cmake --preset default >/dev/null
  cmake --build --preset default --target lmshrink_spectrum
  ./build/default/examples/lmshrink_spectrum --out out/spectrum
fi
