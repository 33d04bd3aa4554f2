#!/usr/bin/env bash
# Wolkvox over several daily windows (issue 15, BENCHMARKS.md): the same
# generated chat_2 answer served for each of 7 days, exported with the old
# 1 request/s spacing and with the default (no spacing, one request in
# flight, a token ceiling instead).
#
# Usage: scripts/bench-windows.sh [MB] [cap|text]
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-32}
mix=${2:-cap}
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --release --quiet
cargo build --release --quiet --example gen_chat2
mkdir -p "$work/www/api/v2"
./target/release/examples/gen_chat2 "$work/www/api/v2/reports_manager.php" "$mb" "$mix"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$work/www" && exec python3 -m http.server "$port" --bind 127.0.0.1 >/dev/null 2>&1) &
server=$!
for _ in $(seq 50); do curl -fs -o /dev/null "http://127.0.0.1:$port/api/v2/reports_manager.php" -r 0-0 && break; sleep 0.1; done
for pacing in "rate_limit = 1" ""; do
  printf '[sources.bench]\nkind = "wolkvox"\nbase_url = "http://127.0.0.1:%s"\ntoken = "bench"\nrecord_cap = 10000000\n%s\n' \
    "$port" "$pacing" > "$work/c.toml"
  chmod 600 "$work/c.toml"
  start=$(date +%s.%N)
  ./target/release/chatdump --config "$work/c.toml" export bench --from 2024-03-01 --to 2024-03-08 \
    --records messages -q -o "$work/out.jsonl"
  end=$(date +%s.%N)
  python3 -c "print('%-32s 7 windows of $mb MB in %.2f s: %.0f MB/s' % ('${pacing:-default (no spacing)}', $end - $start, 7 * $mb / ($end - $start)))"
done
