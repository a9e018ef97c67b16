#!/usr/bin/env bash
# One fixed load through one Worker binary, for A/B timings of the request path with an
# outside timer (whole process: the Worker's start and stop are included):
#   scripts/request-path-run.sh BIN PORT [UPSTREAM]
# starts `BIN worker` on PORT (admin on PORT+1) with one proxy to UPSTREAM (default
# 127.0.0.1:28181: start one with `switchyard upstream --listen 127.0.0.1:28181`), waits
# until it is ready, sends 200 000 HTTP/1.1 requests over 32 keep-alive connections
# (h2load --h1), fails unless every one succeeded, and stops it. Needs h2load and curl.
set -euo pipefail
bin=$1
port=$2
upstream=${3:-127.0.0.1:28181}
cfg=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$cfg"' EXIT
cat > "$cfg/bench.yaml" <<YAML
apiVersion: switchyard.dev/v1
kind: Proxy
metadata: { name: bench }
spec:
  routes: [{ pathPrefix: / }]
  upstream:
    targets: [{ url: "http://$upstream" }]
  policies:
    - type: headers
      response: { set: { x-release: blue } }
YAML
"$bin" worker --config "$cfg" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$((port + 1))" \
  --access-log off >/dev/null 2>&1 &
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$((port + 1))/readyz" >/dev/null && break
  sleep 0.1
done
out=$(h2load --h1 -n 200000 -c 32 -t 1 "http://127.0.0.1:$port/x")
echo "$out" | grep -E "^requests:" >&2
echo "$out" | grep -q "200000 succeeded" || { echo "not every request succeeded" >&2; exit 1; }
