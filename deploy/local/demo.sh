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
# Each run has topics and consumer groups of its own: nothing of an earlier run is replayed, and a
# service of an earlier run that did not leave its group cleanly cannot hold this run's partitions.
export DROPLINE_TOPIC_PREFIX="demo-$now."
export DROPLINE_MATCHER_GROUP="demo-matcher-$now" DROPLINE_CLIPPER_GROUP="demo-clipper-$now"
"$bin/dropline" create-topics >/dev/null

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

export DROPLINE_RECORDINGS=${DROPLINE_RECORDINGS:-data/recordings} DROPLINE_CLIPS=${DROPLINE_CLIPS:-data/clips}
mkdir -p "$DROPLINE_RECORDINGS" "$DROPLINE_CLIPS"
recording="$DROPLINE_RECORDINGS/demo-stream.mp4"
if [ ! -f "$recording" ]; then
  say "0. Recording a 70 s stream to cut clips from ($recording)"
  ffmpeg -v error -y -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
    -t 70 -c:v libx264 -preset veryfast -g 60 -c:a aac -shortest "$recording"
fi
# The stream "started" 70 s ago: wall-clock moments of this drop fall inside it.
echo "{\"started_at_ms\": $((now - 70000))}" >"$recording.json"

say "0. Starting the matcher (admin 127.0.0.1:9101) and the clipper worker (admin 127.0.0.1:9102)"
DROPLINE_LOG=${DROPLINE_LOG:-warn} "$bin/dropline-matcher" &
matcher=$!
DROPLINE_LOG=${DROPLINE_LOG:-warn} DROPLINE_ADMIN=127.0.0.1:9102 "$bin/dropline-clipper" &
clipper=$!
trap 'kill $matcher $clipper 2>/dev/null; wait $matcher $clipper 2>/dev/null' EXIT
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/9101) 2>/dev/null && break; sleep 0.2; done

say "1. The creator opens drop $drop (topic drop-triggers)"
"$bin/dropline" produce "${DROPLINE_TOPIC_PREFIX}drop-triggers" <<JSON
{"dropId":"$drop","triggerId":"$drop-open","sentAtMs":"$now","open":{"title":"Demo hoodie drop","recording":"demo-stream.mp4","limitPerBuyer":2,"holdSeconds":60,"waitlist":true,"waitlistCap":100,"channels":["twitch:#creator"],"items":[{"sku":"HOODIE-M","name":"Logo hoodie","product":"hoodie","size":"M","aliases":["hoodie","hoody"],"stock":40,"priceCents":"5500","itemNumber":1},{"sku":"HOODIE-L","name":"Logo hoodie","product":"hoodie","size":"L","aliases":["hoodie","hoody"],"stock":60,"priceCents":"5500","itemNumber":1},{"sku":"TEE-BLACK-M","name":"Black tee","product":"tee","size":"M","aliases":["tee","shirt"],"stock":100,"priceCents":"2500","itemNumber":2}]}}
JSON

say "2. Viewers type in chat (topic chat-orders)"
lines=("!buy hoodie L" "!BUY hoody m 2" "lets gooo" "!buy 2" "!buy tee black m" "!buy hodie L" "!buy hoodie L 9")
for i in "${!lines[@]}"; do
  printf '{"orderId":"%s-msg-%d","dropId":"%s","buyerId":"viewer-%d","channel":"twitch:#creator","text":"%s","sentAtMs":"%d"}\n' \
    "$drop" "$i" "$drop" "$((i % 5))" "${lines[$i]}" "$((now + i * 150))"
done | "$bin/dropline" produce "${DROPLINE_TOPIC_PREFIX}chat-orders"

say "3. What flowed, read back from the broker and decoded (dropline tail)"
"$bin/dropline" tail "${DROPLINE_TOPIC_PREFIX}drop-triggers" --from-beginning --key "$drop" -n 1 --idle-exit 5
"$bin/dropline" tail "${DROPLINE_TOPIC_PREFIX}chat-orders" --from-beginning --key "$drop" -n "${#lines[@]}" --idle-exit 5

say "4. The matcher's answers (topic reservations): one per order, ordinary chat ignored"
"$bin/dropline" tail "${DROPLINE_TOPIC_PREFIX}reservations" --from-beginning --key "$drop" -n 6 --idle-exit 10 --brief

say "5. Clips: the clipper asked for one when the drop opened; an editor marks another moment (clip-requests → clips)"
printf '{"clipId":"%s-marker","dropId":"%s","recording":"demo-stream.mp4","atMs":"%s","reason":"CLIP_REASON_MARKER","note":"the creator holds up the hoodie"}\n' \
  "$drop" "$drop" "$((now - 30000))" | "$bin/dropline" produce "${DROPLINE_TOPIC_PREFIX}clip-requests" >/dev/null
"$bin/dropline" tail "${DROPLINE_TOPIC_PREFIX}clips" --from-beginning --key "$drop" -n 2 --idle-exit 30

say "6. The stack"
deploy/local/stack.sh status
cat <<TXT

Clips are in $DROPLINE_CLIPS. The console (live page, gallery) and chat ingest join this demo as
they land. Watch this run's topics yourself:
  DROPLINE_TOPIC_PREFIX=$DROPLINE_TOPIC_PREFIX $bin/dropline tail reservations --from-beginning --brief
TXT
