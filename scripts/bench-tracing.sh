#!/usr/bin/env bash
# Worker throughput with tracing off, 1% sampled and 100% sampled (#19), interleaved in one
# run: three release Workers in front of one sample upstream, exporting over OTLP/HTTP to a
# receiver that accepts and discards. Needs wrk and python3.
#   scripts/bench-tracing.sh [duration] [connections] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
conns=${2:-64}
rounds=${3:-3}
bin=${BIN:-${CARGO_TARGET_DIR:-target}/release/switchyard}
cfg=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$cfg"' EXIT
cat > "$cfg/bench.yaml" <<YAML
apiVersion: switchyard.dev/v1
kind: Proxy
metadata: { name: bench }
spec:
  routes: [{ pathPrefix: / }]
  upstream:
    targets: [{ url: "http://127.0.0.1:28181" }]
YAML
python3 - <<'PY' &
import http.server
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", 24318), H).serve_forever()
PY
$bin upstream --listen 127.0.0.1:28181 --id bench >/dev/null 2>&1 &
$bin worker --config "$cfg" --listen 127.0.0.1:28180 --admin-listen 127.0.0.1:29180 >/dev/null 2>&1 &
$bin worker --config "$cfg" --listen 127.0.0.1:28190 --admin-listen 127.0.0.1:29190 \
  --otlp-endpoint http://127.0.0.1:24318 --trace-sample-ratio 0.01 >/dev/null 2>&1 &
$bin worker --config "$cfg" --listen 127.0.0.1:28200 --admin-listen 127.0.0.1:29200 \
  --otlp-endpoint http://127.0.0.1:24318 --trace-sample-ratio 1 >/dev/null 2>&1 &
for a in 29180 29190 29200; do
  for _ in $(seq 100); do curl -fs -o /dev/null http://127.0.0.1:$a/readyz && break; sleep 0.05; done
done
for p in 28180 28190 28200; do curl -fs -o /dev/null http://127.0.0.1:$p/ || { echo "gateway $p not answering" >&2; exit 1; }; done
for r in $(seq "$rounds"); do
  for w in "off 28180" "1% 28190" "100% 28200"; do
    set -- $w
    echo "== round $r, tracing $1 (wrk -t1 -c$conns -d$duration --latency)"
    wrk -t1 -c"$conns" -d"$duration" --latency http://127.0.0.1:$2/ | grep -E "Requests/sec|Latency|  50%|  99%"
  done
done
echo "== spans dropped (1%, 100%)"
for a in 29190 29200; do curl -fs http://127.0.0.1:$a/metrics | grep -E '^switchyard_trace_spans_dropped_total' || true; done
