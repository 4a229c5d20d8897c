#!/usr/bin/env bash
# Mean ± sample standard deviation over seeds of lmshrink_compress results:
#   bash cmake/seed_summary.sh out/long/20231 out/long/20232 out/long/20233
# prints a markdown table: method, ratio, parameters, linear kept, validation NLL, held-out NLL,
# held-out perplexity (of the mean NLL), top-1, and the first run's speed vs the teacher.
# Columns are read from each results.csv header, so its layout can change.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: bash cmake/seed_summary.sh RUN_DIR..." >&2; exit 2; }
for d in "$@"; do
  [ -f "$d/results.csv" ] || { echo "seed_summary: no $d/results.csv" >&2; exit 1; }
done
awk -F, -v runs=$# '
  FNR == 1 { for (i = 1; i <= NF; ++i) col[$i] = i; file++; next }
  {
    key = $col["method"] " " $col["ratio"]
    if (!(key in seen)) { seen[key] = 1; order[++n] = key; params[key] = $col["parameters"]; kept[key] = $col["linear_ratio"] }
    k = key
    vn[k] += $col["val_nll"]; vv[k] += $col["val_nll"]^2
    hn[k] += $col["nll"]; hv[k] += $col["nll"]^2
    t1[k] += $col["top1"]; cnt[k]++
    if (file == 1) speed[k] = $col["speedup_vs_teacher"]
  }
  function sd(s, q, c) { return c > 1 ? sqrt((q - s * s / c) / (c - 1) > 0 ? (q - s * s / c) / (c - 1) : 0) : 0 }
  END {
    print "| method | ratio | parameters | linear kept | validation NLL | held-out NLL | perplexity | top-1 | vs teacher | seeds |"
    print "|---|---|---|---|---|---|---|---|---|---|"
    for (i = 1; i <= n; ++i) {
      k = order[i]; c = cnt[k]; split(k, mr, " ")
      printf "| %s | %s | %s | %.3f | %.4f ± %.4f | %.4f ± %.4f | %.3f | %.4f | %s | %d |\n",
        mr[1], mr[2], params[k], kept[k], vn[k] / c, sd(vn[k], vv[k], c), hn[k] / c, sd(hn[k], hv[k], c),
        exp(hn[k] / c), t1[k] / c, speed[k] == "" ? "" : sprintf("%.2fx", speed[k]), c
    }
  }' $(for d in "$@"; do echo "$d/results.csv"; done)
