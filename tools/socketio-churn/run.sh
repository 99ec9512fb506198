#!/usr/bin/env bash
# One churn run against Socket.IO with connection-state recovery: server.js on CPU 0,
# churn.js on CPU 1, as side-by-side.sh places the hub and the load tool. Arguments go
# to churn.js; the RESULT line is appended to ${OUT:-/tmp/eventide-side-by-side.txt}.
#
#   npm ci    # once
#   tools/socketio-churn/run.sh --subscribers 1000 --providers 10 --changes 1500 \
#     --rate 25 --drop-every-secs 10 --drop-jitter 0.5 --drop-for-secs 2
set -euo pipefail
cd "$(dirname "$0")"
out=${OUT:-/tmp/eventide-side-by-side.txt}
port=${PORT:-9100}
PORT=$port taskset -c 0 node server.js >/tmp/socketio-churn-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
echo "== socketio churn $(date -u +%H:%M:%S): $*" | tee -a "$out"
taskset -c 1 node churn.js --url "http://127.0.0.1:$port" "$@" | grep '^RESULT' | tee -a "$out"
