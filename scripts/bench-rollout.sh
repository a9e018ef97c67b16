#!/bin/bash
# A rollout under load (BENCHMARKS.md): three Manager-mode Workers behind wrk, then a
# restart-required change (kind: WorkerSettings) and a binary "upgrade" (a copy of the
# same binary) rolled out by switchyard rollout. Needs wrk and a release build
# (cargo build --release -p switchyard-cli); uses ports 18970-18991 on 127.0.0.1.
set -u
B=${SWITCHYARD_BIN:-$PWD/target/release/switchyard}
W=$(mktemp -d)
cd $W
mkdir bins files
cp $B bins/switchyard-next
$B upstream --listen 127.0.0.1:18991 --id u1 >/dev/null 2>&1 &
UP=$!
$B manager --data $W/data --listen 127.0.0.1:18990 >manager.log 2>&1 &
MGR=$!
for i in $(seq 50); do [ -f $W/data/admin.token ] && grep -q "listening" manager.log && break; sleep 0.1; done
export SWITCHYARD_MANAGER=https://127.0.0.1:18990 SWITCHYARD_CA=$W/data/ca.pem SWITCHYARD_TOKEN=$(cat $W/data/admin.token)
$B env create dev >/dev/null
cat > files/proxy.yaml <<Y
apiVersion: switchyard.dev/v1
kind: Proxy
metadata: { name: p }
spec:
  routes: [ { pathPrefix: /p } ]
  upstream: { targets: [ { url: "http://127.0.0.1:18991" } ] }
Y
$B apply --env dev files/proxy.yaml
cat > files/settings.yaml <<Y
apiVersion: switchyard.dev/v1
kind: WorkerSettings
metadata: { name: default }
spec: { threads: 1, maxConnections: 20000 }
Y
PIDS=""
for n in 1 2 3; do
  T=$($B manager token create --data $W/data --role worker --env dev --name edge-$n)
  $B worker --manager https://127.0.0.1:18990 --manager-ca $W/data/ca.pem --env dev --token $T \
    --worker-id edge-$n --listen 127.0.0.1:1898$n --admin-listen 127.0.0.1:1897$n \
    --cache-dir $W/cache-$n --access-log off --upgrade-binaries $W/bins >worker-$n.log 2>&1 &
  PIDS="$PIDS $!"
done
for n in 1 2 3; do for i in $(seq 100); do curl -sf http://127.0.0.1:1898$n/p/x >/dev/null && break; sleep 0.1; done; done
for n in 1 2 3; do
  wrk -t1 -c16 -d14s http://127.0.0.1:1898$n/p/x > wrk-$n.txt 2>&1 &
done
wrk -t1 -c4 -d14s -H "Connection: close" http://127.0.0.1:18981/p/x > wrk-close.txt 2>&1 &
sleep 3
echo "\$ switchyard apply --env dev files/   # refused"
$B apply --env dev files/ ; echo "exit $?"
echo "\$ switchyard rollout --env dev files/ --binary $W/bins/switchyard-next"
/usr/bin/time -f "%e s" $B rollout --env dev files/ --binary $W/bins/switchyard-next
wait %4 %5 %6 %7 2>/dev/null
sleep 1
for n in 1 2 3; do echo "\$ wrk -t1 -c16 -d14s http://127.0.0.1:1898$n/p/x"; cat wrk-$n.txt; done
echo "\$ wrk -t1 -c4 -d14s -H 'Connection: close' http://127.0.0.1:18981/p/x"; cat wrk-close.txt
$B status --env dev
$B audit --env dev | head -12
grep -h "successor serves\|starting a successor" worker-*.log | head -20
for n in 1 2 3; do pid=$(curl -s http://127.0.0.1:1897$n/status | python3 -c 'import json,sys;print(json.load(sys.stdin)["pid"])'); echo "edge-$n pid $pid exe $(readlink /proc/$pid/exe)"; kill $pid; done
kill $PIDS $MGR $UP 2>/dev/null
rm -rf "$W"
