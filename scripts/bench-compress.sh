#!/usr/bin/env bash
# Compressed outputs (issue 15, BENCHMARKS.md): the same Wolkvox chat_2
# export to .jsonl, .jsonl.gz and .jsonl.zst, in MB/s of uncompressed
# output, beside `gzip -6` and `zstd -3` on the plain file in the same run.
#
# Usage: scripts/bench-compress.sh [MB] [cap|text]
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-256}
mix=${2:-text}
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
cat > "$work/chatdump.toml" <<TOML
[sources.bench]
kind = "wolkvox"
base_url = "http://127.0.0.1:$port"
token = "bench"
record_cap = 10000000
TOML
chmod 600 "$work/chatdump.toml"

seconds() { # command... -> wall seconds
  local start end
  start=$(date +%s.%N); "$@" > /dev/null; end=$(date +%s.%N)
  python3 -c "print($end - $start)"
}
export_to() {
  ./target/release/chatdump --config "$work/chatdump.toml" export bench \
    --from 2024-03-05 --to 2024-03-06 --records messages -q -o "$1"
}
plain_secs=$(seconds export_to "$work/out.jsonl")
plain=$(stat -c %s "$work/out.jsonl")
report() { # label seconds size
  printf '%-22s %6.2f s  %7.1f MB/s of output  %7.1f MB written (%.1f%%)\n' "$1" "$2" \
    "$(python3 -c "print($plain/1048576/$2)")" "$(python3 -c "print($3/1048576)")" \
    "$(python3 -c "print(100*$3/$plain)")"
}
echo "$(nproc) cores; output: $((plain / 1048576)) MB of JSONL ($mix mix)"
report "chatdump .jsonl" "$plain_secs" "$plain"
for ext in jsonl.gz jsonl.zst; do
  s=$(seconds export_to "$work/out.$ext")
  report "chatdump .$ext" "$s" "$(stat -c %s "$work/out.$ext")"
done
s=$(seconds sh -c "gzip -6 -c '$work/out.jsonl' > '$work/cli.gz'")
report "gzip -6 (file only)" "$s" "$(stat -c %s "$work/cli.gz")"
if command -v zstd > /dev/null; then
  s=$(seconds sh -c "zstd -3 -q -c '$work/out.jsonl' > '$work/cli.zst'")
  report "zstd -3 (file only)" "$s" "$(stat -c %s "$work/cli.zst")"
fi
