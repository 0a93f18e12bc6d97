#!/usr/bin/env bash
# How fast one matcher (release build) drains a backlog of chat orders, end to end through the
# broker and Redis: N orders over D drops are produced first, then a fresh matcher decides them all.
# Throughput is measured between the first and the last outcome's broker timestamps (group join and
# startup excluded). Loopback only; stops by itself. Needs python3 (order generation, stats).
#   N=40000 D=8 load-tests/backlog-drain.sh
# The full load generator (open-loop arrivals, latency, invariants) is dropline-load (issue 6).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=${N:-40000}
D=${D:-8}
cargo build --quiet --release -p dropline-cli -p dropline-matcher
bin=${CARGO_TARGET_DIR:-target}/release
now=$(($(date +%s%N) / 1000000))
prefix="test-backlog-$now."
export DROPLINE_TOPIC_PREFIX=$prefix DROPLINE_PARTITIONS=${DROPLINE_PARTITIONS:-4}
"$bin/dropline" create-topics >/dev/null

for d in $(seq 1 "$D"); do
  printf '{"dropId":"d%s-%s","triggerId":"open-%s-%s","open":{"limitPerBuyer":0,"holdSeconds":600,"items":[{"sku":"HOODIE-M","product":"hoodie","size":"M","stock":1000000},{"sku":"HOODIE-L","product":"hoodie","size":"L","stock":1000000}]}}\n' "$d" "$now" "$d" "$now"
done | "$bin/dropline" produce "${prefix}drop-triggers" >/dev/null

python3 - "$N" "$D" "$now" >"/tmp/dropline-backlog-$now.jsonl" <<'PY'
import sys
n, d, now = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
lines = ["!buy hoodie m", "!buy hoodie L 2", "!buy HOODIE-L", "gg ez", "!buy hoody m"]
for i in range(n):
    print('{"orderId":"o%d","dropId":"d%d-%s","buyerId":"b%d","text":"%s","sentAtMs":"%s"}'
          % (i, i % d + 1, now, i % 5000, lines[i % len(lines)], now))
PY
"$bin/dropline" produce "${prefix}chat-orders" <"/tmp/dropline-backlog-$now.jsonl" >/dev/null
rm -f "/tmp/dropline-backlog-$now.jsonl"
expected=$((N - N / 5)) # every fifth line is ordinary chat

DROPLINE_ADMIN=127.0.0.1:0 DROPLINE_MATCHER_GROUP="backlog-$now" DROPLINE_LOG=warn "$bin/dropline-matcher" &
matcher=$!
trap 'kill $matcher 2>/dev/null || true' EXIT
"$bin/dropline" tail "${prefix}reservations" --from-beginning -n "$expected" --idle-exit 60 |
  python3 -c '
import json, sys
ts = [json.loads(line)["timestamp_ms"] for line in sys.stdin]
span = (max(ts) - min(ts)) / 1000
print(f"{len(ts)} decisions in {span:.2f} s: {len(ts) / span:,.0f} decisions/s (one matcher, first to last outcome)")'
