# The parts of a cluster run that cluster-bench.sh and hundred-k.sh share (sourced, not
# run): a private Redis and hub nodes on one fresh database. The caller sets $out,
# $port, $pg_admin, $db and $secret, and keeps the array `pids` of what to stop.

# A throw-away redis-server on $port (never the machine's shared one), answering
# before this returns.
start_redis() {
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >"$out/redis.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
}

# A throw-away Redis Cluster of SHARDS masters with REPLICAS replicas each, on ports
# $port, $port+1, … (each with its bus port +10000, so $port + nodes ≤ 55535), joined
# and answering cluster_state:ok before this returns. Sets $redis_seeds (what
# EVENTIDE_REDIS_CLUSTER_URLS takes) and $redis_ports; the masters are the first
# SHARDS ports (redis-cli --cluster create makes the first nodes masters).
start_redis_cluster() {
  local shards=$1 replicas=$2 nodes p
  nodes=$((shards * (1 + replicas)))
  redis_ports=()
  for p in $(seq "$port" $((port + nodes - 1))); do
    mkdir -p "$out/redis-$p"
    redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
      --save '' --appendonly no --dir "$out/redis-$p" >"$out/redis-$p.log" 2>&1 &
    pids+=($!)
    redis_ports+=("$p")
  done
  for p in "${redis_ports[@]}"; do
    for _ in $(seq 50); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
  done
  redis-cli --cluster create $(printf '127.0.0.1:%s ' "${redis_ports[@]}") \
    --cluster-replicas "$replicas" --cluster-yes >"$out/redis-create.log" 2>&1
  for p in "${redis_ports[@]}"; do
    for _ in $(seq 300); do
      redis-cli -p "$p" cluster info | grep -q 'cluster_state:ok' && break
      sleep 0.1
    done
  done
  redis_seeds=$(printf 'redis://127.0.0.1:%s,' "${redis_ports[@]}")
  redis_seeds=${redis_seeds%,}
}

# start_hub N BIN PREFIX: hub node N on CPU 0 with Redis prefix PREFIX (on the Redis
# Cluster $redis_seeds when set, else on the Redis at $port); returns once it listens (one at a time: the first node migrates the fresh database), with its pid in
# $hub_pid and its address in $hub_addr.
start_hub() {
  local n=$1 bin=$2 prefix=$3 redis_env
  redis_env="EVENTIDE_REDIS_URL=redis://127.0.0.1:$port"
  [ -n "${redis_seeds:-}" ] && redis_env="EVENTIDE_REDIS_CLUSTER_URLS=$redis_seeds"
  env "$redis_env" \
    EVENTIDE_ADDR=127.0.0.1:0 DATABASE_URL="${pg_admin%/*}/$db" EVENTIDE_JWT_SECRET="$secret" \
    EVENTIDE_REDIS_PREFIX="$prefix" \
    EVENTIDE_MAX_CONNECTIONS_PER_SUB=100000 EVENTIDE_METRICS_LOOPBACK_OPEN=true \
    RUST_LOG=warn,eventide_hub::startup=info \
    taskset -c 0 "$bin" >"$out/hub$n.log" 2>&1 &
  hub_pid=$!
  pids+=("$hub_pid")
  hub_addr=
  for _ in $(seq 300); do
    hub_addr=$(grep -so 'listening on http://[0-9.:]*' "$out/hub$n.log" | head -1 | sed 's|.*http://||') || true
    [ -n "$hub_addr" ] && break
    kill -0 "$hub_pid" 2>/dev/null || { cat "$out/hub$n.log"; exit 1; }
    sleep 0.1
  done
  [ -n "$hub_addr" ] || { echo "hub $n did not start" >&2; exit 1; }
  echo "hub $n: pid $hub_pid on $hub_addr" | tee -a "$out/setup.txt"
}
