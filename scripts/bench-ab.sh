#!/usr/bin/env bash
# A/B of chatdump binaries on one generated Wolkvox chat_2 answer: each
# binary exports it N times, taking turns, and the median (and best) wall
# and CPU time (user + system) of each are printed. CPU time is the steadier
# figure on this shared 2-core machine, whose speed swings between runs.
#
# Usage: scripts/bench-ab.sh N MIX BINARY...   (MIX: text, escaped or cap)
# e.g.   git stash; cargo build --release; cp target/release/chatdump /tmp/before
#        git stash pop; cargo build --release
#        scripts/bench-ab.sh 9 escaped /tmp/before target/release/chatdump
set -euo pipefail
cd "$(dirname "$0")/.."
runs=$1 mix=$2
shift 2
. scripts/lib.sh
bench_chat2 256 "$mix"
for _ in $(seq "$runs"); do
  for binary in "$@"; do
    /usr/bin/time -f "$binary %e %U %S" -a -o "$work/times.txt" "$binary" \
      --config "$work/chatdump.toml" export bench --from 2024-03-05 --to 2024-03-06 \
      --records messages -q -o "$work/out.jsonl"
  done
done
python3 - "$work/times.txt" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    binary, wall, user, system = line.split()
    runs.setdefault(binary, []).append((float(wall), float(user) + float(system)))
for binary, rs in runs.items():
    wall = [w for w, _ in rs]
    cpu = [c for _, c in rs]
    print(f"{binary}: wall median {statistics.median(wall):.2f} s (best {min(wall):.2f}), "
          f"CPU median {statistics.median(cpu):.2f} s (best {min(cpu):.2f}), {len(rs)} runs")
PY
