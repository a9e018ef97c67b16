#!/usr/bin/env bash
# Memory per idle HTTP/2 stream through a release Worker: a client holds N streams open
# (h2c, 100 per connection) through the Worker to an h2c upstream (`protocol: http2`),
# each answered with its head and then left open. Loopback only; bounded in count and time.
#   cargo build --release -p switchyard-cli --bin switchyard -p switchyard-e2e --example h2_bench
#   scripts/h2-measure.sh [STREAMS]
set -euo pipefail
T=${CARGO_TARGET_DIR:-target}/release
BIN=$T/switchyard
HB=$T/examples/h2_bench
N=${1:-1000}
UP=127.0.0.1:19401 GW=127.0.0.1:19480 ADMIN=127.0.0.1:19491
D=$(mktemp -d)
cat > "$D/api.yaml" <<YAML
apiVersion: switchyard.dev/v1
kind: Proxy
metadata: { name: api }
spec:
  routes:
    - pathPrefix: /api
  upstream:
    protocol: http2
    targets:
      - url: http://$UP
YAML
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$D"; }
trap cleanup EXIT
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

"$HB" upstream "$UP" & pids+=($!)
"$BIN" worker --config "$D" --listen "$GW" --admin-listen "$ADMIN" --access-log off 2>/dev/null & W=$!; pids+=($W)
for _ in $(seq 100); do curl -sf "http://$ADMIN/readyz" >/dev/null && break; sleep 0.1; done
# Warm up: a few streams opened and closed, so one-time allocations are not counted.
timeout 5 "$HB" idle "http://$GW/api/hold" 10 1 >/dev/null
sleep 1
before=$(rss $W)
"$HB" idle "http://$GW/api/hold" "$N" 30 > "$D/idle.log" & I=$!; pids+=($I)
for _ in $(seq 300); do grep -q "streams open" "$D/idle.log" 2>/dev/null && break; sleep 0.1; done
cat "$D/idle.log"
sleep 1
after=$(rss $W)
echo "worker VmRSS: ${before} kB before, ${after} kB with $N idle HTTP/2 streams open: $(( (after - before) * 1024 / N )) bytes per stream (client and upstream side)"
