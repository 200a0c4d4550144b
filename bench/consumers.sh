#!/usr/bin/env bash
# Messages per second from each consumer source into an SSE subscriber — a PostgreSQL outbox,
# a RabbitMQ queue, NATS JetStream — against direct API publishes (32 connections), with the
# durable store (data_dir, the default fsync durability). Starts the sources (Debian's
# postgresql, rabbitmq-server, nats-server; as root) and Herald on 127.0.0.1, runs
# crates/herald/examples/consumer_throughput.rs for each, and prints a Markdown table.
#   bench/consumers.sh [messages per source, default 20000]
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-20000}"
cargo build --release --quiet -p herald --bin herald --example consumer_throughput
herald=target/release/herald
throughput=target/release/examples/consumer_throughput
scratch="$PWD/target/bench-consumers"
rm -rf "$scratch" && mkdir -p "$scratch"/{pg,rabbit,nats,herald}
pids=()
cleanup() { for pid in "${pids[@]}"; do kill -9 -- "-$pid" 2>/dev/null || kill -9 "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 240); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.25; done; echo "port $1 never opened" >&2; exit 1; }

pg_port=$(port); amqp_port=$(port); nats_port=$(port); herald_port=$(port)
chown postgres "$scratch/pg"
runuser -u postgres -- /usr/lib/postgresql/15/bin/initdb -D "$scratch/pg/data" -A trust -U herald --no-sync >/dev/null
setsid runuser -u postgres -- /usr/lib/postgresql/15/bin/postgres -D "$scratch/pg/data" -p "$pg_port" -k "$scratch/pg" \
  -c listen_addresses=127.0.0.1 >"$scratch/pg/log" 2>&1 & pids+=($!)
echo "[]." > "$scratch/rabbit/enabled_plugins"
HOME="$scratch/rabbit" RABBITMQ_NODENAME="herald-bench-$amqp_port@localhost" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
  RABBITMQ_NODE_PORT="$amqp_port" RABBITMQ_DIST_PORT="$(port)" RABBITMQ_MNESIA_BASE="$scratch/rabbit/mnesia" \
  RABBITMQ_LOG_BASE="$scratch/rabbit/log" RABBITMQ_ENABLED_PLUGINS_FILE="$scratch/rabbit/enabled_plugins" \
  RABBITMQ_CONFIG_FILE="$scratch/rabbit/rabbitmq" ERL_CRASH_DUMP="$scratch/rabbit/erl_crash.dump" setsid /usr/lib/rabbitmq/bin/rabbitmq-server >"$scratch/rabbit/out" 2>&1 & pids+=($!)
setsid nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$scratch/nats" >"$scratch/nats/log" 2>&1 & pids+=($!)
wait_port "$pg_port"; wait_port "$amqp_port"; wait_port "$nats_port"
sleep 2

pg_url="postgres://herald@127.0.0.1:$pg_port/postgres"
amqp_url="amqp://guest:guest@127.0.0.1:$amqp_port/%2f"
nats_url="nats://127.0.0.1:$nats_port"
consumers="[{name=\"pg\",source=\"postgres\",url=\"$pg_url\"},{name=\"amqp\",source=\"amqp\",url=\"$amqp_url\"},{name=\"nats\",source=\"nats\",url=\"$nats_url\"}]"
HERALD_LOG=warn setsid "$herald" serve --listen "127.0.0.1:$herald_port" --api-key bench \
  --set "data_dir=\"$scratch/herald\"" --set "consumers=$consumers" --set history_size=100 >/dev/null & pids+=($!)
wait_port "$herald_port"
consuming() { curl -s "127.0.0.1:$herald_port/readyz" | grep -o '"state":"consuming"' | wc -l; }
for _ in $(seq 1 120); do
  if [ "$(consuming)" = 3 ]; then break; fi
  sleep 0.5
done
if [ "$(consuming)" != 3 ]; then echo "the consumers did not all connect: $(curl -s "127.0.0.1:$herald_port/readyz")" >&2; exit 1; fi

run() { "$throughput" --herald "http://127.0.0.1:$herald_port" --api-key bench --count "$count" "$@" \
  | sed -n 's/.*: \([0-9]*\) per second into the subscriber.*/\1/p'; }
api=$(run --source api --channel bench-api)
pg=$(run --source postgres --channel bench-pg --url "$pg_url")
amqp=$(run --source amqp --channel bench-amqp --url "$amqp_url")
nats=$(run --source nats --channel bench-nats --url "$nats_url")
echo "| path into the channel ($count messages, durable store) | messages per second into the subscriber |"
echo "|---|---:|"
echo "| \`POST /api/publish\`, 32 connections | $api |"
echo "| PostgreSQL outbox (prefetch 100) | $pg |"
echo "| RabbitMQ queue (prefetch 100) | $amqp |"
echo "| NATS JetStream (prefetch 100) | $nats |"
