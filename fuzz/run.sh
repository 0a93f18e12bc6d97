#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (FUZZ_SECONDS each, default 60; `make test` runs a
# short pass). The kept corpora (fuzz/corpus/<target>) seed each run; what a run discovers goes to
# a scratch directory, so the tree stays clean (`fuzz/run.sh --keep` merges it into the corpora,
# minimised). A crash fails the run and leaves its input in target/fuzz/artifacts/<target>/.
#   FUZZ_TARGETS  which targets (default: all of fuzz/Cargo.toml)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
SECONDS_EACH=${FUZZ_SECONDS:-60}
CARGO_FUZZ_VERSION=0.13.2
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/../target}/fuzz
keep=false
[ "${1:-}" = "--keep" ] && keep=true

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
  cargo install --quiet --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
# libFuzzer's instrumentation flags are unstable rustc options: the stable toolchain takes them
# when told it is building itself (there is no nightly toolchain to be had here).
export RUSTC_BOOTSTRAP=1
targets=${FUZZ_TARGETS:-$(cargo fuzz list)}

scratch=$(mktemp -d /tmp/dropline-fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
failed=()
printf '%-16s %10s %8s %s\n' target runs corpus result
for t in $targets; do
  mkdir -p "$scratch/$t" "$TARGET_DIR/artifacts/$t"
  log="$scratch/$t.log"
  if cargo fuzz run --target-dir "$TARGET_DIR" "$t" "$scratch/$t" "corpus/$t" -- \
      -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=10 \
      -artifact_prefix="$TARGET_DIR/artifacts/$t/" >"$log" 2>&1; then
    result=ok
  else
    result="CRASH: $(grep -m1 -E 'panicked at|ERROR: libFuzzer' "$log" || echo "exit status $?")"
    failed+=("$t")
  fi
  runs=$(grep -oE '^Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' || echo -)
  printf '%-16s %10s %8s %s\n' "$t" "$runs" "$(ls "corpus/$t" | wc -l)" "$result"
  if [ "$result" != ok ]; then
    grep -A12 -m1 'panicked at\|ERROR: libFuzzer' "$log" >&2 || tail -20 "$log" >&2
  fi
  if $keep; then
    cargo fuzz cmin --target-dir "$TARGET_DIR" "$t" "corpus/$t" >/dev/null 2>&1 || true
    cp -n "$scratch/$t"/* "corpus/$t/" 2>/dev/null || true
    cargo fuzz cmin --target-dir "$TARGET_DIR" "$t" "corpus/$t" >/dev/null 2>&1
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in ${failed[*]} (inputs in $TARGET_DIR/artifacts/)" >&2
  exit 1
fi
