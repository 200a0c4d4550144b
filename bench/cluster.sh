#!/usr/bin/env bash
# Measures Herald as a cluster: three nodes sharing a redis-server (Debian's, started by the
# bench on a free loopback port), subscribers and publishers spread over the nodes — and, in
# the same run, one node with the default memory engine. Writes both tables into
# BENCHMARKS.md (between the cluster markers). Everything shares this machine's two cores:
# the figures show the cost of the Redis hop, not the capacity of three machines.
#
#   bench/cluster.sh                                  # the full run (about 16 minutes)
#   bench/cluster.sh --duration 5 --subscribers 1000  # a quick look
#
# Extra arguments go to `herald bench`.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v redis-server >/dev/null || apt-get install -y redis-server >/dev/null
cargo build --release --locked -p herald
out="${BENCH_OUT:-bench-results}"
for nodes in 1 3; do
  ./target/release/herald bench --scenario seed,fanout,publish,reconnect --transport all --nodes "$nodes" \
    --out "$out/cluster-$nodes" "$@" | tee "$out/cluster-$nodes.log"
done

python3 - "$out" "$*" <<'PY'
import pathlib, re, sys, subprocess
out, extra = pathlib.Path(sys.argv[1]), sys.argv[2]
commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
def tables(nodes):
    md = (out / f"cluster-{nodes}" / "bench.md").read_text()
    part = md.split("## By scenario", 1)[1].strip()
    return re.sub(r"^### (.*)$", r"*\1*", part, flags=re.M)
single, cluster = tables(1), tables(3)
command = f"bench/cluster.sh {extra}".strip()
block = (f"<!-- cluster:start -->\nCode: `{commit}`. Command: `{command}`.\n\n"
         f"**One node, memory engine**\n\n{single}\n\n"
         f"**Three nodes + Redis** (CPU and RSS summed over the three nodes and redis-server)\n\n{cluster}\n"
         "<!-- cluster:end -->")
doc = pathlib.Path("BENCHMARKS.md")
text = doc.read_text()
if "<!-- cluster:start -->" not in text:
    text += "\n<!-- cluster:start -->\n<!-- cluster:end -->\n"
text = re.sub(r"<!-- cluster:start -->.*<!-- cluster:end -->", lambda _: block, text, flags=re.S)
doc.write_text(text)
PY
echo "wrote the cluster tables into BENCHMARKS.md"
