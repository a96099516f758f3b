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
. "$(dirname "$0")/proxy-common.sh"
start_upstreams 19500
start_meshproxy 19500
mp=$meshproxy_pid
sleep 1
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
