#!/usr/bin/env bash
# Runs every `herald bench` scenario against Herald and, in the same run, against nginx + Nchan
# (Debian's nginx-light and libnginx-mod-nchan, one process on 127.0.0.1 with its own prefix),
# then writes the results into BENCHMARKS.md and docs/bench.svg. Numbers are never edited by
# hand: rerun this script to refresh them.
#
#   bench/compare.sh                      # the full run (about 40 minutes on 2 cores)
#   bench/compare.sh --repeat 1 --duration 5 --subscribers 1000 --idle-connections 2000   # a quick look
#
# Seed and fanout, the scenarios of the latency and CPU lines, run three times per server with
# the servers in turn, and their figures are medians (`--repeat`): on a shared 2-core machine
# one run's fanout tail can land far from the next (Nchan's long-poll p99: 127 to 214 ms over
# three runs in BENCHMARKS.md, session 19).
# Extra arguments go to `herald bench` (after the script's own, so they win).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! [ -x /usr/sbin/nginx ] || ! [ -e /usr/lib/nginx/modules/ngx_nchan_module.so ]; then
  echo "installing nginx-light and libnginx-mod-nchan" >&2
  apt-get install -y nginx-light libnginx-mod-nchan >/dev/null
fi
# Debian's package starts a system nginx on port 80; it is not the one measured.
cargo build --release --locked -p herald
out="${BENCH_OUT:-bench-results}"
./target/release/herald bench \
  --scenario idle,seed,fanout,ramp,publish,reconnect,compression \
  --transport all --peer nchan --repeat 3 --out "$out" "$@" | tee "$out.log"

python3 - "$out" <<'PY'
import pathlib, re, sys, platform, subprocess
out = pathlib.Path(sys.argv[1])
md = (out / "bench.md").read_text()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
mem = next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal"))
machine = f"{cores} cores ({cpu}), {int(mem) // 1024 // 1024} GiB, Linux {platform.release()}"
commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
block = f"<!-- results:start -->\nMachine: {machine}. Code: `{commit}`.\n\n{md}\n<!-- results:end -->"
doc = pathlib.Path("BENCHMARKS.md")
text = doc.read_text()
text = re.sub(r"<!-- results:start -->.*<!-- results:end -->", lambda _: block, text, flags=re.S)
doc.write_text(text)
pathlib.Path("docs").mkdir(exist_ok=True)
(pathlib.Path("docs") / "bench.svg").write_text((out / "bench.svg").read_text())
print("updated BENCHMARKS.md and docs/bench.svg")
PY
