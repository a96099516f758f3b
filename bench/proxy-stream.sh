#!/usr/bin/env bash
# Streaming run: meshproxy vs nginx, both streaming (nginx:
# proxy_request_buffering off, proxy_buffering off), on loopback. Not part
# of CI (it moves a few GB and needs nginx and curl).
#
#   [MESH_BIN=DIR] [WORKERS=N] bench/proxy-stream.sh [CLIENTS] [MB] [ROUNDS]
#
# CLIENTS curl processes at once (10 by default) each upload MB megabytes
# (100) and download as many in the same request (meshecho's `size=`
# answers after it has read the upload). Per proxy and round: the wall
# time of the whole batch, the transfer rate (both directions, all
# clients), and the proxy's peak RSS (VmHWM; nginx: its workers summed);
# rounds interleaved, medians at the end. Every curl must get 200 and the
# whole body, or the run fails.
set -euo pipefail
clients="${1:-10}"
mb="${2:-100}"
rounds="${3:-3}"
workers="${WORKERS:-2}"
for t in nginx curl; do
  command -v "$t" >/dev/null || { echo "bench/proxy-stream.sh: $t not found (apt-get install nginx-light curl)" >&2; exit 2; }
done
. "$(dirname "$0")/proxy-common.sh"
bytes=$((mb * 1000 * 1000))
head -c "$bytes" /dev/urandom >"$work/upload"
"$bin/meshecho" --listen 127.0.0.1:19401 --name up >/dev/null 2>&1 &
pids+=($!)

start_meshproxy_here() {
  printf '[[listener]]\naddress = "127.0.0.1:19400"\n[[service]]\nname = "echo"\nport = 80\nendpoints = [{ address = "127.0.0.1:19401" }]\n' >"$work/stream.toml"
  "$bin/meshproxy" --config "$work/stream.toml" --access-log off --concurrency "$workers" >/dev/null 2>"$work/meshproxy.err" &
  mp_pid=$!
  pids+=($mp_pid)
}

start_nginx_here() {
  mkdir -p "$work/nginx"
  cat >"$work/nginx/nginx.conf" <<EOF
worker_processes $workers; daemon off; pid $work/nginx/nginx.pid; error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http { access_log off;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx; uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  client_max_body_size 0;
  upstream echo { server 127.0.0.1:19401; keepalive 64; }
  server { listen 127.0.0.1:19410;
    location / { proxy_pass http://echo; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_request_buffering off; proxy_buffering off; } }
}
EOF
  nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
  pids+=($!)
}

# A fresh proxy per round, so that each peak RSS is that round's.
batch() { # PORT: runs the clients at once; prints the wall seconds
  local port=$1 start end i curls=()
  start=$(date +%s.%N)
  for i in $(seq "$clients"); do
    curl -s -o /dev/null -w '%{http_code} %{size_download} %{size_upload}\n' -H 'Host: echo' \
      --data-binary @"$work/upload" "http://127.0.0.1:$port/?size=$bytes" >"$work/curl.$i" &
    curls+=($!)
  done
  wait "${curls[@]}"
  end=$(date +%s.%N)
  for i in $(seq "$clients"); do
    read -r code down up <"$work/curl.$i"
    if [ "$code" != 200 ] || [ "$down" != "$bytes" ] || [ "$up" != "$bytes" ]; then
      echo "bench/proxy-stream.sh: client $i on port $port got $code, $down down, $up up" >&2
      exit 1
    fi
  done
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }'
}
hwm() { local n=0 p; for p in "$@"; do n=$((n + $(awk '/VmHWM/ {print $2}' "/proc/$p/status"))); done; echo "$n"; }
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

echo "workers per proxy: $workers; $clients clients, each ${mb} MB up and ${mb} MB down"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%dT%H:%MZ)"
declare -A rate peak
total_mb=$((2 * clients * mb))
for r in $(seq "$rounds"); do
  start_meshproxy_here
  sleep 0.5
  secs=$(batch 19400)
  kb=$(hwm "$mp_pid")
  stop_pid "$mp_pid"
  mbs=$(awk -v m="$total_mb" -v s="$secs" 'BEGIN { printf "%.0f", m / s }')
  rate[meshproxy]+="$mbs "; peak[meshproxy]+="$kb "
  echo "round $r meshproxy: ${secs} s, ${mbs} MB/s, peak RSS ${kb} kB"

  start_nginx_here
  sleep 0.5
  secs=$(batch 19410)
  # shellcheck disable=SC2046 # the worker PIDs
  kb=$(hwm $(pgrep -f "nginx: worker process" | xargs))
  stop_pid "$(cat "$work/nginx/nginx.pid")"
  sleep 0.3
  mbs=$(awk -v m="$total_mb" -v s="$secs" 'BEGIN { printf "%.0f", m / s }')
  rate[nginx]+="$mbs "; peak[nginx]+="$kb "
  echo "round $r nginx: ${secs} s, ${mbs} MB/s, peak RSS ${kb} kB (workers)"
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
printf "%-10s %14s %18s\n" proxy "MB/s (med)" "peak RSS kB (med)"
for t in meshproxy nginx; do
  printf "%-10s %14s %18s\n" "$t" "$(echo "${rate[$t]}" | median)" "$(echo "${peak[$t]}" | median)"
done
