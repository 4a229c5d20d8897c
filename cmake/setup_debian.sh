#!/usr/bin/env bash
# Installs the Debian 12 packages lmshrink's build, tests, examples and benchmarks need, when
# any is missing, plus any packages named as arguments (e.g. libdnnl-dev for the performance
# report). Safe to run repeatedly; does nothing when everything is present.
set -euo pipefail

packages=(
  g++ make cmake            # toolchain (CMake >= 3.25 for the presets' workflows)
  libeigen3-dev             # the library's one dependency
  libxtensor-dev xtl-dev    # opt-in xtensor adapter and its test
  catch2                    # tests
  libbenchmark-dev          # benchmarks
  libdnnl-dev               # optional: oneDNN, the compact form's low-rank backend and the
                            # fastest dense baseline of bench_compact
  ocl-icd-opencl-dev        # OpenCL, which Debian's oneDNN CMake config requires (a
                            # Recommends of libdnnl-dev, so not installed by default)
  "$@"
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "lmshrink: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "lmshrink: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
