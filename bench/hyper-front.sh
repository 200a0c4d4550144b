#!/usr/bin/env bash
# Herald's own HTTP/1 engine against hyper's HTTP/1 server, with the same state and routes
# (crates/herald-server/examples/hyper_front.rs), in one run: idle long polls (RSS per
# connection) and the seed scenario over long polling (server CPU), twice, alternating.
#
#   bench/hyper-front.sh            # results in bench-hyper/<own|hyper>-<round>/bench.md
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p herald -p herald-server --example hyper_front
out="${BENCH_OUT:-bench-hyper}"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
run() { # name, server command…
  local name=$1; shift
  "$@" >"$out/$name.server.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$out/$name.server.log" && break; sleep 0.1; done
  ./target/release/herald bench --url "http://127.0.0.1:$port" --api-key bench --pid "$pid" \
    --scenario idle,seed --transport poll --out "$out/$name" >"$out/$name.log" 2>&1
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
mkdir -p "$out"
for round in 1 2; do
  run "own-$round" ./target/release/herald serve --listen "127.0.0.1:$port" --api-key bench \
    --set max_connections=0 --set connection_rate_per_ip=0 --set max_streams_per_ip=0
  run "hyper-$round" ./target/release/examples/hyper_front "127.0.0.1:$port"
done
grep -h -A12 "## Summary" "$out"/*/bench.md
