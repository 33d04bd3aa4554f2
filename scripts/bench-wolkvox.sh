#!/usr/bin/env bash
# Streaming benchmark for the Wolkvox chat_2 export (BENCHMARKS.md).
#
# Serves a generated ~256 MB chat_2 response on 127.0.0.1 and exports it to
# JSONL messages with chatdump, beside `curl | jq -c` flattening the same
# response, measuring wall time and peak RSS with /usr/bin/time -v.
#
# chatdump is measured two ways: `chatdump` writes `-o FILE`, which is
# fsynced before it is moved into place (what a cron job runs; making 400 MB
# durable costs this machine a few tenths of a second), and `streamed`
# writes the same JSONL to stdout redirected to a file, like jq and
# limit-chat2, neither of which syncs. The ratios to jq and limit-chat2 are
# given for both; like for like is `streamed`.
#
# Also measures limit-chat2 (a C reader kept outside this repository, run
# when it is there) on the same file,
# and the same export with --redact (redaction must keep at least 70% of
# the unredacted throughput).
#
# chatdump and limit-chat2 are run RUNS times each (default 5), taking
# turns, and jq JQ_RUNS times (default 3; it takes a dozen seconds a run),
# and their medians compared: this shared machine's speed swings by a
# factor of two or more from one second to the next, and a single pair of
# runs can land on either side of a swing.
#
# Usage: [RUNS=5] [JQ_RUNS=3] scripts/bench-wolkvox.sh [MB] [cap|text|escaped]
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-256}
mix=${2:-cap}
. scripts/lib.sh
bench_chat2 "$mb" "$mix"

runs=${RUNS:-5}

# measure LABEL COMMAND...: one run; prints a line and appends
# "label seconds rss_kb" to $work/runs.txt.
measure() {
  local label=$1; shift
  /usr/bin/time -v "$@" 2> "$work/time.txt" > /dev/null
  local wall rss secs
  wall=$(grep 'Elapsed (wall clock)' "$work/time.txt" | awk '{print $NF}')
  rss=$(grep 'Maximum resident set size' "$work/time.txt" | awk '{print $NF}')
  secs=$(python3 -c "p='$wall'.split(':'); print(sum(float(x)*60**i for i,x in enumerate(reversed(p))))")
  printf '%-12s wall %6.2f s   %7.1f MB/s   peak RSS %7.1f MB\n' "$label" "$secs" \
    "$(python3 -c "print($size/1048576/$secs)")" "$(python3 -c "print($rss/1024)")"
  echo "$label $secs $rss" >> "$work/runs.txt"
}

# summary: the median of each label's runs, and the ratios the targets name
# for, from the medians.
summary() {
  python3 - "$work/runs.txt" "$size" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    label, secs, rss = line.split()
    runs.setdefault(label, []).append((float(secs), int(rss)))
size = int(sys.argv[2]) / 1048576
speed = {}
print("medians:")
for label, rs in runs.items():
    secs = statistics.median(s for s, _ in rs)
    speed[label] = size / secs
    print(f"  {label:<12} {secs:6.2f} s  {speed[label]:7.1f} MB/s  peak RSS {max(r for _, r in rs) / 1024:5.1f} MB (of {len(rs)} runs)")
def ratio(a, b, what):
    if a in speed and b in speed:
        print(f"  {what}: {100 * speed[a] / speed[b]:.0f}%")
ratio("streamed", "limit-chat2", "streamed / limit-chat2")
ratio("chatdump", "limit-chat2", "chatdump (-o, synced) / limit-chat2")
ratio("redacted", "chatdump", "redacted / chatdump")
for label in ("streamed", "chatdump"):
    if label in speed and "jq" in speed:
        print(f"  {label} / jq: {speed[label] / speed['jq']:.1f}x")
PY
}

echo "response: $((size / 1048576)) MB ($mix mix), $(nproc) cores, $runs runs each"
# The measuring stick (limit-chat2), on the same response file, when the
# shared folder beside the project has it: a single-purpose program doing the
# same per-message work as fast as this machine allows.
limit=../shared/bench/limit-chat2
if [ -d "$limit" ]; then
  (cd "$limit" && cargo build --release --locked --quiet --target-dir "$OLDPWD/target/limit-chat2")
fi
for _ in $(seq "$runs"); do
  measure streamed sh -c "./target/release/chatdump --config '$work/chatdump.toml' export bench \
    --from 2024-03-05 --to 2024-03-06 --records messages -q > '$work/streamed.jsonl'"
  measure chatdump ./target/release/chatdump --config "$work/chatdump.toml" export bench \
    --from 2024-03-05 --to 2024-03-06 --records messages -q -o "$work/out.jsonl"
  CHATDUMP_REDACT_KEY=bench-key measure redacted ./target/release/chatdump --config "$work/chatdump.toml" export bench \
    --from 2024-03-05 --to 2024-03-06 --records messages -q --redact -o "$work/redacted.jsonl"
  if [ -d "$limit" ]; then
    measure limit-chat2 ./target/limit-chat2/release/limit-chat2 --mode stream2 -o "$work/limit.jsonl" \
      "$work/www/api/v2/reports_manager.php"
  fi
done
lines=$(wc -l < "$work/out.jsonl")
cmp -s "$work/out.jsonl" "$work/streamed.jsonl" || echo "the streamed export differs from the -o one" >&2
echo "redacted: $(grep -c '\[PHONE\]' "$work/redacted.jsonl") messages with [PHONE], $(grep -c '\[EMAIL\]' "$work/redacted.jsonl") with [EMAIL]"
for _ in $(seq "${JQ_RUNS:-3}"); do
  measure jq sh -c "curl -s 'http://127.0.0.1:$port/api/v2/reports_manager.php' | jq -c '.data[] as \$c | \$c.conversation[] | {conn_id: \$c.conn_id, agent_name: \$c.agent_name, customer_name: \$c.customer_name} + .' > '$work/jq.jsonl'"
done
echo "chatdump wrote $lines messages"
summary
