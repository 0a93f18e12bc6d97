#!/usr/bin/env bash
# One hot drop's decision ceiling, one shard vs split: starts a throwaway Redis Cluster of N primaries
# on free loopback ports (no persistence), runs `dropline-load split-step` against it, then stops it.
#   load-tests/split-cluster.sh [primaries (3)] [seconds (5)]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n=${1:-3}
seconds=${2:-5}
bin=${CARGO_TARGET_DIR:-target}/release
cargo build -q --release -p dropline-load
dir=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
# A free port whose cluster bus port (port + 10000) is a port too, and free.
free_port() {
  python3 -c '
import socket
while True:
    a, b = socket.socket(), socket.socket()
    a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
    if p + 10000 > 65535: continue
    try: b.bind(("127.0.0.1", p + 10000))
    except OSError: continue
    print(p); break'
}
nodes=()
for _ in $(seq "$n"); do
  port=$(free_port)
  (cd "$dir" && exec redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
    --cluster-enabled yes --cluster-config-file "nodes-$port.conf" >/dev/null) &
  pids+=($!)
  nodes+=("127.0.0.1:$port")
done
for node in "${nodes[@]}"; do
  for _ in $(seq 100); do redis-cli -h 127.0.0.1 -p "${node##*:}" ping >/dev/null 2>&1 && break; sleep 0.05; done
done
redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
for node in "${nodes[@]}"; do
  for _ in $(seq 200); do
    redis-cli -h 127.0.0.1 -p "${node##*:}" cluster info | grep -q cluster_state:ok && break; sleep 0.05
  done
done
echo "Redis Cluster of $n primaries: ${nodes[*]}" >&2
DROPLINE_REDIS="redis-cluster://$(IFS=,; echo "${nodes[*]}")" "$bin"/dropline-load split-step --shards "1,$((n * 2))" --seconds "$seconds"
