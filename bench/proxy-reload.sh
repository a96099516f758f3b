#!/usr/bin/env bash
# Memory across hot reloads under load: meshproxy's RSS while an open-loop
# client (dataplane/proxy/examples/openloop.rs) sends RATE requests/s over
# 16 keep-alive connections and the config is reloaded RELOADS times by
# SIGHUP (one every 20 ms), through the same setup as bench/proxy.sh.
#
#   [MESH_BIN=DIR] bench/proxy-reload.sh [RELOADS] [RATE]
#
# Prints the RSS every tenth of the reloads, the config generations the
# engine keeps, and the load's result. Everything started here is stopped
# by PID on exit.
set -euo pipefail
reloads="${1:-1000}"
rate="${2:-5000}"
. "$(dirname "$0")/proxy-common.sh"
start_upstreams 19600
start_meshproxy 19600 19690
mp=$meshproxy_pid
sleep 1
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%dT%H:%MZ)"
secs=$(( reloads / 50 + 4 ))
"$openloop" 127.0.0.1:19600 "$rate" "$secs" 16 >"$work/load.txt" &
load=$!
pids+=($load)
sleep 2
echo "reloads 0: RSS $(rss_kb $mp) kB"
step=$(( reloads / 10 ))
for i in $(seq "$reloads"); do
  kill -HUP "$mp"
  sleep 0.02
  if [ $(( i % step )) -eq 0 ]; then
    gens=$(curl -s 127.0.0.1:19690/stats | awk '/^meshproxy_config_generations/ {print $2}')
    echo "reloads $i: RSS $(rss_kb $mp) kB, generations kept $gens"
  fi
done
wait "$load" || true
echo "reloads applied: $(curl -s 127.0.0.1:19690/stats | awk '/^meshproxy_config_reloads_total\{result="ok"\}/ {print $2}') of $reloads signals (signals arriving during a reload coalesce)"
echo "load: $(cat "$work/load.txt")"
echo "RSS after the load: $(rss_kb $mp) kB"
