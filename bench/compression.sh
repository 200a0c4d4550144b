#!/usr/bin/env bash
# Bytes on the wire and server CPU per WebSocket delivery of a ~1 KB JSON job posting, plain,
# with permessage-deflate, with the compact envelope and with both (100 subscribers, 200
# messages; raw clients, so the figures are the server's own: herald_bytes_out_total and its
# CPU), then the server's memory per idle subscribed connection with and without deflate (8,000
# connections, a fresh server each). Prints Markdown.
#   bench/compression.sh [subscribers] [messages] [idle connections]
set -euo pipefail
cd "$(dirname "$0")/.."
subscribers="${1:-100}"; messages="${2:-200}"; idle="${3:-8000}"
# The idle run holds that many sockets on each side (fewer than 2,000 measure mostly noise).
ulimit -n 20000
cargo build --release --quiet -p herald --bin herald --example ws_compression_bytes
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
serve() {
  port=$(free_port)
  # Every client comes from 127.0.0.1: the per-IP connection rate would refuse most of them.
  HERALD_LOG=warn target/release/herald serve --listen "127.0.0.1:$port" --api-key bench \
    --set connection_rate_per_ip=1000000 --set connection_burst_per_ip=1000000 >/dev/null &
  pids+=($!)
  for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
}
example() { target/release/examples/ws_compression_bytes --herald "http://127.0.0.1:$port" --api-key bench "$@"; }
serve
plain=$(example --subscribers "$subscribers" --messages "$messages")
deflate=$(example --subscribers "$subscribers" --messages "$messages" --deflate)
compact=$(example --subscribers "$subscribers" --messages "$messages" --compact)
both=$(example --subscribers "$subscribers" --messages "$messages" --compact --deflate)
serve; idle_plain=$(example --idle "$idle")
serve; idle_deflate=$(example --idle "$idle" --deflate)
printf '%s\n' "$plain" "$deflate" "$compact" "$both" "$idle_plain" "$idle_deflate" >&2
figure() { echo "$1" | sed -n "s/.*: \([0-9]*\) bytes out per delivery, \([0-9.]*\) µs.*/\\$2/p"; }
each() { echo "$1" | sed -n 's/.*: \([0-9]*\) bytes of server memory each/\1/p'; }
echo "| WebSocket ($subscribers subscribers, $messages messages of a ~1 KB posting) | bytes out per delivery | server CPU per delivery (µs) | server memory per idle connection ($idle connections) |"
echo "|---|---:|---:|---:|"
echo "| plain | $(figure "$plain" 1) | $(figure "$plain" 2) | $(each "$idle_plain") |"
echo "| permessage-deflate (compressed once per message) | $(figure "$deflate" 1) | $(figure "$deflate" 2) | $(each "$idle_deflate") |"
echo "| compact envelope (\`herald.compact\`) | $(figure "$compact" 1) | $(figure "$compact" 2) | |"
echo "| compact envelope and permessage-deflate | $(figure "$both" 1) | $(figure "$both" 2) | |"
