#!/usr/bin/env bash
# One `eventide-load cluster` run against hub nodes (two, or NODES) sharing a fresh PostgreSQL
# database and a private, throw-away Redis (never the machine's shared one, since the
# run pauses and kills its clients). Hubs on CPU 0, the tool on CPU 1. Everything the
# script starts is stopped, and the database dropped, when it exits.
#
#   tools/eventide-load/scripts/cluster-bench.sh NAME [cluster options…]
#
# REDIS_SHARDS=3 puts the hubs on a private Redis Cluster of that many masters instead
# (REDIS_REPLICAS replicas each, default 1); KILL_MASTER_AFTER_SECS=N then kills the
# first master with SIGKILL N seconds after the tool starts, and its replica takes
# over. The tool's --redis (for its own faults) names the first node.
#
# NODE1_REDIS_PREFIX gives the second node another channel prefix, so that it never
# hears the first: a control run that must show loss (with every write through node 0
# and EVENTIDE_ANTI_ENTROPY_MS far beyond the run).
#
# Output (hub logs, Redis log, the tool's report, the hubs' delivery metrics) goes to
# ${OUT:-/tmp/eventide-cluster-bench}/NAME/.
set -euo pipefail
. "$(dirname "$0")/cluster-lib.sh"

name=${1:?usage: cluster-bench.sh NAME [cluster options…]}
shift
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
bin=$root/target/release
out=${OUT:-/tmp/eventide-cluster-bench}/$name
mkdir -p "$out"
rm -f "$out"/*
secret=${EVENTIDE_JWT_SECRET:-bench-secret-0123456789abcdef}
pg_admin=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
db=eventide_bench_${name//[^a-z0-9]/_}_$(date +%s)
shards=${REDIS_SHARDS:-0}
if [ "$shards" -gt 0 ]; then
  # A run of free ports whose bus ports (+10000) are free too, all below the kernel's
  # ephemeral range: a killed master's port must stay closed to the hubs reconnecting.
  port=$(python3 -c '
import random, socket
def free(p):
    try:
        s = socket.socket(); s.bind(("127.0.0.1", p)); s.close(); return True
    except OSError:
        return False
while True:
    p = random.randrange(20000, 22680)
    if all(free(p + i) and free(p + i + 10000) for i in range(12)):
        print(p); break')
else
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
}
trap cleanup EXIT

psql "$pg_admin" -qc "CREATE DATABASE $db"
if [ "$shards" -gt 0 ]; then
  start_redis_cluster "$shards" "${REDIS_REPLICAS:-1}"
else
  start_redis
fi

nodes=${NODES:-2}
hub_args=()
for n in $(seq 0 $((nodes - 1))); do
  prefix="bench-$name:"
  [ "$n" = 1 ] && prefix=${NODE1_REDIS_PREFIX:-$prefix}
  start_hub "$n" "$bin/eventide-hub" "$prefix"
  hub_args+=(--hub "ws://$hub_addr/ws" --hub-pid "$hub_pid")
  eval "addr$n=$hub_addr"
done
{
  if [ "$shards" -gt 0 ]; then
    echo "redis cluster: $shards masters × ${REDIS_REPLICAS:-1} replicas on ports ${redis_ports[*]} ($(redis-server --version | cut -d' ' -f3))"
  else
    echo "redis: port $port ($(redis-server --version | cut -d' ' -f3))"
  fi
  echo "database: $db"
  echo "commit: $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- src || echo ' (src modified)')"
  echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee -a "$out/setup.txt"

if [ "$shards" -gt 0 ] && [ -n "${KILL_MASTER_AFTER_SECS:-}" ]; then
  (
    sleep "$KILL_MASTER_AFTER_SECS"
    victim=$(redis-cli -p "$port" info server | grep -o 'process_id:[0-9]*' | cut -d: -f2)
    kill -9 "$victim"
    echo "killed the master on port $port (pid $victim) at $(date +%T.%N | cut -c1-12)" | tee -a "$out/setup.txt"
  ) &
  pids+=($!)
fi

EVENTIDE_JWT_SECRET="$secret" taskset -c 1 "$bin/eventide-load" cluster "${hub_args[@]}" \
  --redis "redis://127.0.0.1:$port" "$@" 2>&1 | tee "$out/report.txt"

for n in $(seq 0 $((nodes - 1))); do
  eval "addr=\$addr$n"
  curl -s "http://$addr/metrics" |
    grep -E '^eventide_(gap|anti_entropy|history_lost|relay|replay)' >"$out/metrics-hub$n.txt" || true
done
grep -E 'redis|Redis|WARN|ERROR' "$out"/hub*.log | head -40 >"$out/hub-warnings.txt" || true
