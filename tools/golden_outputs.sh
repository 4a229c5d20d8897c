#!/usr/bin/env bash
# The behaviour check for refactors (docs/design.md): runs a set of small, untimed jobs that
# together reach every method, loss, family and export, and prints one "sha256  path" line per
# file they write. Two builds behave the same when their lists are identical:
#
#   bash tools/golden_outputs.sh build/test /tmp/before > before.txt   # on the old commit
#   bash tools/golden_outputs.sh build/test /tmp/after > after.txt     # on the new one
#   diff before.txt after.txt
#
# BUILD is a test build (cmake --preset test) with lmshrink_compress, lmshrink_study,
# lmshrink_convert and test_gpt2 built. Paths in the files are made relative to OUT first, so
# the two runs may use different folders. One thread: the jobs take about 3 minutes.
set -euo pipefail
build=$(cd "$1" && pwd)
out=$2
data=$(cd "$(dirname "$0")/../examples/data" && pwd)
rm -rf "$out"
mkdir -p "$out"
out=$(cd "$out" && pwd)
ex=$build/examples
small=(--batch 2 --length 32 --data-windows 4 --val-windows 1 --eval-windows 2 --calib-windows 2
       --speed-tokens 0 --sample-tokens 8 --threads 1 --oats-iterations 2)

# stories260K (llama2.c): every method, two ratios, the default losses.
"$ex/lmshrink_compress" "${small[@]}" --steps 4 --ratios 0.7,0.5 \
  --methods losparse,lowrank,itp,oats,losparse-elem,scratch,dense,trunc-kd,trunc-lm \
  --out "$out/llama" >/dev/null
# Sequential reconstruction, oats per matrix, and the layer-wise truncation loss.
"$ex/lmshrink_compress" "${small[@]}" --steps 3 --ratios 0.5 --methods lowrank,oats,trunc-kd \
  --reconstruct sequential --oats-allocation per-matrix --trunc-loss layerwise \
  --out "$out/llama_reconstruct" >/dev/null
# The Hugging Face form of the same model, and the job on it.
"$ex/lmshrink_convert" "$data/stories260K.bin" "$out/stories260K_hf" >/dev/null
"$ex/lmshrink_compress" "${small[@]}" --steps 2 --ratios 0.5 --methods losparse,trunc-kd \
  --model "$out/stories260K_hf" --out "$out/llama_hf" >/dev/null
# A tiny random GPT-2 in Hugging Face layout, with DistilGPT-2's preset and every other method.
TINY_GPT2_DIR="$out/tiny_gpt2" "$build/tests/test_gpt2" "[.make_tiny_gpt2]" >/dev/null
"$ex/lmshrink_compress" "${small[@]}" --steps 2 --length 16 --model "$out/tiny_gpt2" --preset distilgpt2 \
  --methods losparse,lowrank,itp,oats,losparse-elem,scratch,trunc-kd --out "$out/gpt2" >/dev/null
"$ex/lmshrink_convert" "$out/gpt2/checkpoints/trunc-kd_hf" "$out/gpt2_bf16" --dtype bf16 >/dev/null
# The study on a tiny budget: every table.
"$ex/lmshrink_study" --seeds 1 --steps 2 --batch 2 --length 32 --data-windows 4 --val-windows 1 \
  --eval-windows 1 --curve-points 2 --calib-windows 2 --sample-tokens 4 --out "$out/study" >/dev/null

cd "$out"
find . -type f | LC_ALL=C sort | while read -r f; do
  # Absolute paths written into reports name this run's folders: compare them relative.
  # The study's train_seconds column (the last) is a timing: left out.
  case $f in
    ./study/study.csv) timing='s#,[0-9.]*$##' ;;
    *) timing='' ;;
  esac
  sed -e "s#$out/##g" -e "s#$data/##g" -e "s#$build/##g" -e "$timing" "$f" | sha256sum | sed "s#-\$#$f#"
done
