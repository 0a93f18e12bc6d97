#!/usr/bin/env bash
# `make demo`: a small drop flows through the real stack. It starts the services that exist (the
# matcher today; clipper, console and ingest join as they land), publishes a drop and a burst of
# chat orders through the contract's topics, and shows every decision.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

cargo build --quiet --workspace
bin=${CARGO_TARGET_DIR:-target}/debug
drop="demo-$(date +%Y%m%d-%H%M%S)"
now=$(($(date +%s%N) / 1000000))

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

say "0. Starting the matcher (admin on 127.0.0.1:9101: /metrics, /healthz)"
DROPLINE_LOG=${DROPLINE_LOG:-warn} "$bin/dropline-matcher" &
matcher=$!
trap 'kill $matcher 2>/dev/null; wait $matcher 2>/dev/null' EXIT
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/9101) 2>/dev/null && break; sleep 0.2; done

say "1. The creator opens drop $drop (topic drop-triggers)"
"$bin/dropline" produce drop-triggers <<JSON
{"dropId":"$drop","triggerId":"$drop-open","sentAtMs":"$now","open":{"title":"Demo hoodie drop","limitPerBuyer":2,"holdSeconds":60,"waitlist":true,"waitlistCap":100,"channels":["twitch:#creator"],"items":[{"sku":"HOODIE-M","name":"Logo hoodie","product":"hoodie","size":"M","aliases":["hoodie","hoody"],"stock":40,"priceCents":"5500","itemNumber":1},{"sku":"HOODIE-L","name":"Logo hoodie","product":"hoodie","size":"L","aliases":["hoodie","hoody"],"stock":60,"priceCents":"5500","itemNumber":1},{"sku":"TEE-BLACK-M","name":"Black tee","product":"tee","size":"M","aliases":["tee","shirt"],"stock":100,"priceCents":"2500","itemNumber":2}]}}
JSON

say "2. Viewers type in chat (topic chat-orders)"
lines=("!buy hoodie L" "!BUY hoody m 2" "lets gooo" "!buy 2" "!buy tee black m" "!buy hodie L" "!buy hoodie L 9")
for i in "${!lines[@]}"; do
  printf '{"orderId":"%s-msg-%d","dropId":"%s","buyerId":"viewer-%d","channel":"twitch:#creator","text":"%s","sentAtMs":"%d"}\n' \
    "$drop" "$i" "$drop" "$((i % 5))" "${lines[$i]}" "$((now + i * 150))"
done | "$bin/dropline" produce chat-orders

say "3. What flowed, read back from the broker and decoded (dropline tail)"
"$bin/dropline" tail drop-triggers --from-beginning --key "$drop" -n 1 --idle-exit 5
"$bin/dropline" tail chat-orders --from-beginning --key "$drop" -n "${#lines[@]}" --idle-exit 5

say "4. The matcher's answers (topic reservations): one per order, ordinary chat ignored"
"$bin/dropline" tail reservations --from-beginning --key "$drop" -n 6 --idle-exit 10 --brief

say "5. The stack"
deploy/local/stack.sh status
cat <<TXT

The clipper, console and ingest join this demo as they land.
Watch a topic yourself:  $bin/dropline tail reservations
