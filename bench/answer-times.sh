#!/usr/bin/env bash
# When a fanout round's long-poll answers leave the server, Herald's and Nchan's, in one run.
#
# `herald bench` times a delivery when the bench reads it, so its fanout tail holds both the
# server's order of work and the bench's own lag. This script takes the server's side alone:
# it runs `herald bench --scenario fanout --transport poll --peer nchan` and, in the middle
# of each server's measured window, records that server's send and receive system calls
# with `perf` (kernel tracepoints: no change to either server). A round is a burst of sends
# (10,000 answers, one per subscriber); the script prints, per server, the median over the
# recorded rounds of when the round's answers left (p50, p99, last; from the round's first
# answer) and how many of the clients' next polls the server read before its last answer.
#
#   bench/answer-times.sh                     # ./target/release/herald, 4 s recorded each
#   bench/answer-times.sh /tmp/herald-old     # another build
#
# SECONDS_RECORDED=N records N s of each server (4); KEEP=1 keeps the recordings (the folder
# is named on stderr). Needs perf (Debian linux-perf) and root, or kernel.perf_event_paranoid
# at 1 or less.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-}"
if [ -z "$bin" ]; then
  cargo build --release --locked -p herald
  bin=./target/release/herald
fi
command -v perf >/dev/null || { echo "needs perf (Debian package linux-perf)" >&2; exit 1; }
ulimit -n 20000
work=$(mktemp -d)
[ -n "${KEEP:-}" ] && echo "kept in $work" >&2
trap 'kill ${bench:-} 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
# Seconds from a server's start to the middle of its measured window (10,000 connections
# first), and seconds recorded: 5 rounds a second.
settle=15
recorded="${SECONDS_RECORDED:-4}"
# Both servers answer with sendto (Herald) or writev (Nchan) and read with recvfrom; plain
# read and write are left out: they are also the runtimes' own wake-ups (eventfd).
events=syscalls:sys_enter_sendto,syscalls:sys_enter_writev,syscalls:sys_enter_recvfrom

# Records the system calls of process $2 into $work/$1.txt.
record() {
  local name=$1 pid=$2
  sleep "$settle"
  perf record -q -e "$events" -p "$pid" -o "$work/$name.data" -- sleep "$recorded" >/dev/null 2>&1
  perf script -i "$work/$name.data" -F time,event >"$work/$name.txt" 2>/dev/null
}

# Waits until a process whose command line matches $1 runs, and prints its pid.
await_process() {
  local pid
  for _ in $(seq 600); do
    pid=$(pgrep -f -- "$1" | head -1 || true)
    if [ -n "$pid" ]; then echo "$pid"; return; fi
    sleep 0.2
  done
  echo "no process matching '$1' appeared" >&2
  exit 1
}

# The two servers as `herald bench` starts them (crates/herald-bench/src/target.rs): Herald
# on a port of its own choosing, then nginx with the prefix `LocalServer::nchan` gives it.
"$bin" bench --scenario fanout --transport poll --peer nchan --out "$work/out" >"$work/bench.log" 2>&1 &
bench=$!
record herald "$(await_process ' serve --listen 127.0.0.1:0 ')"
record nchan "$(await_process 'nginx -p .*herald-bench-nchan')"
wait "$bench"

python3 - "$work" herald nchan <<'PY'
import json, statistics, sys, pathlib
work = pathlib.Path(sys.argv[1])
bench = json.loads((work / "out" / "bench.json").read_text())
reported = [r["figures"] for r in bench["rows"]]
print(f"{'server':8} {'rounds':>6} {'answers':>8} {'p50 ms':>7} {'p99 ms':>7} {'last ms':>8} "
      f"{'polls read before the last answer':>34} | bench p50 / p99 ms")
for name, figures in zip(sys.argv[2:], reported):
    events = []
    for line in (work / f"{name}.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        send = "recvfrom" not in parts[1]
        events.append((float(parts[0].rstrip(":")), send))
    # A round: sends with no gap over 15 ms (rounds are 200 ms apart), with the reads among them.
    rounds, current, last_send = [], [], None
    for t, send in events:
        if send and last_send is not None and t - last_send > 0.015:
            rounds.append(current)
            current = []
        if send:
            last_send = t
        current.append((t, send))
    rounds.append(current)
    rows, cut = [], 0
    # The first and last rounds are cut by the recording; a round of more sends than the
    # subscribers ran into the next one and has no single start.
    for r in rounds[1:-1]:
        sends = sorted(t for t, s in r if s)
        reads = [t for t, s in r if not s]
        if not 9000 <= len(sends) <= 11000:
            cut += 1
            continue
        start = sends[0]
        at = lambda q: (sends[min(len(sends) - 1, int(q * len(sends)))] - start) * 1000
        before = sum(1 for t in reads if t <= sends[-1])
        rows.append((len(sends), at(0.5), at(0.99), (sends[-1] - start) * 1000, before / len(sends)))
    if not rows:
        print(f"{name:8} no round recorded whole: each ran into the next (a busy machine?)")
        continue
    med = lambda i: statistics.median(row[i] for row in rows)
    print(f"{name:8} {len(rows):>6} {med(0):>8.0f} {med(1):>7.1f} {med(2):>7.1f} {med(3):>8.1f} "
          f"{med(4) * 100:>33.0f}% | {figures['latency_p50_ms']:.1f} / {figures['latency_p99_ms']:.1f}"
          + (f" ({cut} left out: rounds that ran into the next)" if cut else ""))
PY
