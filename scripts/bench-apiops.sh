#!/usr/bin/env bash
# APIops at scale: N proxies (one set of files, kind: Environment variables) through a
# real Manager with the release binary: plan/apply/promote/dump/status timings.
#   scripts/bench-apiops.sh [N]          (default 500)
# With SWITCHYARD_DATABASE_URL set (e.g. under scripts/with-postgres.sh) the Manager's
# store is that database instead of SQLite in its data directory.
set -euo pipefail
N=${1:-500}
cd "$(dirname "$0")/.."
cargo build --release -q -p switchyard-cli
BIN=$PWD/target/release/switchyard
WORK=$(mktemp -d)
trap 'kill $MANAGER 2>/dev/null || true; rm -rf "$WORK"' EXIT

"$BIN" --log-format json manager --data "$WORK/data" --listen 127.0.0.1:0 --insecure-http \
  ${SWITCHYARD_DATABASE_URL:+--database "$SWITCHYARD_DATABASE_URL"} 2>"$WORK/manager.log" &
MANAGER=$!
for _ in $(seq 100); do
  grep -q '"manager listening"' "$WORK/manager.log" 2>/dev/null && break
  sleep 0.1
done
LISTEN=$(grep -o '"listen":"[^"]*"' "$WORK/manager.log" | head -1 | cut -d'"' -f4)
export SWITCHYARD_MANAGER="http://$LISTEN"
export SWITCHYARD_TOKEN=$(cat "$WORK/data/admin.token")
for env in dev stage; do "$BIN" env create $env >/dev/null; done

mkdir -p "$WORK/files"
cat >"$WORK/files/environments.yaml" <<YAML
apiVersion: switchyard.dev/v1
kind: Environment
metadata: { name: dev }
spec: { variables: { UPSTREAM: "http://10.0.0.1:8080", RELEASE: dev } }
---
apiVersion: switchyard.dev/v1
kind: Environment
metadata: { name: stage }
spec: { variables: { UPSTREAM: "http://10.0.0.2:8080", RELEASE: stage } }
YAML
for i in $(seq -w 1 "$N"); do
  cat >"$WORK/files/p$i.yaml" <<YAML
apiVersion: switchyard.dev/v1
kind: Proxy
metadata: { name: p$i, labels: { owner: bench } }
spec:
  routes: [{ pathPrefix: /p$i }]
  upstream: { targets: [{ url: "\${UPSTREAM}" }] }
  policies:
    - type: headers
      response: { set: { x-release: "\${RELEASE}" } }
YAML
done

t() { # label, command...
  local start end
  start=$(date +%s%N)
  "${@:2}" >/dev/null || { c=$?; [ $c -eq 2 ] || exit $c; }
  end=$(date +%s%N)
  printf '%-46s %8.1f ms\n' "$1" "$(echo "($end - $start) / 1000000" | bc -l)"
}
STORE=SQLite; [ -n "${SWITCHYARD_DATABASE_URL:-}" ] && STORE=PostgreSQL
echo "$N proxies + 2 Environment documents, release build, $(nproc) CPUs, store: $STORE"
t "plan (all creates)"                 "$BIN" plan --env dev "$WORK/files"
t "apply (all creates, one revision)"  "$BIN" apply --env dev "$WORK/files"
t "plan (no changes)"                  "$BIN" plan --env dev "$WORK/files"
t "apply again (idempotent)"           "$BIN" apply --env dev "$WORK/files"
sed -i 's/RELEASE: dev }/RELEASE: dev-2 }/' "$WORK/files/environments.yaml"
t "apply new variable (re-resolves all)" "$BIN" apply --env dev "$WORK/files/environments.yaml"
t "apply --prune (nothing to prune)"   "$BIN" apply --env dev --prune --selector owner=bench "$WORK/files"
"$BIN" apply --env stage "$WORK/files/environments.yaml" >/dev/null
t "promote dev -> stage (all proxies)" "$BIN" promote --from dev --to stage
t "dump --dir"                         "$BIN" dump --env dev --dir "$WORK/dump"
t "plan of the dump (no changes)"      "$BIN" plan --env dev "$WORK/dump"
t "status"                             "$BIN" status --env dev
t "audit --env dev --limit 1000"       "$BIN" audit --env dev --limit 1000
