#!/usr/bin/env bash
# WebSocket compression, Herald beside nginx + Nchan with its deflate on:
#  1. `herald bench --scenario compression --peer nchan`: bytes on the wire, server CPU and
#     latency per delivery of a ~1 KB JSON job posting, plain, with permessage-deflate, and
#     (Herald) with the compact envelope, alone and with deflate; the seed's load (10,000 subscribers,
#     100 channels, 100 messages/s) unless other `herald bench` arguments are given;
#  2. the server's memory per idle subscribed connection with and without deflate
#     (examples/ws_idle_memory.rs, 8,000 connections, a fresh server each).
# Prints Markdown.
#   bench/compression.sh [herald bench arguments …]
set -euo pipefail
cd "$(dirname "$0")/.."
idle="${HERALD_IDLE_CONNECTIONS:-8000}"
# The load holds thousands of sockets on each side.
ulimit -n 20000
cargo build --release --quiet --locked -p herald --bin herald --example ws_idle_memory
out=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$out"' EXIT
target/release/herald bench --scenario compression --peer nchan --out "$out" "$@" >&2
python3 - "$out/bench.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))["rows"]
print("| WebSocket, ~1 KB job posting | bytes on the wire per delivery | server CPU per delivery (µs) | latency p99 (ms) | lost |")
print("|---|---:|---:|---:|---:|")
forms = [("", "plain"), ("deflate_", "permessage-deflate"), ("compact_", "compact envelope"), ("compact_deflate_", "compact envelope + permessage-deflate")]
for row in rows:
    f, server = row["figures"], row["server"].capitalize()
    for prefix, form in forms:
        if f"{prefix}bytes_per_delivery" in f:
            print(f"| {server}, {form} | {f[prefix + 'bytes_per_delivery']:.0f} | {f[prefix + 'server_cpu_us_per_delivery']:.2f} "
                  f"| {f[prefix + 'latency_p99_ms']:.2f} | {f[prefix + 'lost']:.0f} |")
PY
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
serve() {
  port=$(free_port)
  # Every client comes from 127.0.0.1: the per-IP connection rate would refuse most of them.
  HERALD_LOG=warn target/release/herald serve --listen "127.0.0.1:$port" --api-key bench \
    --set connection_rate_per_ip=1000000 --set connection_burst_per_ip=1000000 >/dev/null &
  pids+=($!)
  for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
}
each() { echo "$1" | sed -n 's/.*: \([0-9]*\) bytes of server memory each/\1/p'; }
serve; plain=$(target/release/examples/ws_idle_memory --herald "http://127.0.0.1:$port" --idle "$idle")
serve; deflate=$(target/release/examples/ws_idle_memory --herald "http://127.0.0.1:$port" --idle "$idle" --deflate)
echo
echo "| Herald, $idle idle subscribed WebSocket connections | server memory per connection (bytes) |"
echo "|---|---:|"
echo "| plain | $(each "$plain") |"
echo "| permessage-deflate negotiated | $(each "$deflate") |"
