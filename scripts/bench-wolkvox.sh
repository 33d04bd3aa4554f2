#!/usr/bin/env bash
# Streaming benchmark for the Wolkvox chat_2 export (BENCHMARKS.md).
#
# Serves a generated ~256 MB chat_2 response on 127.0.0.1 and exports it to
# JSONL messages with chatdump, beside `curl | jq -c` flattening the same
# response, measuring wall time and peak RSS with /usr/bin/time -v.
#
# Also measures limit-chat2 (../shared/bench, when present) on the same file,
# and the same export with --redact (issue 7: redaction must keep
# at least 70% of the unredacted throughput).
#
# Usage: scripts/bench-wolkvox.sh [MB] [cap|text|escaped]
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-256}
mix=${2:-cap}
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT

. scripts/lib.sh
serve_chat2 "$mb" "$mix"
wolkvox_config

measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -v "$@" 2> "$work/time.txt" > /dev/null
  local wall rss
  wall=$(grep 'Elapsed (wall clock)' "$work/time.txt" | awk '{print $NF}')
  rss=$(grep 'Maximum resident set size' "$work/time.txt" | awk '{print $NF}')
  local secs
  secs=$(python3 -c "p='$wall'.split(':'); print(sum(float(x)*60**i for i,x in enumerate(reversed(p))))")
  printf '%-10s wall %6.2f s   %7.1f MB/s   peak RSS %7.1f MB\n' "$label" "$secs" \
    "$(python3 -c "print($size/1048576/$secs)")" "$(python3 -c "print($rss/1024)")"
}

echo "response: $((size / 1048576)) MB ($mix mix), $(nproc) cores"
measure chatdump ./target/release/chatdump --config "$work/chatdump.toml" export bench \
  --from 2024-03-05 --to 2024-03-06 --records messages -q -o "$work/out.jsonl"
lines=$(wc -l < "$work/out.jsonl")
CHATDUMP_REDACT_KEY=bench-key measure redacted ./target/release/chatdump --config "$work/chatdump.toml" export bench \
  --from 2024-03-05 --to 2024-03-06 --records messages -q --redact -o "$work/redacted.jsonl"
echo "redacted: $(grep -c '\[PHONE\]' "$work/redacted.jsonl") messages with [PHONE], $(grep -c '\[EMAIL\]' "$work/redacted.jsonl") with [EMAIL]"
# The measuring stick of issue 15, on the same response file, when the
# shared folder beside the project has it: a single-purpose program doing the
# same per-message work as fast as this machine allows.
limit=../shared/bench/limit-chat2
if [ -d "$limit" ]; then
  (cd "$limit" && cargo build --release --locked --quiet --target-dir "$OLDPWD/target/limit-chat2")
  measure limit-chat2 ./target/limit-chat2/release/limit-chat2 --mode stream2 -o "$work/limit.jsonl" \
    "$work/www/api/v2/reports_manager.php"
fi
measure jq sh -c "curl -s 'http://127.0.0.1:$port/api/v2/reports_manager.php' | jq -c '.data[] as \$c | \$c.conversation[] | {conn_id: \$c.conn_id, agent_name: \$c.agent_name, customer_name: \$c.customer_name} + .'"
echo "chatdump wrote $lines messages"
