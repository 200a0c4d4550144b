#!/usr/bin/env bash
# How much Redis memory a channel's history takes with the Redis engine: one node, a
# redis-server on a free port, 1,000 channels × 100 messages of ~500 bytes of data
# (history_size=100), then Redis's used_memory before and after (docs/deployment.md, "Sizing").
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p herald
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
redis=$!
herald_out=$(mktemp)
trap 'kill $redis ${herald:-} 2>/dev/null; rm -f "$herald_out"' EXIT
sleep 0.5
./target/release/herald serve --listen 127.0.0.1:0 --insecure-no-api-key \
  --engine "redis://127.0.0.1:$port" --set history_size=100 >"$herald_out" 2>/dev/null &
herald=$!
until grep -q "listening on" "$herald_out"; do sleep 0.1; done
addr=$(sed -n 's/^herald listening on http:\/\///p' "$herald_out" | head -1)
used() { redis-cli -p "$port" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }
before=$(used)
python3 - "$addr" <<'PY'
import http.client, json, sys
host, port = sys.argv[1].split(":")
c = http.client.HTTPConnection(host, int(port))
payload = "x" * 480
for ch in range(1000):
    for i in range(100):
        c.request("POST", "/api/publish", json.dumps({"channel": f"size-{ch}", "data": {"p": payload, "i": i}}),
                  {"content-type": "application/json"})
        r = c.getresponse(); r.read()
        assert r.status == 200, r.status
PY
after=$(used)
echo "1000 channels x 100 messages of 498 bytes: $(( (after - before) / 1000 )) bytes per channel, $(( (after - before) / 100000 )) per message"
