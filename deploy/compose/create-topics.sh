#!/usr/bin/env bash
# Compose init container: creates Dropline's nine contract topics on Redpanda with rpk,
# idempotently (existing topics are left alone), with the names and partition count the services
# expect: DROPLINE_TOPIC_PREFIX + contract name (or DROPLINE_TOPIC_<NAME>), DROPLINE_PARTITIONS
# partitions — what `dropline create-topics` (services/cli) does with the admin API.
set -euo pipefail

brokers=${DROPLINE_KAFKA:-redpanda:9092}
prefix=${DROPLINE_TOPIC_PREFIX:-}
partitions=${DROPLINE_PARTITIONS:-4}
replicas=${TOPIC_REPLICAS:-1}
# The contract's default names, in services/core/src/topics.rs order, and their retention.ms
# (TopicKind::retention_ms: the topics services rebuild state from are kept forever).
contract=(chat-orders drop-triggers hold-actions reservations clip-requests clips dead-letters chat-replies chat-activity)
retention=(-1 -1 604800000 -1 604800000 -1 2592000000 604800000 -1)

rpk_() { rpk -X brokers="$brokers" "$@"; }

for _ in $(seq 60); do rpk_ cluster info >/dev/null 2>&1 && break; sleep 1; done
rpk_ cluster info >/dev/null

existing=$(rpk_ topic list | awk 'NR > 1 { print $1 }')
for i in "${!contract[@]}"; do
  topic=${contract[$i]}
  # DROPLINE_TOPIC_CHAT_ORDERS etc. override a name, as in services/core/src/settings.rs.
  var="DROPLINE_TOPIC_$(tr 'a-z-' 'A-Z_' <<<"$topic")"
  name=${!var:-$prefix$topic}
  if grep -qxF "$name" <<<"$existing"; then
    echo "exists:  $name"
  else
    rpk_ topic create "$name" --partitions "$partitions" --replicas "$replicas" --topic-config "retention.ms=${retention[$i]}"
  fi
done
rpk_ topic list
