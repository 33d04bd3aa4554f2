#!/usr/bin/env bash
# Parquet against JSON Lines on the generated ~256 MB Wolkvox chat_2 answer
# (BENCHMARKS.md): the same export of messages written as `.parquet`, as
# `.jsonl` and as `.jsonl.zst`, RUNS times each taking turns; the median
# wall time and peak RSS of each (/usr/bin/time -v) and the files' sizes.
#
# Usage: [RUNS=3] scripts/bench-parquet.sh [MB] [text|escaped|cap]
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-256}
mix=${2:-text}
runs=${RUNS:-3}
. scripts/lib.sh
bench_chat2 "$mb" "$mix"
for _ in $(seq "$runs"); do
  for out in messages.parquet messages.jsonl messages.jsonl.zst; do
    /usr/bin/time -v ./target/release/chatdump --config "$work/chatdump.toml" export bench \
      --from 2024-03-05 --to 2024-03-06 --records messages -q -o "$work/$out" \
      2> "$work/time.txt"
    wall=$(grep 'Elapsed (wall clock)' "$work/time.txt" | awk '{print $NF}')
    rss=$(grep 'Maximum resident set size' "$work/time.txt" | awk '{print $NF}')
    echo "$out $wall $rss $(stat -c %s "$work/$out")" >> "$work/runs.txt"
  done
done
python3 - "$work/runs.txt" "$size" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    out, wall, rss, size = line.split()
    secs = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall.split(":"))))
    runs.setdefault(out, []).append((secs, int(rss), int(size)))
answer = int(sys.argv[2]) / 1048576
for out, r in runs.items():
    secs = statistics.median(s for s, _, _ in r)
    rss = statistics.median(m for _, m, _ in r) / 1024
    print(f"{out:20} wall median {secs:6.2f} s ({answer / secs:6.1f} MB/s of answer), "
          f"peak RSS {rss:6.1f} MB, file {r[0][2] / 1048576:7.1f} MB, {len(r)} runs")
PY
