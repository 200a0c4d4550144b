#!/usr/bin/env bash
# Instructions the server executes per delivery, counted by valgrind's callgrind: unlike CPU
# time, the count repeats from run to run and does not depend on what else the machine does,
# so it shows a change to the server's own code that CPU percentages hide in their noise. It
# counts user space only (the kernel's send path is not in it).
#
#   bench/instructions.sh                    # long polling, ./target/release/herald
#   bench/instructions.sh ws /tmp/herald-old # another transport, another build
#
# The server runs under callgrind twice, with the same small seed load (400 subscribers,
# 10 channels, 10 messages/s) for 10 s and for 20 s; the difference of the two counts over the
# difference of deliveries leaves out start-up and shutdown. With HERALD_CALLGRIND_KEEP=<dir>
# the two profiles stay there (`callgrind_annotate --inclusive=yes <dir>/callgrind.20s.out`
# shows where the instructions go).
set -euo pipefail
cd "$(dirname "$0")/.."
transport="${1:-poll}"
bin="${2:-}"
if [ -z "$bin" ]; then
  cargo build --release --locked -p herald
  bin=./target/release/herald
fi
command -v valgrind >/dev/null || { echo "needs valgrind (Debian package valgrind)" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill ${server:-} 2>/dev/null; rm -rf "$work"' EXIT

# Prints "<instructions> <deliveries>" for a run of $1 seconds.
measure() {
  local seconds=$1 port log="$work/server.log"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  HERALD_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.${seconds}s.out" \
    "$bin" serve --listen "127.0.0.1:$port" --api-key bench \
    --set max_connections=0 --set connection_rate_per_ip=0 --set max_streams_per_ip=0 >"$log" 2>&1 &
  server=$!
  for _ in $(seq 120); do grep -q "listening on" "$log" && break; sleep 0.5; done
  "$bin" bench --url "http://127.0.0.1:$port" --api-key bench --scenario seed --transport "$transport" \
    --subscribers 400 --channels 10 --rate 10 --duration "$seconds" --out "$work/out" >/dev/null 2>&1
  kill -TERM "$server"
  wait "$server" || true
  local ir delivered
  if [ -n "${HERALD_CALLGRIND_KEEP:-}" ]; then
    mkdir -p "$HERALD_CALLGRIND_KEEP" && cp "$work/callgrind.${seconds}s.out" "$HERALD_CALLGRIND_KEEP/"
  fi
  ir=$(callgrind_annotate "$work/callgrind.${seconds}s.out" 2>/dev/null | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
  delivered=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["rows"][0]["figures"]["delivered"]))' "$work/out/bench.json")
  echo "$ir $delivered"
}

read -r ir_short n_short < <(measure 10)
read -r ir_long n_long < <(measure 20)
python3 - "$transport" "$ir_short" "$n_short" "$ir_long" "$n_long" <<'PY'
import sys
transport, a, na, b, nb = sys.argv[1], *map(int, sys.argv[2:])
print(f"{transport}: {(b - a) / (nb - na):,.0f} server instructions per delivery "
      f"({nb - na:,} deliveries between a 10 s and a 20 s run)")
PY
