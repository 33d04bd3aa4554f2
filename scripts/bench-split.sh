#!/usr/bin/env bash
# Requests (daily tokens) a capped Wolkvox backfill spends against the fewest
# that could cover it (BENCHMARKS.md). See examples/bench_split.rs.
#
# Usage: scripts/bench-split.sh [CAP ...]   (default: 300 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
cargo build --release --quiet --example bench_split
for cap in "${@:-300 1000}"; do
  for c in $cap; do
    ./target/release/examples/bench_split "$c" ordered
    ./target/release/examples/bench_split "$c" subset
  done
done
