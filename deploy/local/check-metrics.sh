#!/usr/bin/env bash
# Starts every Dropline service against the local stack (its own topic prefix), fetches its
# /metrics and has `promtool check metrics` (Debian package prometheus) judge the exposition.
# Part of `make test`; bounded: each service gets 30 s to answer, then everything is stopped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

say() { printf '\033[1m[metrics]\033[0m %s\n' "$*" >&2; }
command -v promtool >/dev/null || { say "promtool missing: run make stack-up"; exit 1; }
cargo build -q --workspace --bins
bin=${CARGO_TARGET_DIR:-target}/debug

export DROPLINE_TOPIC_PREFIX="check-metrics-$(date +%s%N)."
export DROPLINE_LOG=warn
"$bin"/dropline create-topics >/dev/null
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# check <service> <url> <command…>: start it, wait for /metrics, lint the exposition.
check() {
  local name=$1 url=$2
  shift 2
  "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 300); do
    if curl -sf "$url" -o "$work/$name.metrics"; then
      if promtool check metrics <"$work/$name.metrics"; then
        say "$name: $(grep -c '^[a-z]' "$work/$name.metrics") samples, promtool: ok"
        return 0
      fi
      say "$name: promtool refused its /metrics"
      exit 1
    fi
    sleep 0.1
  done
  say "$name: no /metrics within 30 s; its log:"
  cat "$work/$name.log" >&2
  exit 1
}

p=$(free_port); check matcher "http://127.0.0.1:$p/metrics" \
  env DROPLINE_ADMIN="127.0.0.1:$p" DROPLINE_MATCHER_GROUP="check-$p" "$bin"/dropline-matcher
p=$(free_port); check clipper "http://127.0.0.1:$p/metrics" \
  env DROPLINE_ADMIN="127.0.0.1:$p" DROPLINE_CLIPPER_GROUP="check-$p" DROPLINE_CLIPS="$work/clips" \
  DROPLINE_RECORDINGS="$work" "$bin"/dropline-clipper
p=$(free_port); check ingest "http://127.0.0.1:$p/metrics" \
  env DROPLINE_ADMIN="127.0.0.1:$p" DROPLINE_INGEST_HTTP="127.0.0.1:$(free_port)" "$bin"/dropline-ingest
p=$(free_port); check console "http://127.0.0.1:$p/metrics" \
  env DROPLINE_HTTP="127.0.0.1:$p" DROPLINE_CONSOLE_TOKENS="editor:check-metrics-token-0123" "$bin"/dropline-console
say "every service's /metrics passes promtool"
