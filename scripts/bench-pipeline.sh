#!/usr/bin/env bash
# Per-request overhead of a realistic policy pipeline through a real Worker, with wrk:
# the same POST (a ~2 KB OpenAI-style chat body, an API key) through a proxy without
# policies and through one with api-key + rate-limit + headers + prompt-firewall, in
# interleaved rounds. Needs wrk (apt-get install wrk).
#   scripts/bench-pipeline.sh [duration] [connections] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
conns=${2:-64}
rounds=${3:-3}
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
cargo build --release -q -p switchyard-cli
bin=target/release/switchyard
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up=$(free_port); gw=$(free_port); admin=$(free_port)
mkdir "$work/cfg"
cat > "$work/cfg/bench.yaml" <<YAML
apiVersion: switchyard.dev/v1
kind: Credential
metadata: { name: clients }
spec:
  type: api-keys
  keys: [{ consumer: acme, key: "acme-live-key-0001" }]
---
apiVersion: switchyard.dev/v1
kind: Proxy
metadata: { name: plain }
spec:
  routes: [{ pathPrefix: /plain }]
  upstream: { targets: [{ url: "http://127.0.0.1:$up" }] }
---
apiVersion: switchyard.dev/v1
kind: Proxy
metadata: { name: chat }
spec:
  routes: [{ pathPrefix: /v1/chat }]
  upstream: { targets: [{ url: "http://127.0.0.1:$up" }] }
  policies:
    - type: api-key
      credentials: [clients]
    - type: rate-limit
      key: consumer
      limit: 1000000000
      per: 1s
    - type: headers
      request: { set: { x-gateway: switchyard } }
      response: { set: { x-release: blue } }
    - type: prompt-firewall
      rules:
        - { name: ignore-previous, pattern: "ignore (all )?previous instructions", regex: true, caseInsensitive: true }
        - { name: no-secrets, pattern: "BEGIN PRIVATE KEY" }
        - { name: no-dan, pattern: "dan mode", caseInsensitive: true }
YAML
body=$(python3 -c 'import json; print(json.dumps({"model":"gpt-4o","messages":[{"role":"system","content":"You are a helpful assistant for finance teams."},{"role":"user","content":"Summarise the quarterly figures for the board and keep it short. "*30}],"temperature":0.2}))')
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["x-api-key"] = "acme-live-key-0001"
wrk.body = [==[$body]==]
LUA
$bin upstream --listen 127.0.0.1:$up --id bench >/dev/null 2>&1 &
$bin worker --config "$work/cfg" --listen 127.0.0.1:$gw --admin-listen 127.0.0.1:$admin \
  --access-log off --no-watch >/dev/null 2>&1 &
for _ in $(seq 100); do curl -fs -o /dev/null http://127.0.0.1:$admin/readyz && break; sleep 0.05; done
echo "body: ${#body} bytes; wrk -t1 -c$conns -d$duration, $rounds interleaved rounds"
for path in /plain/c /v1/chat/completions; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'x-api-key: acme-live-key-0001' \
    -H 'content-type: application/json' --data "$body" "http://127.0.0.1:$gw$path")
  [ "$code" = 200 ] || { echo "$path answered $code" >&2; exit 1; }
  wrk -t1 -c"$conns" -d2s -s "$work/post.lua" "http://127.0.0.1:$gw$path" >/dev/null
done
for r in $(seq "$rounds"); do
  for path in /plain/c /v1/chat/completions; do
    out=$(wrk -t1 -c"$conns" -d"$duration" --latency -s "$work/post.lua" "http://127.0.0.1:$gw$path")
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1=="50%" {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $4}')
    echo "round $r  $path  req/s $rps  p50 $p50  p99 $p99  non-2xx ${non2xx:-0}"
  done
done
curl -fs http://127.0.0.1:$admin/metrics | grep -E '^switchyard_requests_total\{proxy="(plain|chat)"' || true
