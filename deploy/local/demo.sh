#!/usr/bin/env bash
# `make demo`: a small drop flows through the real stack. It starts every service (matcher,
# clipper, ingest, console) and an IRC server (ngircd) standing in for Twitch chat, creates and
# opens a drop through the console's API, sends chat through ingest's signed webhook and from real
# IRC viewers (answered in the channel by the bot), pays on the claim pages (test mode) and with
# Stripe-signed events, late payments both ways, a crowd of webhook viewers, every decision and
# clip, the console's links; then exits — with DEMO_SERVE=1 everything stays up until Ctrl-C.
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
recording="$DROPLINE_RECORDINGS/demo-stream-150s.mp4"
if [ ! -f "$recording" ]; then
  say "0. Recording a 150 s stream (picture and sound) to cut clips from ($recording)"
  ffmpeg -v error -y -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
    -t 150 -c:v libx264 -preset veryfast -g 60 -c:a aac -shortest "$recording.part.mp4"
  mv "$recording.part.mp4" "$recording"
fi

# Tokens of this run (the console refuses calls without one).
creator="creator-$(openssl rand -hex 12)" producer="producer-$(openssl rand -hex 12)" editor="editor-$(openssl rand -hex 12)"
secret="demo-$(openssl rand -hex 16)" whsec="whsec_demo$(openssl rand -hex 16)"
export DROPLINE_HTTP=${DROPLINE_HTTP:-127.0.0.1:8080} DROPLINE_INGEST_HTTP=${DROPLINE_INGEST_HTTP:-127.0.0.1:8091}
console="http://$DROPLINE_HTTP"
export DROPLINE_PUBLIC_URL=${DROPLINE_PUBLIC_URL:-$console}

# Twitch chat speaks IRC: a real IRC server on loopback stands in for it (penalties off, so what a
# viewer sees is when the bot sent).
irc_port=${DEMO_IRC_PORT:-16667}
irc_dir=$(mktemp -d)
cat >"$irc_dir/ngircd.conf" <<CONF
[Global]
Name = irc.demo.dropline
Info = Dropline demo chat
Listen = 127.0.0.1
Ports = $irc_port
PidFile = $irc_dir/ngircd.pid
MotdPhrase = Dropline demo
[Limits]
MaxConnectionsIP = 0
MaxPenaltyTime = 0
[Options]
PAM = no
Ident = no
DNS = no
CONF

say "0. Starting the matcher (admin :9101), the clipper worker (:9102), ingest (:9103, webhook $DROPLINE_INGEST_HTTP) and the console ($console)"
log=${DROPLINE_LOG:-warn}
DROPLINE_LOG=$log "$bin/dropline-matcher" &
pids=($!)
DROPLINE_LOG=$log DROPLINE_ADMIN=127.0.0.1:9102 "$bin/dropline-clipper" &
pids+=($!)
ngircd --nodaemon --config "$irc_dir/ngircd.conf" >"$irc_dir/ngircd.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$irc_port") 2>/dev/null && break; sleep 0.1; done
DROPLINE_LOG=$log DROPLINE_ADMIN=127.0.0.1:9103 DROPLINE_INGEST_WEBHOOK_SECRET=$secret \
  DROPLINE_INGEST_IRC="127.0.0.1:$irc_port" DROPLINE_INGEST_CHANNELS="#creator" DROPLINE_INGEST_IRC_NICK=dropbot \
  DROPLINE_INGEST_REPLY_RATE=20/30s DROPLINE_INGEST_REPLY_GROUP="demo-replies-$now" "$bin/dropline-ingest" &
pids+=($!)
DROPLINE_LOG=$log DROPLINE_CONSOLE_TOKENS="creator:$creator,producer:$producer,editor:$editor" \
  DROPLINE_STRIPE_WEBHOOK_SECRET=$whsec DROPLINE_CONSOLE_TEST_PAYMENTS=on "$bin/dropline-console" &
pids+=($!)
trap 'kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null; rm -rf "$irc_dir"' EXIT
for _ in $(seq 100); do curl -sf "$console/readyz" >/dev/null && break; sleep 0.2; done
# Ingest is ready once it knows the live drops (its webhook answers 503 until then).
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/9101) 2>/dev/null && curl -sf http://127.0.0.1:9103/healthz >/dev/null && break; sleep 0.2; done

# The stream "started" 30 s before the drop opens: the drop's moments fall inside the recording.
now=$(($(date +%s%N) / 1000000))
echo "{\"started_at_ms\": $((now - 30000))}" >"$recording.json"

say "1. The creator creates drop $drop — a co-op of two channels: #creator (70 %) and #friend (30 %) — and opens it (console API → topic drop-triggers)"
api() { curl -sS -H "Authorization: Bearer $1" -H 'Content-Type: application/json' "${@:2}"; echo; }
api "$creator" "$console/api/drops" -d @- <<JSON
{"id":"$drop","title":"Demo hoodie drop","recording":"demo-stream-150s.mp4","limit_per_buyer":2,"hold_seconds":60,"waitlist":true,"waitlist_cap":100,"channels":["twitch:#creator","twitch:#friend"],"partners":[{"channel":"twitch:#creator","share_bp":7000},{"channel":"twitch:#friend","share_bp":3000}],"items":[{"sku":"HOODIE-M","name":"Logo hoodie","product":"hoodie","size":"M","aliases":["hoodie","hoody"],"stock":80,"price_cents":5500},{"sku":"HOODIE-L","name":"Logo hoodie","product":"hoodie","size":"L","aliases":["hoodie","hoody"],"stock":120,"price_cents":5500},{"sku":"TEE-BLACK-M","name":"Black tee","product":"tee","size":"M","aliases":["tee","shirt"],"stock":150,"price_cents":2500},{"sku":"CAP","name":"Dad cap","product":"cap","stock":1,"price_cents":1500},{"sku":"MUG","name":"Mug","product":"mug","stock":5,"price_cents":1200,"checkout_url":"https://buy.stripe.com/test_demo_mug"}]}
JSON
api "$creator" -X POST "$console/api/drops/$drop/open" >/dev/null
sleep 2 # the matcher and ingest take the open trigger

say "2. Viewers type in chat on both channels; the platform pushes it to ingest's webhook (HMAC-signed) → topic chat-orders (every line counted on chat-activity)"
lines=("!buy hoodie L" "!BUY hoody m 2" "lets gooo" "!buy 2" "!buy tee black m" "!buy hodie L" "!buy hoodie L 9")
for i in "${!lines[@]}"; do
  id="$drop-msg-$i" ts=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
  body=$(printf '{"subscription":{"type":"channel.chat.message"},"event":{"broadcaster_user_login":"%s","chatter_user_id":"%d","chatter_user_login":"viewer%d","chatter_user_name":"Viewer%d","message_id":"%s","message":{"text":"%s"}}}' \
    "$([ $((i % 3)) = 2 ] && echo friend || echo creator)" "$((i % 5))" "$((i % 5))" "$((i % 5))" "$id" "${lines[$i]}")
  sig=$(printf '%s%s%s' "$id" "$ts" "$body" | openssl dgst -sha256 -hmac "$secret" | sed 's/^.*= //')
  curl -sS -o /dev/null -w "  %{http_code} ${lines[$i]}\n" "http://$DROPLINE_INGEST_HTTP/ingest/chat" -H 'Content-Type: application/json' \
    -H "Twitch-Eventsub-Message-Id: $id" -H "Twitch-Eventsub-Message-Timestamp: $ts" \
    -H "Twitch-Eventsub-Message-Signature: sha256=$sig" -H "Twitch-Eventsub-Message-Type: notification" -d "$body"
done

say "2b. Forty viewers in the IRC chat type their orders; the bot (ingest) answers them in the channel, within Twitch's budget of 20 messages per 30 s"
irc_lines=("!buy cap" "!buy cap" "!buy mug" "!buy hoodie L" "!buy mug")
cycle=("!buy hoodie L" "!buy tee black m" "!buy hoodie m" "!buy jacket" "!buy hodie L" "!buy cap")
for i in $(seq 5 39); do irc_lines+=("${cycle[$((i % ${#cycle[@]}))]}"); done
args=()
for l in "${irc_lines[@]}"; do args+=(--line "$l"); done
"$bin/dropline-load" irc-crowd --server "127.0.0.1:$irc_port" --drop "$drop" --spread 5 --wait 60 "${args[@]}" | sed 's/^/  /'

# The claim code of a viewer's order with a given status, read from the outcomes.
claim_of() {
  "$bin/dropline" tail "${DROPLINE_TOPIC_PREFIX}reservations" --from-beginning --key "$drop" --idle-exit 3 2>/dev/null |
    python3 -c 'import json,sys
who, status = sys.argv[1], "RESERVATION_STATUS_" + sys.argv[2]
found = [o["claimCode"] for o in (json.loads(line).get("value", {}) for line in sys.stdin)
         if o.get("buyerName") == who and o.get("status") == status]  # reads to the end: no SIGPIPE
print(found[0] if found else "")' "$1" "$2"
}
claim_status() { curl -sS "$console/api/claims/$1" | python3 -c 'import json,sys; c=json.load(sys.stdin); print("%-10s %s" % (c["status"], c["reason"]))'; }
wait_claim() { for _ in $(seq 100); do [ "$(curl -sS "$console/api/claims/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')" = "$2" ] && break; sleep 0.2; done; }
stripe_paid() { # claim code or "", amount, metadata order id: a checkout.session.completed as Stripe signs it
  local ref=$1 amount=$2 order=${3:-} t body sig
  t=$(date +%s)
  body=$(printf '{"id":"evt_demo_%s","object":"event","type":"checkout.session.completed","data":{"object":{"object":"checkout.session","client_reference_id":%s,"payment_status":"paid","amount_total":%d,"currency":"usd","metadata":{%s}}}}' \
    "$(openssl rand -hex 6)" "$([ -n "$ref" ] && printf '"%s"' "$ref" || echo null)" "$amount" "$([ -n "$order" ] && printf '"order_id":"%s","drop_id":"%s"' "$order" "$drop")")
  sig=$(printf '%s.%s' "$t" "$body" | openssl dgst -sha256 -hmac "$whsec" | sed 's/^.*= //')
  curl -sS "$console/webhooks/stripe" -H "Stripe-Signature: t=$t,v1=$sig" -H 'Content-Type: application/json' -d "$body"; echo
}

say "2c. Buyers pay on their claim pages: v003 in test mode (no checkout for hoodies), v004 through Stripe (a signed checkout.session.completed)"
code=$(claim_of v003 RESERVED)
echo "  claim page: $DROPLINE_PUBLIC_URL/c/$code"
curl -sS -o /dev/null -w "  test-mode Pay: %{http_code}\n" -X POST "$console/api/claims/$code/pay"
wait_claim "$code" CONFIRMED
echo "  v003: $(claim_status "$code")"
code=$(claim_of v004 RESERVED)
echo "  Stripe webhook: $(stripe_paid "$code" 1200)"
wait_claim "$code" CONFIRMED
echo "  v004: $(claim_status "$code")"

say "3. What flowed, read back from the broker and decoded (dropline tail)"
"$bin/dropline" tail "${DROPLINE_TOPIC_PREFIX}drop-triggers" --from-beginning --key "$drop" -n 1 --idle-exit 5
"$bin/dropline" tail "${DROPLINE_TOPIC_PREFIX}chat-orders" --from-beginning --key "$drop" -n 6 --idle-exit 5

say "4. The matcher's answers (topic reservations): one per order, ordinary chat ignored"
"$bin/dropline" tail "${DROPLINE_TOPIC_PREFIX}reservations" --from-beginning --key "$drop" -n 6 --idle-exit 10 --brief

say "5. A crowd: 3,000 viewers on both channels chat for a minute (60 lines/s, typos, aliases, small talk); 60 % of reservations get paid, the rest expire after the 60 s window"
"$bin/dropline-load" crowd --drop "$drop" --lines load-tests/demo-chat.txt --viewers 3000 --seconds 60 --rate 60 --confirm 0.6 --linger 20 \
  --channel twitch:#creator --channel twitch:#friend

say "5b. Late payments, both ways: v000's cap and v002's mug were not paid within 60 s and expired; the cap went to v001 (waitlisted), who pays"
code=$(claim_of v001 WAITLISTED)
wait_claim "$code" RESERVED
curl -sS -o /dev/null -w "  v001 pays in test mode: %{http_code}\n" -X POST "$console/api/claims/$code/pay"
wait_claim "$code" CONFIRMED
echo "  v001: $(claim_status "$code")"
code=$(claim_of v000 RESERVED)
wait_claim "$code" EXPIRED
curl -sS -o /dev/null -w "  v000 pays late in test mode (the cap is gone): %{http_code}\n" -X POST "$console/api/claims/$code/pay"
wait_claim "$code" REFUND_DUE
echo "  v000: $(claim_status "$code")"
code=$(claim_of v002 RESERVED)
order=$("$bin/dropline" tail "${DROPLINE_TOPIC_PREFIX}reservations" --from-beginning --key "$drop" --idle-exit 3 2>/dev/null |
  python3 -c 'import json,sys
found = [o["orderId"] for o in (json.loads(line).get("value", {}) for line in sys.stdin) if o.get("claimCode") == sys.argv[1]]
print(found[0] if found else "")' "$code")
wait_claim "$code" EXPIRED
echo "  v002 pays late through Stripe (found by metadata.order_id; mugs are left): $(stripe_paid "" 1200 "$order")"
wait_claim "$code" CONFIRMED
echo "  v002: $(claim_status "$code")"

say "5c. What the bot said in chat (ingest's /metrics and the chat-replies topic)"
curl -sS http://127.0.0.1:9103/metrics | grep -E '^dropline_ingest_(replies_sent_total|reply_answers_total)' | sed 's/^/  /'
"$bin/dropline" tail "${DROPLINE_TOPIC_PREFIX}chat-replies" --from-beginning --idle-exit 3 2>/dev/null | python3 -c '
import json, sys
delays, n, buyers = [], 0, 0
for line in sys.stdin:
    r = json.loads(line).get("value", {}); n += 1; buyers += len(r.get("orderIds", []))
    delays += [int(r["sentAtMs"]) - int(d) for d in r.get("decidedAtMs", [])]
delays.sort()
q = lambda p: delays[min(len(delays) - 1, int(p * len(delays)))] if delays else 0
print("  %d messages sent, answering %d outcomes; reply delay (decided -> sent) p50 %d ms, p99 %d ms" % (n, buyers, q(0.5), q(0.99)))'
curl -sS "$console/metrics" | grep -E '^dropline_console_payments_total' | sed 's/^/  /'

say "6. Clips the clipper asked for by itself (the opening, sell-outs, the rush; moments close together share one clip) and a producer's marker"
api "$producer" "$console/api/drops/$drop/markers" -d "{\"at_ms\": $((now + 5000)), \"note\": \"the creator holds up the hoodie\"}" >/dev/null
# Wait until the clipper has been quiet for 10 s (bounded: 2 minutes).
last=-1 quiet=0
for _ in $(seq 120); do
  count=$(find "$DROPLINE_CLIPS/$drop" -name '*.mp4' ! -name '*.vertical.mp4' 2>/dev/null | wc -l)
  if [ "$count" = "$last" ]; then quiet=$((quiet + 1)); else quiet=0 last=$count; fi
  [ "$quiet" -ge 10 ] && [ "$count" -gt 0 ] && break
  sleep 1
done
for clip in "$DROPLINE_CLIPS/$drop"/*.mp4; do
  [ -f "$clip" ] || continue
  length=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$clip")
  printf '  %-78s %5.1f s  %s\n' "$clip" "$length" "$(du -h "$clip" | cut -f1)"
done
api "$editor" "$console/api/clips?drop_id=$drop" | python3 -c 'import json,sys; [print("  %-45s %-11s %s" % (c["clip_id"], c["reason"], c["status"] if c["status"] == "ready" else "failed: " + c["failure"])) for c in json.load(sys.stdin)]'

say "7. The drop's report, computed from the event log (console API; the page: /report/$drop)"
api "$producer" "$console/api/drops/$drop/report" | python3 -c '
import json, sys
r = json.load(sys.stdin)
money = lambda c: "%.2f" % (c / 100)
for s in r["skus"]:
    after = s["sold_out_after_ms"]
    print("  %-12s %4d on sale  %4d paid  %4d held  %4d left  sell-through %5.1f %%  sold out %s" % (s["sku"], s["total"], s["confirmed"], s["reserved"], s["left"], 100 * s["sell_through"], "in %.1f s" % (after / 1000) if after is not None else "no"))
print("  funnel            lines seen   orders  reserved  waitlisted  promoted   paid  expired  revenue")
for f in r["funnel"]:
    print("  %-16s %11d %8d %9d %11d %9d %6d %8d %8s" % (f["channel"], f["lines_seen"], f["orders"], f["reserved"], f["waitlisted"], f["promoted"], f["paid"], f["expired"], money(f["revenue_cents"])))
b = r["buyers"]
print("  buyers: %d unique, %d paying, %d repeat" % (b["unique"], b["paying"], b["repeat"]))
for p in r["partners"]:
    print("  partner %-16s %5.1f %%  %4d orders  %4d paid  payout %s" % (p["channel"], p["share_bp"] / 100, p["orders"], p["paid"], money(p["payout_cents"])))
print("  revenue %s = payouts %s" % (money(r["revenue_cents"]), money(sum(p["payout_cents"] for p in r["partners"]))))
print("  moments: " + ", ".join(m["label"] + (" (clip)" if m["clip_id"] else "") for m in r["moments"]))'

say "8. The stack"
deploy/local/stack.sh status
cat <<TXT

Clips are in $DROPLINE_CLIPS. The console of this run:
  studio (creator):      $console/studio?token=$creator&drop=$drop
  report (producer):     $console/report/$drop?token=$producer   (prints to a clean A4 PDF)
  live view (producer):  $console/?token=$producer&drop=$drop
  stream overlay (OBS):  $console/overlay/$drop   (browser source, 1920×1080 or 1080×1920)
  clip gallery (editor): $console/gallery?token=$editor&drop=$drop
  API (creator token):   curl -H "Authorization: Bearer $creator" $console/api/drops
  OpenAPI document:      $console/openapi.json
Watch this run's topics yourself:
  DROPLINE_TOPIC_PREFIX=$DROPLINE_TOPIC_PREFIX $bin/dropline tail reservations --from-beginning --brief
TXT
if [ "${DEMO_SERVE:-0}" = 1 ]; then
  say "Serving until Ctrl-C (DEMO_SERVE=1)"
  wait
else
  echo "(everything stops now; DEMO_SERVE=1 make demo keeps it up to click around)"
fi
