#!/usr/bin/env bash
# Compressed outputs (BENCHMARKS.md): the same Wolkvox chat_2
# export to .jsonl, .jsonl.gz and .jsonl.zst, in MB/s of uncompressed
# output, beside `gzip -6` and `zstd -3` on the plain file in the same run.
#
# Usage: scripts/bench-compress.sh [MB] [cap|text]
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-256}
mix=${2:-text}
. scripts/lib.sh
bench_chat2 "$mb" "$mix"

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
