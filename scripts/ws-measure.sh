#!/usr/bin/env bash
# Memory per idle WebSocket through a release Worker, and echo round trips/s through the
# Worker vs direct. Loopback only; bounded in count and time.
#   cargo build --release -p switchyard-cli --bin switchyard -p switchyard-e2e --example ws_bench
#   scripts/ws-measure.sh [IDLE_SOCKETS]
set -euo pipefail
T=${CARGO_TARGET_DIR:-target}/release
BIN=$T/switchyard
WB=$T/examples/ws_bench
N=${1:-1000}
UP=127.0.0.1:19301 GW=127.0.0.1:19380 ADMIN=127.0.0.1:19391
D=$(mktemp -d)
cat > "$D/chat.yaml" <<YAML
apiVersion: switchyard.dev/v1
kind: Proxy
metadata: { name: chat }
spec:
  routes:
    - pathPrefix: /ws
  upstream:
    targets:
      - url: http://$UP
YAML
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$D"; }
trap cleanup EXIT
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
metric() { curl -s "http://$ADMIN/metrics" | awk -v s="$1" '$1 == s {print $2}'; }

"$WB" echo "$UP" & pids+=($!)
"$BIN" worker --config "$D" --listen "$GW" --admin-listen "$ADMIN" --access-log off 2>/dev/null & W=$!; pids+=($W)
for _ in $(seq 100); do curl -sf "http://$ADMIN/readyz" >/dev/null && break; sleep 0.1; done
# Warm up: one WebSocket opened and closed, so one-time allocations are not counted.
"$WB" rate "ws://$GW/ws/warm" 1 1 64 >/dev/null
sleep 1
before=$(rss $W)
"$WB" idle "ws://$GW/ws/idle" "$N" 30 & I=$!; pids+=($I)
for _ in $(seq 300); do [ "$(metric switchyard_websockets_open)" = "$N" ] && break; sleep 0.1; done
sleep 1
after=$(rss $W)
echo "worker VmRSS: ${before} kB before, ${after} kB with $N idle WebSockets open: $(( (after - before) * 1024 / N )) bytes per WebSocket (client + upstream connection)"
kill $I; wait $I 2>/dev/null || true
for conns in 1 50; do
  echo "through the Worker: $("$WB" rate "ws://$GW/ws/rate" $conns 10 64)"
  echo "direct:             $("$WB" rate "ws://$UP/ws/rate" $conns 10 64)"
done
