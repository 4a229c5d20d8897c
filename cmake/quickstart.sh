#!/usr/bin/env bash
# The two Quick start commands of README.md:
#   bash cmake/quickstart.sh main   installs what is missing, builds, runs the main job on the
#                                   bundled real model (output in out/compress; extra
#                                   arguments go to lmshrink_compress, e.g. --steps 1000)
#   bash cmake/quickstart.sh test   installs what is missing (Open MPI among it), builds and runs
#                                   every test (the "test" preset: clang, portable code at -O1,
#                                   in build/test)
# and two more:
#   bash cmake/quickstart.sh perf   builds bench_compact, bench_pack_forms, bench_decode and
#                                   bench_train and writes their tables and plots to
#                                   out/performance (about 45 minutes), for docs/performance.md
#                                   and docs/compact.md
#   bash cmake/quickstart.sh fuzz [seconds]
#                                   installs clang, builds the libFuzzer targets and runs each
#                                   for the given time (default 60), as many at once as there
#                                   are cores; logs, new inputs and any crash in out/fuzz
set -euo pipefail
cd "$(dirname "$0")/.."

what="${1:-}"
case "$what" in
  main|test|perf|fuzz) ;;
  *) echo "usage: bash cmake/quickstart.sh main|test|perf|fuzz [seconds]" >&2; exit 2 ;;
esac

if [ "$what" = test ]; then
  # Open MPI for the data-parallel tests (docs/parallel.md).
  bash cmake/setup_debian.sh clang libclang-rt-14-dev libopenmpi-dev openmpi-bin
elif [ "$what" = fuzz ]; then
  bash cmake/setup_debian.sh clang libclang-rt-14-dev
else
  bash cmake/setup_debian.sh
fi
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"

if [ "$what" = test ]; then
  cmake --workflow --preset test
elif [ "$what" = fuzz ]; then
  seconds="${2:-60}"
  targets=(safetensors llama2c tokenizer pruner_state hf_text hf_directory tokenizer_files half_floats layer_metadata
           sentencepiece hf_tokenizer)
  cmake --preset fuzz >/dev/null
  cmake --build --preset fuzz --target fuzz_make_corpus "${targets[@]/#/fuzz_}"
  bin=build/fuzz/tests/fuzz
  mkdir -p out/fuzz
  "$bin/fuzz_make_corpus" out/fuzz/corpus >/dev/null
  cp examples/data/tok512.bin out/fuzz/corpus/tokenizer/
  cp examples/data/tok512.model tests/data/spm_*.model out/fuzz/corpus/sentencepiece/
  cp tests/data/hf_*_style.json out/fuzz/corpus/hf_tokenizer/
  jobs_at_once=$(nproc)
  for t in "${targets[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_at_once" ]; do sleep 1; done
    echo "fuzz_$t: ${seconds} s (log out/fuzz/$t.log)"
    # New inputs go to the first corpus folder; the regressions are read only.
    "$bin/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
      -artifact_prefix="out/fuzz/$t-" out/fuzz/corpus/$t "tests/fuzz/regressions/$t" \
      >"out/fuzz/$t.log" 2>&1 &
  done
  status=0
  wait || status=$?
  for t in "${targets[@]}"; do
    runs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "out/fuzz/$t.log" | tail -1 || true)
    crash=$(find out/fuzz -maxdepth 1 -name "$t-*" | wc -l)
    echo "fuzz_$t: ${runs:-no summary (see the log)}; findings: $crash"
    [ "$crash" -eq 0 ] && [ -n "$runs" ] || status=1
  done
  exit $status
elif [ "$what" = perf ]; then
  cmake --preset default >/dev/null
  cmake --build --preset default --target bench_compact bench_pack_forms bench_decode bench_train
  mkdir -p out/performance
  ./build/default/bench/bench_compact --benchmark_repetitions=5 \
    --benchmark_report_aggregates_only=true --benchmark_min_time=0.05 \
    --benchmark_out=out/performance/bench_compact.json --report=out/performance
  ./build/default/bench/bench_pack_forms --benchmark_repetitions=5 \
    --benchmark_report_aggregates_only=true --benchmark_min_time=0.05 \
    --benchmark_out=out/performance/bench_pack_forms.json --report=out/performance
  ./build/default/bench/bench_decode --benchmark_repetitions=5 \
    --benchmark_report_aggregates_only=true --benchmark_min_time=0.1 \
    --benchmark_out=out/performance/bench_decode.json --report=out/performance
  # One repetition: a GPT-2-small step takes half a minute on one thread.
  ./build/default/bench/bench_train --benchmark_out=out/performance/bench_train.json --report=out/performance
else
  cmake --preset default >/dev/null
  cmake --build --preset default --target lmshrink_compress
  # glibc asks for transparent huge pages where the kernel gives them only on request: 1.4-2x
  # on large models (docs/performance.md); ignored by a glibc before 2.35. Yours wins if set.
  export GLIBC_TUNABLES="${GLIBC_TUNABLES:-glibc.malloc.hugetlb=1}"
  ./build/default/examples/lmshrink_compress --out out/compress "${@:2}"
fi
