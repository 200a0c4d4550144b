#!/usr/bin/env bash
# API publishes per second (32 keep-alive connections, `herald bench --scenario publish`) with
# history in memory, on disk with an fsync per publish (the default durability), and on disk
# with group commit every 5 ms. Each durable run gets a fresh data directory under target/.
# Prints a Markdown table (for BENCHMARKS.md).
#   bench/durability.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
cargo build --release --quiet
herald=target/release/herald
scratch="target/bench-durability"
rm -rf "$scratch" && mkdir -p "$scratch"
run() {
  "$herald" bench --scenario publish --duration "$seconds" "$@" 2>&1 | sed -n 's/^Herald: \([0-9]*\) API publishes per second./\1/p'
}
memory=$(run)
fsync=$(run --set "data_dir=\"$scratch/fsync\"" --set 'durability="fsync"')
group=$(run --set "data_dir=\"$scratch/group\"" --set 'durability="group"' --set group_commit_ms=5)
echo "| history | durability | API publishes per second |"
echo "|---|---|---:|"
echo "| memory | — | $memory |"
echo "| disk (\`data_dir\`) | \`fsync\`: an fdatasync covers each publish before its answer | $fsync |"
echo "| disk (\`data_dir\`) | \`group\`, \`group_commit_ms = 5\`: at most one fdatasync per 5 ms | $group |"
