#!/usr/bin/env bash
# Memory under a long steady load: meshproxy's RSS idle, then sampled while
# an open-loop client (dataplane/proxy/examples/openloop.rs) sends RATE
# requests/s for SECONDS over 16 keep-alive connections, through the same
# setup as bench/proxy.sh (5 meshecho upstreams, outlier detection on).
#
#   [MESH_BIN=DIR] bench/proxy-soak.sh [SECONDS] [RATE]
#
# Prints the idle RSS, one sample per tenth of the run, and the load's
# result (requests, errors, rate, latency percentiles). Everything started
# here is stopped by PID on exit.
set -euo pipefail
secs="${1:-600}"
rate="${2:-5000}"
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ -n "${MESH_BIN:-}" ]; then
  bin="$MESH_BIN"
else
  (cd "$root" && cargo build --quiet --release -p mesh-proxy --bins --example openloop)
  bin="$root/target/release"
fi
openloop="$bin/openloop"
[ -x "$openloop" ] || openloop="$root/target/release/examples/openloop"
work="$(mktemp -d)"
pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop EXIT

ports=(19501 19502 19503 19504 19505)
for p in "${ports[@]}"; do
  "$bin/meshecho" --listen "127.0.0.1:$p" --name "e$p" >/dev/null 2>&1 &
  pids+=($!)
done
{
  echo '[[listener]]'
  echo 'address = "127.0.0.1:19500"'
  echo '[[service]]'
  echo 'name = "echo"'
  echo 'port = 80'
  echo 'endpoints = ['
  for p in "${ports[@]}"; do echo "  { address = \"127.0.0.1:$p\" },"; done
  echo ']'
  echo '[[destinationRule]]'
  echo 'name = "echo"'
  echo 'host = "echo"'
  echo 'trafficPolicy = { outlierDetection = { consecutive5xxErrors = 5, interval = "10s", baseEjectionTime = "30s", maxEjectionPercent = 20 } }'
} >"$work/mesh.toml"
"$bin/meshproxy" --config "$work/mesh.toml" --access-log off >/dev/null 2>"$work/meshproxy.err" &
mp=$!
pids+=($mp)
sleep 1
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%dT%H:%MZ)"
echo "idle RSS: $(rss_kb $mp) kB"
"$openloop" 127.0.0.1:19500 "$rate" "$secs" 16 >"$work/load.txt" &
load=$!
pids+=($load)
step=$(awk -v s="$secs" 'BEGIN { printf "%.3f", s / 10 }')
for i in $(seq 10); do
  sleep "$step"
  echo "t=$(awk -v s="$step" -v i="$i" 'BEGIN { printf "%.0f", s * i }')s RSS $(rss_kb $mp) kB"
done
wait "$load" || true
echo "load: $(cat "$work/load.txt")"
echo "RSS after the load: $(rss_kb $mp) kB"
