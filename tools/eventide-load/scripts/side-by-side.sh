#!/usr/bin/env bash
# The hub and the reference server, side by side in one session: the same load-tool
# runs against each, a fresh server per run (RSS baselines), server on CPU 0 and tool
# on CPU 1. Appends every run's label, start time, arguments and RESULT line to
# ${OUT:-/tmp/eventide-side-by-side.txt}.
#
#   tools/eventide-load/scripts/side-by-side.sh [RUN…]
#
# RUN is one of connect, fanout1, fanout8, latency, rooms20, slow (default: all of
# them but rooms20).
# Needs `cargo build --release -p eventide-hub -p eventide-load` first.
set -euo pipefail

root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
bin=${BIN:-$root/target/release}
out=${OUT:-/tmp/eventide-side-by-side.txt}
work=$(mktemp -d)
export EVENTIDE_JWT_SECRET=${EVENTIDE_JWT_SECRET:-bench-secret-0123456789abcdef}
ulimit -n "$(ulimit -Hn)"

server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

wait_for_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  exit 1
}

start_hub() {
  rm -f "$work"/hub.db*
  EVENTIDE_ADDR=127.0.0.1:8080 DATABASE_URL="sqlite://$work/hub.db" RUST_LOG=warn \
    EVENTIDE_MAX_CONNECTIONS_PER_SUB=100000 \
    taskset -c 0 "$bin/eventide-hub" >"$work/hub.log" 2>&1 &
  server=$!
  wait_for_port 8080
  url=ws://127.0.0.1:8080/ws
}

start_reference() {
  taskset -c 0 "$bin/eventide-load" reference-server --addr 127.0.0.1:9090 --duration 3600 \
    >"$work/ref.log" 2>&1 &
  server=$!
  wait_for_port 9090
  url=ws://127.0.0.1:9090/ws
}

stop_server() {
  kill "$server" && wait "$server" 2>/dev/null || true
  server=
  sleep 1
}

# run LABEL SERVER ARGS…: one run of the tool against a fresh SERVER (hub | ref).
run() {
  local label=$1 which=$2
  shift 2
  if [ "$which" = hub ]; then start_hub; else start_reference; fi
  local started
  started=$(date -u +%H:%M:%S)
  echo "== $label ($which) $started: $*" | tee -a "$out"
  taskset -c 1 "$bin/eventide-load" "$@" --url "$url" --hub-pid "$server" 2>&1 |
    grep '^RESULT' | tee -a "$out"
  stop_server
}

{
  echo "# $(date -u +%FT%TZ) hub commit $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- src || echo ' (src modified)'), load $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee -a "$out"

for what in "${@:-connect fanout1 fanout8 latency slow}"; do
  for one in $what; do
    case $one in
      connect)
        for s in hub ref; do run "connect 19k" $s connect --sockets 19000 --room-count 100 --hold 5 --timeout 300; done ;;
      fanout1)
        for s in hub ref; do run "fanout W=1" $s fanout --subscribers 10000 --rooms 10 --changes 2000 --window 1 --timeout 300; done ;;
      fanout8)
        for s in hub ref; do run "fanout W=8" $s fanout --subscribers 10000 --rooms 10 --changes 2000 --window 8 --timeout 300; done ;;
      latency)
        run "latency 10/s REST" hub fanout --via rest --subscribers 10000 --rooms 1 --changes 300 --rate 10 --timeout 300
        run "latency 10/s emit" hub fanout --via emit --subscribers 10000 --rooms 1 --changes 300 --rate 10 --timeout 300
        run "latency 10/s emit" ref fanout --via emit --subscribers 10000 --rooms 1 --changes 300 --rate 10 --timeout 300 ;;
      rooms20)
        for s in hub ref; do run "2k x 20 rooms, 20k frames/s" $s fanout --via emit --subscribers 2000 --rooms 20 --changes 6000 --rate 200 --timeout 300; done ;;
      slow)
        for s in hub ref; do run "slow 100" $s slow --readers 100 --events 2000 --size 4096 --timeout 300; done ;;
      *) echo "unknown run: $one" >&2; exit 2 ;;
    esac
  done
done
