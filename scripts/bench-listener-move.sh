#!/bin/bash
# A listener moved under load (BENCHMARKS.md): one Manager-mode Worker that binds its
# environment's listeners, wrk on the listener's address (keep-alive clients, and clients
# opening a connection per request), then the listener moved to another port. Measures the
# time from the apply to the new socket answering, and what wrk saw on each address. Needs
# wrk, curl and a release build (cargo build --release -p switchyard-cli); uses ports
# 18960-18965 on 127.0.0.1.
set -u
B=${SWITCHYARD_BIN:-$PWD/target/release/switchyard}
W=$(mktemp -d)
cd $W
mkdir files
$B upstream --listen 127.0.0.1:18965 --id u1 >/dev/null 2>&1 &
UP=$!
$B manager --data $W/data --listen 127.0.0.1:18960 >manager.log 2>&1 &
MGR=$!
for i in $(seq 50); do [ -f $W/data/admin.token ] && grep -q "listening" manager.log && break; sleep 0.1; done
export SWITCHYARD_MANAGER=https://127.0.0.1:18960 SWITCHYARD_CA=$W/data/ca.pem SWITCHYARD_TOKEN=$(cat $W/data/admin.token)
$B env create dev >/dev/null
cat > files/proxy.yaml <<Y
apiVersion: switchyard.dev/v1
kind: Proxy
metadata: { name: p }
spec:
  routes: [ { pathPrefix: /p } ]
  upstream: { targets: [ { url: "http://127.0.0.1:18965" } ] }
Y
listener() {
cat > files/listener.yaml <<Y
apiVersion: switchyard.dev/v1
kind: Listener
metadata: { name: edge }
spec: { address: 127.0.0.1, port: $1, drainAcceptingFor: 30s }
Y
}
listener 18961
$B apply --env dev files/ >/dev/null
T=$($B manager token create --data $W/data --role worker --env dev --name edge-1)
$B worker --manager https://127.0.0.1:18960 --manager-ca $W/data/ca.pem --env dev --token $T \
  --worker-id edge-1 --admin-listen 127.0.0.1:18963 --cache-dir $W/cache --access-log off \
  >worker.log 2>&1 &
WORKER=$!
for i in $(seq 100); do curl -sf http://127.0.0.1:18961/p/x >/dev/null && break; sleep 0.1; done
PID_BEFORE=$(curl -s http://127.0.0.1:18963/status | python3 -c 'import json,sys;print(json.load(sys.stdin)["pid"])')
wrk -t1 -c16 -d12s http://127.0.0.1:18961/p/x > wrk-old.txt 2>&1 &
WRK1=$!
wrk -t1 -c4 -d12s -H "Connection: close" http://127.0.0.1:18961/p/x > wrk-old-close.txt 2>&1 &
WRK2=$!
sleep 3
listener 18962
echo "\$ switchyard plan --env dev files/"
$B plan --env dev files/ | grep -i listener
start=$(date +%s%N)
$B apply --env dev files/ >/dev/null
until curl -sf http://127.0.0.1:18962/p/x >/dev/null; do :; done
end=$(date +%s%N)
echo "apply to the new socket answering: $(( (end - start) / 1000000 )) ms (the apply's own round trip included)"
wrk -t1 -c16 -d6s http://127.0.0.1:18962/p/x > wrk-new.txt 2>&1
wait $WRK1 $WRK2
echo "\$ wrk -t1 -c16 -d12s http://127.0.0.1:18961/p/x   # the old address, moved 3 s in"; cat wrk-old.txt
echo "\$ wrk -t1 -c4 -d12s -H 'Connection: close' http://127.0.0.1:18961/p/x"; cat wrk-old-close.txt
echo "\$ wrk -t1 -c16 -d6s http://127.0.0.1:18962/p/x   # the new address"; cat wrk-new.txt
curl -s http://127.0.0.1:18963/status | python3 -c '
import json,sys
s=json.load(sys.stdin)
print("worker pid", s["pid"], "(before the move: '$PID_BEFORE')")
for l in s["listeners"]: print("listener", l["name"], l["address"], l["state"], "open", l["open_connections"])'
$B status --env dev | head -8
kill $WORKER $MGR $UP 2>/dev/null
rm -rf "$W"
