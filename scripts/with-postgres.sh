#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL server: initdb in a temporary directory, a
# free port on 127.0.0.1, a database `switchyard`; SWITCHYARD_DATABASE_URL names it for the
# command; the server and its directory are removed afterwards.
#   scripts/with-postgres.sh COMMAND [ARGS...]
# Needs the server binaries (Debian: apt-get install postgresql). As root, the server runs
# as the `postgres` user.
set -euo pipefail
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$BIN/initdb" ] || { echo "PostgreSQL server binaries not found: apt-get install postgresql" >&2; exit 2; }
DIR=$(mktemp -d)
chmod 755 "$DIR"
AS=()
if [ "$(id -u)" = 0 ]; then chown postgres "$DIR"; AS=(runuser -u postgres --); fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
stop() { "${AS[@]}" "$BIN/pg_ctl" -D "$DIR/data" -m fast stop >/dev/null 2>&1 || true; rm -rf "$DIR"; }
trap stop EXIT
"${AS[@]}" "$BIN/initdb" -D "$DIR/data" -U switchyard --auth=trust >/dev/null
"${AS[@]}" "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w \
  -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on" start >/dev/null
"${AS[@]}" "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U switchyard switchyard
export SWITCHYARD_DATABASE_URL="postgres://switchyard@127.0.0.1:$PORT/switchyard"
"$@"
