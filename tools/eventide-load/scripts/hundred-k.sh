#!/usr/bin/env bash
# 100,000 authenticated sockets on one machine, and how fast a change reaches the last
# of them.
#
# NODES hub nodes in cluster mode (a fresh PostgreSQL database, a private throw-away
# redis-server on a free port: never the machine's shared one), on CPU 0. The
# subscribers are split over as many `eventide-load cluster --role subscribe`
# processes as the file-descriptor limit needs (at most PER_PROCESS sockets each), on
# CPU 1; subscriber i connects to node i % NODES with a `client` token and joins
# provider-(1 + i % PROVIDERS): with PROVIDERS=1 every socket is in provider-1 and every
# change reaches all of them. Once every socket has joined, one `--role write` process
# (CPU 1) makes CHANGES changes at RATE per second through REST (a `service` token,
# alternating over the nodes), and `eventide-load merge` reports each hub's RSS per
# socket, the connect rate over the whole connect phase, and per change the time from
# its REST call to the last subscriber receiving it (p50/p99 over the changes), with
# loss and repeats. Everything started here is stopped, and the database dropped, on
# exit.
#
#   tools/eventide-load/scripts/hundred-k.sh NAME
#
# Settings, from the environment (defaults in brackets):
#   HUB          the hub binary [target/release/eventide-hub of this checkout]
#   HUB_COMMIT   what to call it in the setup [the commit of the checkout HUB is in]
#   LOAD         the load tool [target/release/eventide-load of this checkout]
#   NODES [5]  PROVIDERS [1]
#   SUBSCRIBERS  [100000, or as many as NODES nodes can hold under the hard
#                RLIMIT_NOFILE: 99,800 for five nodes at 20,000]
#   PER_PROCESS  [hard RLIMIT_NOFILE - 1000] sockets per subscriber process
#   CHANGES [30]  RATE [0.25]  JOIN_SECS [300]  SETTLE_SECS [60]  IDLE_SECS [10]
#   PG_ADMIN_URL [postgres://postgres@127.0.0.1:5432/postgres]
# Output (hub and Redis logs, each process's report, the split run's files, the
# summary) goes to ${OUT:-/tmp/eventide-hundred-k}/NAME/.
set -euo pipefail
. "$(dirname "$0")/cluster-lib.sh"

name=${1:?usage: hundred-k.sh NAME}
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
hub=${HUB:-$root/target/release/eventide-hub}
load=${LOAD:-$root/target/release/eventide-load}
nodes=${NODES:-5}
providers=${PROVIDERS:-1}
# A node holds its sockets plus descriptors of its own (23 idle: listener, epoll,
# PostgreSQL and Redis connections; more as its database pool grows, up to 16
# PostgreSQL connections) and one REST connection per room writer: what is left of
# the hard limit is its share. Past it the node cannot accept, and the run stalls.
hard=$(ulimit -Hn)
per_node_max=$(( hard - 38 - 2 * providers ))
fit=$(( nodes * per_node_max ))
subscribers=${SUBSCRIBERS:-$(( fit < 100000 ? fit : 100000 ))}
per_process=${PER_PROCESS:-$(( hard - 1000 ))}
changes=${CHANGES:-30}
rate=${RATE:-0.25}
join_secs=${JOIN_SECS:-300}
settle_secs=${SETTLE_SECS:-60}
idle_secs=${IDLE_SECS:-10}
out=${OUT:-/tmp/eventide-hundred-k}/$name
secret=${EVENTIDE_JWT_SECRET:-bench-secret-0123456789abcdef}
pg_admin=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
db=eventide_hundredk_${name//[^a-z0-9]/_}_$(date +%s)
for f in "$hub" "$load"; do [ -x "$f" ] || { echo "no executable $f" >&2; exit 1; }; done
if [ $(( (subscribers + nodes - 1) / nodes )) -gt "$per_node_max" ]; then
  echo "$subscribers sockets over $nodes nodes do not fit: a node may hold $per_node_max" \
    "under the hard RLIMIT_NOFILE of $hard; set NODES higher or SUBSCRIBERS lower" >&2
  exit 1
fi
mkdir -p "$out"
rm -f "$out"/*
# Each process may hold as many descriptors as the hard limit allows (no root needed).
ulimit -n "$(ulimit -Hn)"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# The hubs' warnings and errors, the same message counted once (without its time).
hub_warnings() {
  grep -hE 'WARN|ERROR' "$out"/hub*.log | sed -E 's/^\[[0-9T:.Z-]+ +/[/' | sort | uniq -c | sort -rn | head -20
}
# Now, the machine's busy time (softirq apart: much of loopback TCP is processed there)
# and the CPU time of two sets of processes, in clock ticks:
#   cpu_snapshot "HUB PIDS" "LOAD PIDS"  ->  SECONDS BUSY SOFTIRQ HUBS LOAD
cpu_snapshot() {
  python3 - "$1" "$2" <<'PY'
import sys, time
def ticks(pid):
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return 0
    fields = stat[stat.rfind(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime, stime
cpu = open("/proc/stat").readline().split()
busy = sum(int(cpu[i]) for i in (1, 2, 3, 6, 8))  # user nice system irq steal
print(time.time(), busy, cpu[7], *(sum(ticks(p) for p in arg.split()) for arg in sys.argv[1:3]))
PY
}
# Between two snapshots, in % of one CPU (clock ticks are 1/100 s): the machine's busy
# time, the hubs', the subscriber processes', and everything else (the writer, Redis,
# PostgreSQL, other people's work, and softirq not charged to those processes; softirq
# is also given alone, but part of it ran inside the processes and counts there too).
cpu_percent() {
  echo "$1 $2" | awk -v what="$3" '{ s = $6 - $1; b = ($7 - $2 + $8 - $3) / s; q = ($8 - $3) / s; h = ($9 - $4) / s; l = ($10 - $5) / s;
    printf "CPU %s (%% of one CPU): machine busy %.0f of 200, hubs %.0f, subscriber processes %.0f, everything else %.0f (softirq %.0f)", what, b, h, l, b - h - l, q }'
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
fds() { for p in "$@"; do printf '%s ' "$(find "/proc/$p/fd" -mindepth 1 | wc -l)"; done; }

psql "$pg_admin" -qc "CREATE DATABASE $db"
start_redis

hub_args=()
hub_pids=()
addrs=()
for n in $(seq 0 $((nodes - 1))); do
  start_hub "$n" "$hub" "hundredk-$name:"
  hub_args+=(--hub "ws://$hub_addr/ws")
  hub_pids+=("$hub_pid")
  addrs+=("$hub_addr")
done
hub_root=$(git -C "$(dirname "$hub")" rev-parse --show-toplevel 2>/dev/null) || hub_root=
if [ -z "${HUB_COMMIT:-}" ] && [ -n "$hub_root" ]; then
  HUB_COMMIT="$(git -C "$hub_root" rev-parse --short HEAD)$(git -C "$hub_root" diff --quiet HEAD -- src || echo ' (src modified)')"
fi
{
  echo "hub binary: $hub ($(md5sum <"$hub" | cut -c1-12), built $(date -ur "$hub" +%FT%TZ))"
  echo "hub commit: ${HUB_COMMIT:-unknown}"
  echo "load commit: $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- tools || echo ' (tools modified)')"
  echo "redis: port $port ($(redis-server --version | cut -d' ' -f3))"
  echo "database: $db"
  echo "fd limit: $(ulimit -Sn) soft, $(ulimit -Hn) hard"
  echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee -a "$out/setup.txt"

sleep 1
before=()
for n in "${!hub_pids[@]}"; do before+=("$(rss_kib "${hub_pids[$n]}")"); done
echo "hub file descriptors before the sockets: $(fds "${hub_pids[@]}")" | tee -a "$out/setup.txt"

# Subscriber processes: equal slices of at most PER_PROCESS sockets.
procs=$(( (subscribers + per_process - 1) / per_process ))
slice=$(( (subscribers + procs - 1) / procs ))
timeout=$(awk -v j="$join_secs" -v c="$changes" -v r="$rate" -v s="$settle_secs" 'BEGIN { printf "%d", j + c / r + s + 180 }')
plan=(--providers "$providers" --changes "$changes" --rate "$rate" --settle-secs "$settle_secs")
sub_pids=()
for k in $(seq 0 $((procs - 1))); do
  first=$(( k * slice ))
  count=$(( subscribers - first < slice ? subscribers - first : slice ))
  EVENTIDE_JWT_SECRET="$secret" taskset -c 1 "$load" cluster --role subscribe "${hub_args[@]}" \
    "${plan[@]}" --subscribers "$count" --first-subscriber "$first" \
    --join-secs "$join_secs" --timeout "$timeout" \
    --ready-file "$out/ready-$k.json" --writes-done-file "$out/writes-done" \
    --changes-file "$out/arrivals-$k.json" >"$out/subscribers-$k.txt" 2>&1 &
  sub_pids+=($!)
  pids+=($!)
done
echo "subscribers: $subscribers in $procs processes of $slice; $providers room(s)" | tee -a "$out/setup.txt"
[ "$subscribers" -lt 100000 ] && [ -z "${SUBSCRIBERS:-}" ] &&
  echo "(100,000 do not fit: $nodes nodes of at most $per_node_max under the hard RLIMIT_NOFILE of $hard)" |
  tee -a "$out/setup.txt"

# Wait until every process has all its sockets joined (or one gave up).
for _ in $(seq $(( join_secs * 10 + 100 ))); do
  ready=$(find "$out" -maxdepth 1 -name 'ready-*.json' | wc -l)
  [ "$ready" = "$procs" ] && break
  for k in "${!sub_pids[@]}"; do
    if ! kill -0 "${sub_pids[$k]}" 2>/dev/null && [ ! -e "$out/ready-$k.json" ]; then
      echo "subscriber process $k stopped before it was ready:" >&2
      tail -5 "$out/subscribers-$k.txt" >&2
      hub_warnings >&2 || true
      exit 1
    fi
  done
  sleep 0.1
done
[ "$ready" = "$procs" ] || { echo "only $ready of $procs processes ready" >&2; exit 1; }
# Every socket open, no change yet: what holding them costs (heartbeats every 10 s).
idle0=$(cpu_snapshot "${hub_pids[*]}" "${sub_pids[*]}")
sleep "$idle_secs"
idle1=$(cpu_snapshot "${hub_pids[*]}" "${sub_pids[*]}")
echo "$(cpu_percent "$idle0" "$idle1" "with every socket open and no change ($idle_secs s)")" | tee -a "$out/setup.txt"
rss_args=()
for n in "${!hub_pids[@]}"; do
  rss_args+=(--hub-rss "$n:${before[$n]}:$(rss_kib "${hub_pids[$n]}")")
done
echo "all joined; hub RSS (node:before:after KiB): ${rss_args[*]}" | tee -a "$out/setup.txt"
echo "hub file descriptors with the sockets: $(fds "${hub_pids[@]}")" | tee -a "$out/setup.txt"

hub_pid_args=()
for p in "${hub_pids[@]}"; do hub_pid_args+=(--hub-pid "$p"); done
cpu0=$(cpu_snapshot "${hub_pids[*]}" "${sub_pids[*]}")
EVENTIDE_JWT_SECRET="$secret" taskset -c 1 "$load" cluster --role write "${hub_args[@]}" \
  "${hub_pid_args[@]}" "${plan[@]}" --changes-file "$out/calls.json" --timeout "$timeout" \
  >"$out/writer.txt" 2>&1 || { echo "the writer failed:" >&2; tail -5 "$out/writer.txt" >&2; }
cpu1=$(cpu_snapshot "${hub_pids[*]}" "${sub_pids[*]}")
touch "$out/writes-done"
cpu_line=$(cpu_percent "$cpu0" "$cpu1" "during the changes")
echo "$cpu_line" | tee -a "$out/setup.txt"
status=0
for k in "${!sub_pids[@]}"; do
  wait "${sub_pids[$k]}" || { status=1; echo "subscriber process $k failed:" >&2; tail -3 "$out/subscribers-$k.txt" >&2; }
done

for n in "${!addrs[@]}"; do
  curl -s "http://${addrs[$n]}/metrics" |
    grep -E '^eventide_(connections|gap|anti_entropy|relay|slow|ws_)' >"$out/metrics-hub$n.txt" || true
done
hub_warnings >"$out/hub-warnings.txt" || true

merge=(merge --subscribers "$subscribers" --calls "$out/calls.json" "${rss_args[@]}")
for k in $(seq 0 $((procs - 1))); do
  merge+=(--ready "$out/ready-$k.json" --arrivals "$out/arrivals-$k.json")
done
"$load" "${merge[@]}" | tee "$out/summary.txt"
grep -h '^RESULT' "$out/writer.txt" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read().split(" ", 1)[1])
print("writer: %d of %d changes acked, REST p99 %.1f ms, write lag p99 %.1f ms, hubs %.1f %% of one CPU" % (
    r["changes_acked"], r["changes_planned"], r["rest_write_p99_us"] / 1e3,
    r["write_lag_p99_us"] / 1e3, r["hub_cpu_pct"]))' | tee -a "$out/summary.txt" || true
grep '^CPU ' "$out/setup.txt" | tee -a "$out/summary.txt"
[ -s "$out/hub-warnings.txt" ] && { echo "hub warnings (count, message):"; cat "$out/hub-warnings.txt"; }
exit $status
