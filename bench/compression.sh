#!/usr/bin/env bash
# Bytes on the wire and server CPU per WebSocket delivery of a ~1 KB JSON job posting, with
# and without permessage-deflate (100 subscribers, 200 messages; raw clients, so the figures
# are the server's own: herald_bytes_out_total and its CPU). Prints a Markdown table.
#   bench/compression.sh [subscribers] [messages]
set -euo pipefail
cd "$(dirname "$0")/.."
subscribers="${1:-100}"; messages="${2:-200}"
cargo build --release --quiet -p herald --bin herald --example ws_compression_bytes
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
HERALD_LOG=warn target/release/herald serve --listen "127.0.0.1:$port" --api-key bench >/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
run() { target/release/examples/ws_compression_bytes --herald "http://127.0.0.1:$port" --api-key bench \
  --subscribers "$subscribers" --messages "$messages" "$@"; }
plain=$(run); deflate=$(run --deflate)
echo "$plain" >&2; echo "$deflate" >&2
figure() { echo "$1" | sed -n "s/.*: \([0-9]*\) bytes out per delivery, \([0-9.]*\) µs.*/\\$2/p"; }
echo "| WebSocket ($subscribers subscribers, $messages messages of a ~1 KB posting) | bytes out per delivery | server CPU per delivery (µs) |"
echo "|---|---:|---:|"
echo "| plain | $(figure "$plain" 1) | $(figure "$plain" 2) |"
echo "| permessage-deflate (compressed once per message) | $(figure "$deflate" 1) | $(figure "$deflate" 2) |"
