#!/usr/bin/env bash
# Dropline's local stack on one Debian machine: Redis and a Kafka-protocol broker (tansu) on loopback.
#
#   stack.sh up      install what is missing, start what does not run, wait, create the topics
#   stack.sh down    stop only what `up` started
#   stack.sh status  say what runs where
#
# Idempotent: a Redis or broker already answering on its port is reused (and never stopped by `down`).
# State (broker data, PID files, logs) lives outside the checkout, in $DROPLINE_STATE
# (default ~/.local/state/dropline), so a fresh clone reuses the broker binary and data.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${DROPLINE_STATE:-${XDG_STATE_HOME:-$HOME/.local/state}/dropline}
TANSU_VERSION=0.6.0
PARTITIONS=${DROPLINE_PARTITIONS:-4}

# Redis and the broker are started only on loopback: derive host:port from the service settings.
redis_url=${DROPLINE_REDIS:-redis://127.0.0.1:6379}
redis_hostport=${redis_url#*://}
redis_hostport=${redis_hostport#*@}
redis_hostport=${redis_hostport%%/*}
REDIS_HOST=${redis_hostport%:*}
REDIS_PORT=${redis_hostport##*:}
kafka=${DROPLINE_KAFKA:-127.0.0.1:9092}
kafka=${kafka%%,*}
kafka=${kafka#tcp://}
KAFKA_HOST=${kafka%:*}
KAFKA_PORT=${kafka##*:}

APT_PACKAGES=(
  redis-server redis-tools
  ffmpeg libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
  libavfilter-dev libavdevice-dev
  clang libclang-dev pkg-config cmake g++ make
  # librdkafka 2.12's rdkafka_conf.c includes <curl/curl.h> even when built without curl.
  libcurl4-openssl-dev
  # librdkafka with SSL and SASL (rdkafka's `ssl` feature links OpenSSL); the TLS tests make
  # their certificates with the openssl CLI.
  libssl-dev openssl socat
  # A real IRC server for the ingest tests (each test starts its own on a free loopback port).
  ngircd
  # The console's browser test (headless Chromium through chromedriver) and promtool.
  chromium chromium-driver prometheus
  # schemathesis runs in a venv of its own (load-tests/api/schemathesis.sh); curl waits for the console.
  python3-venv curl
)

say() { printf '\033[1m[stack]\033[0m %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "need root to run: $*"
  fi
}

is_loopback() { case "$1" in 127.*|localhost|::1|\[::1\]) return 0 ;; *) return 1 ;; esac; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

redis_answers() { [ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get install -y --no-install-recommends "${missing[@]}" >"$STATE/apt.log" 2>&1 || {
      as_root apt-get update >>"$STATE/apt.log" 2>&1
      as_root apt-get install -y --no-install-recommends "${missing[@]}" >>"$STATE/apt.log" 2>&1 ||
        die "apt-get install failed; see $STATE/apt.log"
    }
  fi
}

tansu_bin() {
  local bin
  bin=$(command -v tansu 2>/dev/null || true)
  [ -n "$bin" ] || bin="${CARGO_HOME:-$HOME/.cargo}/bin/tansu"
  printf '%s' "$bin"
}

install_tansu() {
  local bin
  bin=$(tansu_bin)
  if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    return
  fi
  say "building the broker: cargo install tansu $TANSU_VERSION (once per machine; ~20 min on 2 cores)"
  say "  log: $STATE/tansu-build.log"
  cargo install tansu --version "$TANSU_VERSION" --locked --features libsql >"$STATE/tansu-build.log" 2>&1 ||
    die "building tansu failed; see $STATE/tansu-build.log"
}

start_redis() {
  if redis_answers; then
    say "redis: reusing the one answering on $REDIS_HOST:$REDIS_PORT"
    return
  fi
  is_loopback "$REDIS_HOST" || die "redis at $REDIS_HOST:$REDIS_PORT does not answer, and only a loopback one can be started here"
  mkdir -p "$STATE/redis"
  # AOF with fsync every second: the reservation state survives a restart, losing at most ~1 s.
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" \
    --dir "$STATE/redis" --pidfile "$STATE/redis.pid" --logfile "$STATE/redis.log" \
    --appendonly yes --appendfsync everysec --save "" >/dev/null
  for _ in $(seq 100); do redis_answers && break; sleep 0.1; done
  redis_answers || die "redis did not start; see $STATE/redis.log"
  say "redis: started on $REDIS_HOST:$REDIS_PORT (pid $(cat "$STATE/redis.pid"), AOF everysec)"
}

start_broker() {
  if port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
    say "broker: reusing the one answering on $KAFKA_HOST:$KAFKA_PORT"
    return
  fi
  is_loopback "$KAFKA_HOST" || die "broker at $KAFKA_HOST:$KAFKA_PORT does not answer, and only a loopback one can be started here"
  mkdir -p "$STATE/tansu"
  local url="tcp://$KAFKA_HOST:$KAFKA_PORT"
  # The sqlite path is relative to the working directory: run from the state directory.
  (
    cd "$STATE/tansu"
    setsid nohup "$(tansu_bin)" broker --listener-url "$url" --advertised-listener-url "$url" \
      --storage-engine "sqlite://tansu.db" >"$STATE/tansu.log" 2>&1 </dev/null &
    echo $! >"$STATE/tansu.pid"
  )
  for _ in $(seq 150); do port_open "$KAFKA_HOST" "$KAFKA_PORT" && break; sleep 0.1; done
  port_open "$KAFKA_HOST" "$KAFKA_PORT" || die "broker did not start; see $STATE/tansu.log"
  say "broker: started tansu on $KAFKA_HOST:$KAFKA_PORT (pid $(cat "$STATE/tansu.pid"), data $STATE/tansu)"
}

dropline() { (cd "$ROOT" && cargo run --quiet --bin dropline -- "$@"); }

up() {
  mkdir -p "$STATE"
  install_packages
  install_tansu
  start_redis
  start_broker
  say "topics (partitions: $PARTITIONS):"
  dropline create-topics --partitions "$PARTITIONS" --wait 30 | sed 's/^/    /' >&2
  say "up: redis $REDIS_HOST:$REDIS_PORT, broker $KAFKA_HOST:$KAFKA_PORT"
}

stop_ours() {
  local name=$1 pidfile=$2
  if ! pid_alive "$pidfile"; then
    rm -f "$pidfile"
    return
  fi
  local pid
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name (pid $pid) ignored SIGTERM for 10 s: killing"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  say "$name: stopped (pid $pid)"
}

down() {
  stop_ours broker "$STATE/tansu.pid"
  stop_ours redis "$STATE/redis.pid"
  say "down: what this script started is stopped; anything it reused is left running"
}

status() {
  if redis_answers; then
    if pid_alive "$STATE/redis.pid"; then who="started by the stack, pid $(cat "$STATE/redis.pid")"; else who="not ours"; fi
    echo "redis   $REDIS_HOST:$REDIS_PORT  up ($who)"
  else
    echo "redis   $REDIS_HOST:$REDIS_PORT  down"
  fi
  if port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
    if pid_alive "$STATE/tansu.pid"; then who="tansu started by the stack, pid $(cat "$STATE/tansu.pid")"; else who="not ours"; fi
    echo "broker  $KAFKA_HOST:$KAFKA_PORT  up ($who)"
    # Tests, demos and load runs make their own prefixed topics; show the deployment's (typed) ones.
    dropline topics 2>/dev/null | awk 'NR == 1 || $NF != "-"' | sed 's/^/        /' || true
  else
    echo "broker  $KAFKA_HOST:$KAFKA_PORT  down"
  fi
  echo "state   $STATE"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
