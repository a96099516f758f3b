# Shared by bench/proxy.sh and bench/proxy-soak.sh (sourced, not run):
# the binaries, a work directory, stopping by PID on exit, five meshecho
# upstreams and meshproxy in front of them with outlier detection on.
#
# Sets: root, bin, openloop, work, pids, ports, meshproxy_pid.

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# MESH_BIN=DIR: use the meshproxy and meshecho binaries in DIR (e.g. a
# copy of an earlier build, for before/after runs) instead of building.
if [ -n "${MESH_BIN:-}" ]; then
  bin="$MESH_BIN"
else
  (cd "$root" && cargo build --quiet --release -p mesh-proxy --bins --example openloop)
  bin="$root/target/release"
fi
# The open-loop load generator (dataplane/proxy/examples/openloop.rs).
openloop="$bin/openloop"
[ -x "$openloop" ] || openloop="$root/target/release/examples/openloop"
work="$(mktemp -d)"
pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop EXIT

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# start_upstreams BASE_PORT: meshecho on BASE_PORT+1 … BASE_PORT+5.
start_upstreams() {
  ports=()
  for i in 1 2 3 4 5; do ports+=($(($1 + i))); done
  for p in "${ports[@]}"; do
    "$bin/meshecho" --listen "127.0.0.1:$p" --name "e$p" >/dev/null 2>&1 &
    pids+=($!)
  done
}

# start_meshproxy LISTEN_PORT [ADMIN_PORT]: meshproxy over the upstreams,
# outlier detection on, no access log, WORKERS worker threads (1 by
# default; an admin listener if ADMIN_PORT).
start_meshproxy() {
  {
    echo '[[listener]]'
    echo "address = \"127.0.0.1:$1\""
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
  local admin=()
  if [ -n "${2:-}" ]; then admin=(--admin "127.0.0.1:$2"); fi
  "$bin/meshproxy" --config "$work/mesh.toml" --access-log off --concurrency "${WORKERS:-1}" "${admin[@]}" >/dev/null 2>"$work/meshproxy.err" &
  meshproxy_pid=$!
  pids+=($meshproxy_pid)
}
