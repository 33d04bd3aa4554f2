#!/usr/bin/env bash
# Instructions executed by chatdump binaries exporting one generated Wolkvox
# chat_2 answer (valgrind's cachegrind, no cache simulation): a count that,
# unlike time on this shared 2-core machine, is the same from run to run,
# so a change of a few percent shows. The top functions of the last binary
# are printed too.
#
# Caveat: under valgrind the SHA-256 of digest ids runs in software (no
# SHA extensions), so it is a far larger share of the count than of the
# time (about 40% against 5%); compare counts with it set apart.
#
# Needs valgrind (`apt-get install valgrind`).
# Usage: scripts/bench-instructions.sh MB MIX BINARY...   (MIX: text, escaped or cap)
# e.g.   scripts/bench-instructions.sh 16 escaped /tmp/before target/release/chatdump
set -euo pipefail
cd "$(dirname "$0")/.."
mb=$1 mix=$2
shift 2
. scripts/lib.sh
bench_chat2 "$mb" "$mix"
for binary in "$@"; do
  out="$work/cachegrind.$(basename "$binary")"
  valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file="$out" "$binary" \
    --config "$work/chatdump.toml" export bench --from 2024-03-05 --to 2024-03-06 \
    --records messages -q -o "$work/out.jsonl" 2> "$work/valgrind.txt"
  total=$(grep -o 'I *refs: *[0-9,]*' "$work/valgrind.txt" | grep -o '[0-9,]*$' | tr -d ,)
  sha=$(cg_annotate "$out" 2>/dev/null | grep -m1 'sha256' | awk '{print $1}' | tr -d , || true)
  echo "$binary: $total instructions, ${sha:-0} of them SHA-256, $((total - ${sha:-0})) without"
done
echo "top functions of $binary:"
cg_annotate "$out" 2>/dev/null | sed -n '/file:function/,$p' | sed -n 3,25p
