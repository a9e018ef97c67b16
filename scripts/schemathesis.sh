#!/usr/bin/env bash
# The admin API against its own OpenAPI document: a real Manager (debug build, port 0, a
# temporary data dir, its admin token) and schemathesis with its default checks (all of
# them) and phases, a bounded number of examples per operation, generated deterministically, so a run
# is reproducible and takes a couple of minutes on 2 cores. Any failure fails the script.
#   scripts/schemathesis.sh [max-examples]       (default 25; SCHEMATHESIS_MAX_EXAMPLES too)
# schemathesis is installed (once, pinned) into a venv under target/, which git ignores.
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_EXAMPLES=${1:-${SCHEMATHESIS_MAX_EXAMPLES:-25}}
VERSION=4.32.5
VENV=$PWD/target/schemathesis-venv
PYTHON=$(command -v python3.11 || command -v python3)

if ! "$VENV/bin/st" --version 2>/dev/null | grep -q "$VERSION"; then
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$VERSION"
fi

cargo build -q --locked -p switchyard-cli
BIN=$PWD/target/debug/switchyard
WORK=$(mktemp -d)
MANAGER=
cleanup() {
  if [ -n "$MANAGER" ]; then kill "$MANAGER" 2>/dev/null || true; wait "$MANAGER" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" --log-format json manager --data "$WORK/data" --listen 127.0.0.1:0 2>"$WORK/manager.log" &
MANAGER=$!
for _ in $(seq 200); do
  grep -q '"manager listening"' "$WORK/manager.log" 2>/dev/null && break
  kill -0 "$MANAGER" 2>/dev/null || { cat "$WORK/manager.log" >&2; exit 1; }
  sleep 0.1
done
LISTEN=$(grep -o '"listen":"[^"]*"' "$WORK/manager.log" | head -1 | cut -d'"' -f4)
[ -n "$LISTEN" ] || { echo "the Manager did not start:" >&2; cat "$WORK/manager.log" >&2; exit 1; }

# The token reaches schemathesis through its config (scripts/schemathesis.toml), not the
# command line.
export SCHEMATHESIS_TOKEN
SCHEMATHESIS_TOKEN=$(cat "$WORK/data/admin.token")

CONFIG=$PWD/scripts/schemathesis.toml
cd "$WORK"
# Over HTTPS, as the Manager serves by default, verified against its own CA.
"$VENV/bin/st" --config-file "$CONFIG" run \
  "https://$LISTEN/v1/openapi.json" \
  --tls-verify "$WORK/data/ca.pem" \
  --max-examples "$MAX_EXAMPLES" \
  --generation-deterministic \
  --request-timeout 10 \
  --no-color
