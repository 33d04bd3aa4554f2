#!/usr/bin/env bash
# Wolkvox over several daily windows (BENCHMARKS.md): the same
# generated chat_2 answer served for each of 7 days, exported with the old
# 1 request/s spacing and with the default (no spacing, one request in
# flight, a token ceiling instead).
#
# Usage: scripts/bench-windows.sh [MB] [cap|text]
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-32}
mix=${2:-cap}
. scripts/lib.sh
serve_chat2 "$mb" "$mix"
for pacing in "rate_limit = 1" ""; do
  wolkvox_config "$pacing"
  start=$(date +%s.%N)
  ./target/release/chatdump --config "$work/chatdump.toml" export bench --from 2024-03-01 --to 2024-03-08 \
    --records messages -q -o "$work/out.jsonl"
  end=$(date +%s.%N)
  python3 -c "print('%-32s 7 windows of $mb MB in %.2f s: %.0f MB/s' % ('${pacing:-default (no spacing)}', $end - $start, 7 * $mb / ($end - $start)))"
done
