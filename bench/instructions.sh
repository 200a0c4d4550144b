#!/usr/bin/env bash
# Instructions the server executes per delivery, counted by valgrind's callgrind: unlike CPU
# time, the count repeats from run to run and does not depend on what else the machine does,
# so it shows a change to the server's own code that CPU percentages hide in their noise. It
# counts user space only (the kernel's send path is not in it).
#
#   bench/instructions.sh                    # long polling, ./target/release/herald
#   bench/instructions.sh ws /tmp/herald-old # another transport, another build
#   bench/instructions.sh publish            # API publishes (the publish scenario's flood)
#   LOAD=fanout bench/instructions.sh poll   # 600 subscribers on one channel, 1 message/s
#
# The server runs under callgrind twice, with the same small seed load (400 subscribers,
# 10 channels, 10 messages/s) for 10 s and for 20 s; the difference of the two counts over the
# difference of deliveries leaves out start-up and shutdown. With LOAD=fanout the load is
# instead 600 subscribers of one channel at 1 message/s: more than a round on the publisher's
# thread takes (256), so every round runs on the fan-out pool. With `publish`, the load is the
# publish scenario on 8 connections (single publishes, then broadcasts to 10 channels) for 5 s
# and 10 s, counted per message published (a broadcast publishes 10), and the single publish's
# own path (`publish::publish_json`, parse to reply) per publish from the longer profile. With HERALD_CALLGRIND_KEEP=<dir>
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
  if [ "$transport" = publish ]; then
    "$bin" bench --url "http://127.0.0.1:$port" --api-key bench --scenario publish --publish-connections 8 \
      --duration "$seconds" --out "$work/out" >/dev/null 2>&1
  else
    local load=(--scenario seed --subscribers 400 --channels 10 --rate 10)
    if [ "${LOAD:-seed}" = fanout ]; then load=(--scenario fanout --subscribers 600 --fanout-rate 1); fi
    "$bin" bench --url "http://127.0.0.1:$port" --api-key bench "${load[@]}" --transport "$transport" \
      --duration "$seconds" --out "$work/out" >/dev/null 2>&1
  fi
  kill -TERM "$server"
  wait "$server" || true
  local ir delivered
  if [ -n "${HERALD_CALLGRIND_KEEP:-}" ]; then
    mkdir -p "$HERALD_CALLGRIND_KEEP" && cp "$work/callgrind.${seconds}s.out" "$HERALD_CALLGRIND_KEEP/"
  fi
  ir=$(callgrind_annotate "$work/callgrind.${seconds}s.out" 2>/dev/null | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
  delivered=$(python3 -c '
import json, sys
f = json.load(open(sys.argv[1]))["rows"][0]["figures"]
seconds = float(sys.argv[2])
# A delivery, or with the publish scenario a published message (a broadcast publishes 10).
print(int(f["delivered"]) if "delivered" in f else
      round((f["publishes_per_sec"] + 10 * f.get("broadcasts_per_sec", 0)) * seconds))' "$work/out/bench.json" "$seconds")
  if [ "$transport" = publish ] && [ "$seconds" = 10 ]; then
    python3 -c '
import json, sys
f = json.load(open(sys.argv[1]))["rows"][0]["figures"]
print(round(f["publishes_per_sec"] * 10))' "$work/out/bench.json" > "$work/publishes"
    callgrind_annotate --inclusive=yes "$work/callgrind.${seconds}s.out" 2>/dev/null \
      | sed -n 's/^ *\([0-9,]*\) .*herald_server::publish::publish_json \[.*/\1/p' | head -1 | tr -d , > "$work/publish_json"
  fi
  echo "$ir $delivered"
}

if [ "$transport" = publish ]; then short=5 long=10; else short=10 long=20; fi
read -r ir_short n_short < <(measure $short)
read -r ir_long n_long < <(measure $long)
if [ "$transport" = publish ]; then
  python3 - "$ir_short" "$n_short" "$ir_long" "$n_long" "$(cat "$work/publish_json")" "$(cat "$work/publishes")" <<'PY'
import sys
a, na, b, nb, own, publishes = map(int, sys.argv[1:])
print(f"publish: {(b - a) / (nb - na):,.0f} server instructions per published message "
      f"({nb - na:,} messages between a 5 s and a 10 s run); "
      f"{own / publishes:,.0f} in publish_json per single publish (10 s run)")
PY
  exit 0
fi
python3 - "$transport" "$ir_short" "$n_short" "$ir_long" "$n_long" <<'PY'
import sys
transport, a, na, b, nb = sys.argv[1], *map(int, sys.argv[2:])
print(f"{transport}: {(b - a) / (nb - na):,.0f} server instructions per delivery "
      f"({nb - na:,} deliveries between a 10 s and a 20 s run)")
PY
