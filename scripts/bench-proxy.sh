#!/usr/bin/env bash
# Throughput and latency of one Worker against a local sample upstream, with the same wrk
# run straight against the upstream beside it. Needs wrk (apt-get install wrk).
#   scripts/bench-proxy.sh [duration] [connections]
# Ports can be overridden: UPSTREAM_PORT, GATEWAY_PORT, ADMIN_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
conns=${2:-64}
up=${UPSTREAM_PORT:-28081}
gw=${GATEWAY_PORT:-28080}
admin=${ADMIN_PORT:-29901}
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
cargo build --release -q -p switchyard-cli
bin=target/release/switchyard
cfg=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$cfg"' EXIT
cat > "$cfg/bench.yaml" <<YAML
apiVersion: switchyard.dev/v1
kind: Proxy
metadata: { name: bench }
spec:
  routes: [{ pathPrefix: / }]
  upstream:
    targets: [{ url: "http://127.0.0.1:$up" }]
  policies:
    - type: headers
      response: { set: { x-release: blue } }
YAML
$bin upstream --listen 127.0.0.1:$up --id bench >/dev/null 2>&1 &
$bin worker --config "$cfg" --listen 127.0.0.1:$gw --admin-listen 127.0.0.1:$admin \
  --access-log "${ACCESS_LOG:-off}" >/dev/null 2>&1 &
for _ in $(seq 100); do curl -fs -o /dev/null http://127.0.0.1:$admin/readyz && break; sleep 0.05; done
curl -fs -o /dev/null http://127.0.0.1:$gw/ || { echo "gateway not answering" >&2; exit 1; }
echo "== straight to the upstream (wrk -t1 -c$conns -d$duration --latency)"
wrk -t1 -c"$conns" -d"$duration" --latency http://127.0.0.1:$up/ | grep -E "Requests/sec|Latency|  50%|  99%"
echo "== through the Worker (access log: ${ACCESS_LOG:-off})"
wrk -t1 -c"$conns" -d"$duration" --latency http://127.0.0.1:$gw/ | grep -E "Requests/sec|Latency|  50%|  99%"
echo "== worker status"
curl -fs http://127.0.0.1:$admin/metrics | grep -E '^switchyard_requests_total\{proxy="bench",method="GET",code="(200|5[0-9][0-9])"\}'
