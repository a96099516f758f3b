#!/usr/bin/env bash
# Load run: meshproxy vs nginx vs HAProxy as the same reverse proxy, in the
# same run, on loopback. Not part of CI (it takes a few minutes and needs
# wrk, nginx and haproxy: `apt-get install wrk nginx-light haproxy`).
#
#   [MESH_BIN=DIR] [WORKERS=N] [WRK_THREADS=T] bench/proxy.sh [SECONDS_PER_ROUND] [ROUNDS] [CONNECTIONS]
#
# Setup: 5 meshecho upstreams (small keep-alive responses); each proxy runs
# WORKERS workers, 1 by default (meshproxy: --concurrency N; nginx:
# worker_processes N; HAProxy: nbthread N), keeps connections to the
# upstreams alive, and balances over the 5. meshproxy also runs outlier detection (consecutive5xxErrors 5). wrk
# (1 thread, C connections) drives each proxy in turn, ROUNDS times, rounds
# interleaved; the script prints per round and the median: requests/s, the
# proxy's CPU time per request (user + system, from /proc), and its RSS;
# then the median latency of one closed-loop connection, direct and through
# each proxy, and open-loop latency at 1,000 requests/s; then the outlier
# scenario (one of five upstreams always 503).
# Everything started here is stopped by PID on exit.
set -euo pipefail
secs="${1:-10}"
rounds="${2:-3}"
conns="${3:-50}"
workers="${WORKERS:-1}"
wrk_threads="${WRK_THREADS:-1}"
for t in wrk nginx haproxy; do
  command -v "$t" >/dev/null || { echo "bench/proxy.sh: $t not found (apt-get install wrk nginx-light haproxy)" >&2; exit 2; }
done
. "$(dirname "$0")/proxy-common.sh"
start_upstreams 19100
start_meshproxy 19100

# nginx: WORKERS workers, keep-alive upstream pool.
mkdir -p "$work/nginx"
{
  echo "worker_processes $workers; daemon off; pid $work/nginx/nginx.pid; error_log $work/nginx/error.log warn;"
  echo "events { worker_connections 4096; }"
  echo "http { access_log off;"
  echo "  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx; uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;"
  echo "  upstream echo { keepalive 256;"
  for p in "${ports[@]}"; do echo "    server 127.0.0.1:$p;"; done
  echo "  }"
  echo "  server { listen 127.0.0.1:19200; location / { proxy_pass http://echo; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
  echo "}"
} >"$work/nginx/nginx.conf"
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
pids+=($!)

# HAProxy: WORKERS threads, connection reuse to the upstreams.
{
  echo "global"
  echo "  nbthread $workers"
  echo "  maxconn 4096"
  echo "defaults"
  echo "  mode http"
  echo "  timeout connect 5s"
  echo "  timeout client 30s"
  echo "  timeout server 30s"
  echo "  http-reuse always"
  echo "frontend fe"
  echo "  bind 127.0.0.1:19300"
  echo "  default_backend be"
  echo "backend be"
  echo "  balance roundrobin"
  for p in "${ports[@]}"; do echo "  server s$p 127.0.0.1:$p"; done
} >"$work/haproxy.cfg"
haproxy -f "$work/haproxy.cfg" -db >/dev/null 2>&1 &
haproxy_pid=$!
pids+=($haproxy_pid)
sleep 1

# The processes of a proxy (nginx: its workers; the others: one process,
# whose /proc figures cover all its threads).
pid_of() {
  case "$1" in
    meshproxy) echo "$meshproxy_pid" ;;
    nginx) pgrep -f "nginx: worker process" | xargs ;;
    haproxy) echo "$haproxy_pid" ;;
  esac
}
port_of() { case "$1" in meshproxy) echo 19100 ;; nginx) echo 19200 ;; haproxy) echo 19300 ;; esac; }
# CPU ticks (user + system) of processes, summed.
ticks() { local n=0 p; for p in "$@"; do n=$((n + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$n"; }
rss_sum() { local n=0 p; for p in "$@"; do n=$((n + $(rss_kb "$p"))); done; echo "$n"; }
hz=$(getconf CLK_TCK)

echo "workers per proxy: $workers; wrk threads: $wrk_threads"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%dT%H:%MZ)"
echo "meshproxy idle RSS: $(rss_kb "$meshproxy_pid") kB"
# Warm up every proxy (connections to upstreams, caches).
for t in meshproxy nginx haproxy; do
  wrk -t"$wrk_threads" -c"$conns" -d2s -H 'Host: echo' "http://127.0.0.1:$(port_of $t)/" >/dev/null
done

declare -A rps cpu ratio
for r in $(seq "$rounds"); do
  declare -A this_rps this_cpu
  for t in meshproxy nginx haproxy; do
    pid="$(pid_of $t)"
    # shellcheck disable=SC2086 # a list of PIDs
    before=$(ticks $pid)
    out="$(wrk -t"$wrk_threads" -c"$conns" -d"${secs}s" -H 'Host: echo' "http://127.0.0.1:$(port_of $t)/")"
    # shellcheck disable=SC2086
    after=$(ticks $pid)
    total=$(echo "$out" | awk '/requests in/ {print $1}')
    rate=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    errors=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    us=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$total" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
    rps[$t]+="$rate "
    cpu[$t]+="$us "
    this_rps[$t]=$rate
    this_cpu[$t]=$us
    # shellcheck disable=SC2086
    echo "round $r $t: $rate req/s, ${us} us CPU/request, RSS $(rss_sum $pid) kB${errors:+, non-2xx $errors}"
  done
  # Same-round ratios: the machine's drift between rounds cancels out.
  for t in nginx haproxy; do
    ratio[rps_$t]+="$(awk -v a="${this_rps[meshproxy]}" -v b="${this_rps[$t]}" 'BEGIN { printf "%.3f", a / b }') "
    ratio[cpu_$t]+="$(awk -v a="${this_cpu[meshproxy]}" -v b="${this_cpu[$t]}" 'BEGIN { printf "%.3f", a / b }') "
  done
done
# Added latency: one connection, closed loop (wrk has no open-loop mode;
# oha -q would give the open-loop figure), median latency direct to one
# upstream vs through each proxy (each proxy balancing over the 5).
echo
lat() { wrk -t1 -c1 -d"${secs}s" --latency -H 'Host: echo' "$1" | awk '$1 == "50%" {print $2}'; }
echo "median latency, 1 connection: direct $(lat http://127.0.0.1:19101/), meshproxy $(lat http://127.0.0.1:19100/), nginx $(lat http://127.0.0.1:19200/), haproxy $(lat http://127.0.0.1:19300/)"
# Open loop: 1,000 requests/s on 16 keep-alive connections, latency from
# each request's scheduled time (openloop.rs); added = proxy - direct.
if [ -x "$openloop" ]; then
  echo "open loop, 1000 req/s for ${secs}s (p50/p90/p99 us):"
  for target in direct:19101 meshproxy:19100 nginx:19200 haproxy:19300; do
    echo "  ${target%%:*}: $("$openloop" "127.0.0.1:${target#*:}" 1000 "$secs" 16)"
  done
else
  echo "open loop: $openloop not built (cargo build --release -p mesh-proxy --example openloop)"
fi
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
printf "%-10s %12s %16s\n" proxy "req/s (med)" "CPU us/req (med)"
for t in meshproxy nginx haproxy; do
  printf "%-10s %12s %16s\n" "$t" "$(echo "${rps[$t]}" | median)" "$(echo "${cpu[$t]}" | median)"
done
echo "meshproxy / nginx, median of same-round ratios: req/s $(echo "${ratio[rps_nginx]}" | median), CPU/request $(echo "${ratio[cpu_nginx]}" | median)"
echo "meshproxy / haproxy, median of same-round ratios: req/s $(echo "${ratio[rps_haproxy]}" | median), CPU/request $(echo "${ratio[cpu_haproxy]}" | median)"
echo "meshproxy RSS after load: $(rss_kb "$meshproxy_pid") kB"

# Outlier scenario: the same 5 upstreams but the last always answers 503
# (meshecho --status 503); consecutive5xxErrors 5, maxEjectionPercent 20
# (one host of five may be ejected), baseEjectionTime longer than the run.
# Reference semantics (Envoy, and the simulator): the bad host is ejected
# on its 5th consecutive 5xx, so it receives 5 attempts, plus those already
# sent to it when the 5th answer arrives (none with one connection).
"$bin/meshecho" --listen 127.0.0.1:19106 --name bad --status 503 >/dev/null 2>&1 &
pids+=($!)
sed -e 's/19105/19106/' -e 's/baseEjectionTime = "30s"/baseEjectionTime = "600s"/' "$work/mesh.toml" >"$work/outlier.toml"
echo
for c in 1 "$conns"; do
  sed -i "s/^address = .*/address = \"127.0.0.1:1911$((c > 1))\"/" "$work/outlier.toml"
  admin="127.0.0.1:1912$((c > 1))"
  "$bin/meshproxy" --config "$work/outlier.toml" --admin "$admin" --access-log off --concurrency "$workers" >/dev/null 2>>"$work/outlier.err" &
  pids+=($!)
  sleep 0.5
  out="$(wrk -t1 -c"$c" -d"${secs}s" -H 'Host: echo' "http://127.0.0.1:1911$((c > 1))/")"
  stats="$(curl -s "http://$admin/stats")"
  bad=$(echo "$stats" | awk '/^meshproxy_upstream_rq_total/ && /127.0.0.1:19106/ {n += $NF} END {print n + 0}')
  ej=$(echo "$stats" | awk '/^meshproxy_outlier_ejections_total/ {n += $NF} END {print n + 0}')
  total=$(echo "$out" | awk '/requests in/ {print $1}')
  errors=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  echo "outlier, $c connection(s): $total requests, bad upstream got $bad attempts, $ej ejection(s), ${errors:-0} non-2xx answers"
done
