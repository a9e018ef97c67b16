#!/usr/bin/env bash
# HTTPS through one Worker vs nginx, same ECDSA P-256 certificate, one worker process/thread
# each, both in front of the same upstream (an nginx `return 200`), measured with wrk:
# keep-alive requests, then a new connection (and TLS handshake) per request. Runs are
# interleaved, ROUNDS of each. CPU µs per request is user + system time of the proxy's
# processes (from /proc) over the requests wrk completed.
#
#   scripts/https-vs-nginx.sh [ROUNDS]      (needs nginx, wrk, openssl, python3; a release build)
set -euo pipefail
ROUNDS=${1:-3}
BIN=${SWITCHYARD:-target/release/switchyard}
[ -x "$BIN" ] || { echo "build first: cargo build --release -p switchyard-cli" >&2; exit 1; }
for t in nginx wrk openssl python3; do
  command -v "$t" >/dev/null || { echo "$t is needed (apt-get install nginx-light wrk openssl)" >&2; exit 1; }
done
BIN=$(realpath "$BIN")
DIR=$(mktemp -d)
trap 'nginx -c "$DIR/upstream.conf" -s quit 2>/dev/null || true; rm -rf "$DIR"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); TLS=$(free_port)
mkdir -p "$DIR/cfg" "$DIR/logs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$DIR/key.pem" \
  -out "$DIR/cert.pem" -days 2 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
cat > "$DIR/upstream.conf" <<EOF
worker_processes 1;
pid $DIR/logs/up.pid;
error_log $DIR/logs/up-error.log;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:$UP; keepalive_requests 1000000; location / { return 200 "ok\n"; } } }
EOF
cat > "$DIR/nginx.conf" <<EOF
worker_processes 1;
pid $DIR/logs/nginx.pid;
error_log $DIR/logs/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream up { server 127.0.0.1:$UP; keepalive 128; }
  server {
    listen 127.0.0.1:$TLS ssl;
    ssl_certificate $DIR/cert.pem;
    ssl_certificate_key $DIR/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    keepalive_requests 1000000;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF
python3 - "$DIR" "$UP" <<'EOF'
import sys
d, up = sys.argv[1], sys.argv[2]
ind = lambda t: ''.join('    ' + l + '\n' for l in t.splitlines())
cert, key = open(d + '/cert.pem').read(), open(d + '/key.pem').read()
open(d + '/cfg/cert.yaml', 'w').write("apiVersion: switchyard.dev/v1\nkind: Certificate\nmetadata: { name: local }\nspec:\n  certificate: |\n" + ind(cert) + "  privateKey: |\n" + ind(key))
open(d + '/cfg/proxy.yaml', 'w').write("apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: { name: up }\nspec:\n  routes:\n    - pathPrefix: /\n  upstream:\n    targets:\n      - url: http://127.0.0.1:" + up + "\n")
EOF
nginx -c "$DIR/upstream.conf" 2>/dev/null

cpu_ticks() { local sum=0; for p in "$@"; do set -- $(awk '{print $14, $15}' "/proc/$p/stat"); sum=$((sum + $1 + $2)); done; echo $sum; }

run() { # run worker|nginx keepalive|close
  local what=$1 mode=$2 pid
  if [ "$what" = worker ]; then
    "$BIN" worker --config "$DIR/cfg" --listen 127.0.0.1:0 --listen-tls "127.0.0.1:$TLS" \
      --admin-listen 127.0.0.1:0 --threads 1 --access-log off --no-watch > "$DIR/logs/worker.log" 2>&1 &
    pid=$!
  else
    nginx -c "$DIR/nginx.conf" 2>/dev/null; sleep 0.3; pid=$(cat "$DIR/logs/nginx.pid")
  fi
  for _ in $(seq 100); do curl -sk "https://localhost:$TLS/" >/dev/null && break; sleep 0.1; done
  local pids=("$pid" $(pgrep -P "$pid" || true))
  local before after out header=()
  [ "$mode" = close ] && header=(-H 'Connection: close')
  before=$(cpu_ticks "${pids[@]}")
  out=$(wrk -t1 -c64 -d6s --latency "${header[@]}" "https://localhost:$TLS/" 2>&1)
  after=$(cpu_ticks "${pids[@]}")
  if [ "$what" = worker ]; then kill "$pid"; wait "$pid" 2>/dev/null || true; else nginx -c "$DIR/nginx.conf" -s quit 2>/dev/null; sleep 0.5; fi
  local reqs rps p50 p99 errors
  reqs=$(awk '/requests in/ {print $1}' <<< "$out")
  rps=$(awk '/Requests\/sec/ {print $2}' <<< "$out")
  p50=$(awk '$1=="50%" {print $2}' <<< "$out"); p99=$(awk '$1=="99%" {print $2}' <<< "$out")
  errors=$(grep -E 'Non-2xx|Socket errors' <<< "$out" | tr '\n' ' ' || true)
  python3 -c "print(f'{\"$what\":8} {\"$mode\":10} {float(\"$rps\"):>10.0f} req/s  p50 {\"$p50\":>8}  p99 {\"$p99\":>8}  CPU {($after-$before)/$(getconf CLK_TCK)*1e6/$reqs:6.1f} µs/req  $errors')"
}

echo "HTTPS, wrk -t1 -c64 -d6s, $ROUNDS interleaved rounds; nginx $(nginx -v 2>&1 | sed 's/.*\///')"
for _ in $(seq "$ROUNDS"); do
  for what in worker nginx; do
    for mode in keepalive close; do run "$what" "$mode"; done
  done
done
