#!/usr/bin/env bash
# meshproxy quick start: starts three meshecho pods and meshproxy with
# examples/mesh.toml, sends a few requests with curl, lets one pod go bad
# and shows it ejected in /clusters, then stops everything it started (by
# PID) and exits 0.
#
#   dataplane/proxy/examples/quickstart.sh
#
# MESH_BIN: directory holding meshproxy and meshecho (default: builds them
# with cargo into target/release).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
if [[ -z "${MESH_BIN:-}" ]]; then
  (cd "$root" && cargo build --quiet --release -p mesh-proxy)
  MESH_BIN="$root/target/release"
fi

pids=()
stop() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}
trap stop EXIT

logs="$(mktemp -d)"
"$MESH_BIN/meshecho" --listen 127.0.0.1:18081 --name echo-v1-a >"$logs/v1-a.log" 2>&1 &
pids+=($!)
# This pod answers 503 to everything from 2 s after its start on.
"$MESH_BIN/meshecho" --listen 127.0.0.1:18082 --name echo-v1-b --status 503 --after 2s >"$logs/v1-b.log" 2>&1 &
pids+=($!)
"$MESH_BIN/meshecho" --listen 127.0.0.1:18083 --name echo-v2 >"$logs/v2.log" 2>&1 &
pids+=($!)
"$MESH_BIN/meshproxy" --config "$here/mesh.toml" --admin 127.0.0.1:18090 >"$logs/proxy.log" 2>&1 &
pids+=($!)

# Wait until the proxy is ready (at most 10 s).
for _ in $(seq 100); do
  if curl -fsS http://127.0.0.1:18090/ready >/dev/null 2>&1; then break; fi
  sleep 0.1
done
curl -fsS http://127.0.0.1:18090/ready

ask() { # ask [curl args...]: one request through the proxy; prints status and pod
  curl -s -o /dev/null -w '%{http_code} %header{x-meshecho-name}\n' -H 'Host: echo' "$@" http://127.0.0.1:18080/hello
}

echo "== 10 requests, split 90/10 between v1 and v2"
for _ in $(seq 10); do ask; done
echo "== 3 requests with x-canary: always (v2 only)"
for _ in $(seq 3); do ask -H 'x-canary: always'; done

echo "== echo-v1-b turns bad; 12 more requests"
sleep 2.5
for _ in $(seq 12); do ask; done

echo "== /clusters (echo-v1-b, 127.0.0.1:18082, is ejected from the v1 subset)"
curl -fsS http://127.0.0.1:18090/clusters | grep -E '18082::(health_flags|rq_total|ejection_remaining_ms)'
curl -fsS http://127.0.0.1:18090/clusters | grep -q 'v1|echo.default.svc.cluster.local::127.0.0.1:18082::health_flags::/failed_outlier_check'

echo "== access log (last 5 lines)"
tail -n 5 "$logs/proxy.log"
echo "quickstart: ok"
