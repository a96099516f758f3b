#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from the inputs the tests use: HTTP/1.1
# messages of the codec tests, the shipped mesh configs and Istio manifests,
# and a run directory written by meshsim. Run from anywhere; idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
c="$here/corpus"
mkdir -p "$c"/{http1_request,http1_response,chunked,mesh_config,rundir}

put() { printf '%b' "$2" > "$1"; }

# Requests (tests in dataplane/proxy/src/downstream.rs and tests/proxy.rs).
r="$c/http1_request"
put "$r/get" 'GET / HTTP/1.1\r\nHost: echo\r\n\r\n'
put "$r/post-length" 'POST /body HTTP/1.1\r\nHost: echo\r\nContent-Length: 7\r\nConnection: close\r\n\r\npayload'
put "$r/post-chunked" 'POST /c HTTP/1.1\r\nHost: echo\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n5;e=1\r\nhello\r\n0\r\nX-T: t\r\n\r\n'
put "$r/http10" 'GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n'
put "$r/pipelined" 'GET /a HTTP/1.1\r\nHost: echo\r\n\r\nGET /b HTTP/1.1\r\nHost: echo\r\nConnection: close\r\n\r\n'
put "$r/smuggle" 'POST / HTTP/1.1\r\nHost: echo\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'
put "$r/connection-options" 'GET / HTTP/1.1\r\nHost: echo\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\n\r\n'

# Responses: the first byte is the read size - 1 (bit 7: a HEAD request).
r="$c/http1_response"
put "$r/length" '\x03HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Name: e1\r\n\r\nhello'
put "$r/chunked" '\x07HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n'
put "$r/http10" '\x00HTTP/1.0 200 OK\r\n\r\nold'
put "$r/continue" '\x0aHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n'
put "$r/head" '\x85HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n'
put "$r/listed" '\x10HTTP/1.1 200 OK\r\nX-Up-Hop: 1\r\nConnection: x-up-hop\r\nX-Kept: 2\r\nContent-Length: 2\r\n\r\nok'
put "$r/garbage" '\x01HTTP/1.1 2x0 what\r\n\r\n'

# Chunked bodies: the first byte is the read size - 1.
r="$c/chunked"
put "$r/two" '\x02\x35;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n'
put "$r/empty" '\x000\r\n\r\n'
put "$r/hex" '\x05\x41\r\n0123456789\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n'

# Mesh configs: 0 then TOML, 1 then Istio YAML.
r="$c/mesh_config"
for f in "$root"/topologies/*.toml "$root"/dataplane/proxy/examples/mesh.toml \
         "$root"/dataplane/proxy/deploy/container/mesh.toml; do
  { printf '\x00'; cat "$f"; } > "$r/toml-$(basename "$(dirname "$f")")-$(basename "$f")"
done
find "$root/experiments/istio" "$root/tests/data" -name '*.yaml' | while read -r f; do
  { printf '\x01'; cat "$f"; } > "$r/yaml-$(echo "${f#"$root"/}" | tr / -)"
done

# A run directory, its four CSV files joined by 0xff bytes.
if [ -x "$root/target/release/meshsim" ] || [ -x "$root/target/debug/meshsim" ]; then
  bin="$root/target/release/meshsim"
  [ -x "$bin" ] || bin="$root/target/debug/meshsim"
  out="$(mktemp -d)"
  "$bin" run "$root/experiments/one-bad-pod.toml" --set duration=5s --out "$out/run" >/dev/null
  { cat "$out/run/summary.csv"; printf '\xff'; head -c 20000 "$out/run/timeseries.csv"; printf '\xff';
    head -c 5000 "$out/run/calls.csv"; printf '\xff'; head -c 5000 "$out/run/events.csv"; } > "$c/rundir/one-bad-pod"
  rm -rf "$out"
fi
echo "fuzz corpus seeded in $c"
