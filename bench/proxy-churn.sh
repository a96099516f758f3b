#!/usr/bin/env bash
# RSS of meshproxy under saturating load with connection churn: RUNS wrk
# runs of SECONDS each (50 new client connections per run), then one 30 s
# run sampled every 10 s. Shows whether memory settles or keeps growing
# when clients come and go at full load (bench/proxy-soak.sh holds a
# steady open-loop load on the same connections instead).
#
#   [MESH_BIN=DIR] bench/proxy-churn.sh [RUNS] [SECONDS]
#
# Everything started here is stopped by PID on exit.
set -euo pipefail
runs="${1:-16}"
secs="${2:-5}"
command -v wrk >/dev/null || { echo "bench/proxy-churn.sh: wrk not found (apt-get install wrk)" >&2; exit 2; }
. "$(dirname "$0")/proxy-common.sh"
start_upstreams 19800
start_meshproxy 19800
sleep 0.5
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%dT%H:%MZ)"
echo "idle RSS: $(rss_kb "$meshproxy_pid") kB"
for i in $(seq "$runs"); do
  wrk -t1 -c50 -d"${secs}s" -H 'Host: echo' http://127.0.0.1:19800/ >/dev/null
  echo "after run $i: RSS $(rss_kb "$meshproxy_pid") kB"
done
wrk -t1 -c50 -d30s -H 'Host: echo' http://127.0.0.1:19800/ >/dev/null &
load=$!
pids+=($load)
for t in 10 20 30; do
  sleep 10
  echo "long run, t=${t}s: RSS $(rss_kb "$meshproxy_pid") kB"
done
wait "$load" || true
echo "RSS after the load: $(rss_kb "$meshproxy_pid") kB"
