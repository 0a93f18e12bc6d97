#!/usr/bin/env bash
# The console's HTTP API under schemathesis: generated requests for every operation of
# /openapi.json with real tokens, against a console of its own (own topic prefix, own state) on
# 127.0.0.1. Checks: no 5xx, status codes and content types as documented, responses matching
# the schema, and every 4xx a JSON {"error": "…"} naming the problem (hooks.py).
#   SCHEMATHESIS_EXAMPLES  test cases per operation (default 25; `make test` uses 25)
#   SCHEMATHESIS_SEED      random seed (default: a fixed one, so a run can be repeated)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
VERSION=4.32.5
STATE=${XDG_STATE_HOME:-$HOME/.local/state}/dropline
VENV=$STATE/venv-schemathesis
EXAMPLES=${SCHEMATHESIS_EXAMPLES:-25}
SEED=${SCHEMATHESIS_SEED:-20261201}

if ! "$VENV/bin/st" --version 2>/dev/null | grep -q "$VERSION"; then
  echo "schemathesis: installing $VERSION into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "schemathesis==$VERSION"
fi
cargo build --quiet -p dropline-console -p dropline-cli

run=$(mktemp -d /tmp/dropline-schemathesis.XXXXXX)
console_pid=
cleanup() {
  [ -n "$console_pid" ] && kill "$console_pid" 2>/dev/null && wait "$console_pid" 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }
creator=$(secret) producer=$(secret)
export DROPLINE_TOPIC_PREFIX="schemathesis-$(date +%s)-$$."
export DROPLINE_HTTP="127.0.0.1:$port"
export DROPLINE_ADMIN="127.0.0.1:0"
export DROPLINE_CONSOLE_TOKENS="creator:$creator,producer:$producer,editor:$(secret)"
export DROPLINE_CONSOLE_STATE="$run/state"
export DROPLINE_CONSOLE_WRITE_RATE=10000
export DROPLINE_CLIPS="$run/clips" DROPLINE_RECORDINGS="$run/recordings"
export DROPLINE_LOG=${DROPLINE_LOG:-warn}
mkdir -p "$run/clips" "$run/recordings"
bin=${CARGO_TARGET_DIR:-target}/debug
"$bin/dropline" create-topics --partitions 1 --wait 30 >/dev/null
"$bin/dropline-console" >"$run/console.log" 2>&1 &
console_pid=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  kill -0 "$console_pid" 2>/dev/null || { cat "$run/console.log" >&2; exit 1; }
  sleep 0.2
done

# Streams (SSE) never end by design: they are left to the browser tests and the bad-input suite.
# Once as the creator (drops, catalogs) and once as the producer (holds, markers).
status=0
for token in "$creator" "$producer"; do
  SCHEMATHESIS_HOOKS=hooks PYTHONPATH=load-tests/api "$VENV/bin/st" run \
    "http://127.0.0.1:$port/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,client_errors_name_the_problem \
    --exclude-path-regex '/(stream|events|live)$' \
    --max-examples "$EXAMPLES" --seed "$SEED" \
    --request-timeout 10 --workers 1 \
    --phases examples,coverage,fuzzing \
    --generation-database none --no-color \
    --report-dir "$run/report" || status=$?
done
if grep -q "panicked" "$run/console.log"; then
  echo "schemathesis: the console panicked:" >&2
  grep -A3 panicked "$run/console.log" >&2
  status=1
fi
exit "$status"
