# Dropline — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
STACK := deploy/local/stack.sh

.PHONY: help demo test fuzz api-fuzz bad-input lint stack-up stack-down stack-status build bench load bench-limits faults deploy-check

help:
	@echo "make demo          start the stack and run a live drop on this machine"
	@echo "make test          start the stack and run every test"
	@echo "make lint          rustfmt and clippy, warnings are errors"
	@echo "make fuzz          every fuzz target for FUZZ_SECONDS (default 60) each, seeded by fuzz/corpus"
	@echo "make bad-input     the bad-input suite: hostile HTTP and Kafka input, a table of case / expected / got"
	@echo "make api-fuzz      schemathesis against the console's /openapi.json (SCHEMATHESIS_EXAMPLES per operation)"
	@echo "make stack-up      install what is missing, start Redis + broker, create topics"
	@echo "make stack-down    stop what stack-up started"
	@echo "make stack-status  what runs where"
	@echo "make bench         criterion benchmarks"
	@echo "make bench-limits  the limits side by side (Redis, broker, matcher), a few minutes"
	@echo "make load          the quick load scenario (release build): report in target/load/"
	@echo "make faults        the fault suite: kill/restart matcher, Redis, broker under load, plain and split drops (~5 min)"
	@echo "make deploy-check  validate deploy/ (YAML, promtool rules and tests, dashboard/alerts/k8s vs the code)"

stack-up:
	@$(STACK) up

stack-down:
	@$(STACK) down

stack-status:
	@$(STACK) status

build: stack-up
	cargo build --workspace

test: stack-up
	cargo test --workspace
	deploy/local/check-metrics.sh
	deploy/check.sh
	cargo build --quiet --workspace --bins
	$${CARGO_TARGET_DIR:-target}/debug/dropline-load bad-input
	load-tests/api/schemathesis.sh
	FUZZ_SECONDS=$${FUZZ_SECONDS:-10} fuzz/run.sh

fuzz:
	fuzz/run.sh

bad-input: stack-up
	cargo build --quiet --workspace --bins
	$${CARGO_TARGET_DIR:-target}/debug/dropline-load bad-input

api-fuzz: stack-up
	load-tests/api/schemathesis.sh

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

demo: stack-up
	@deploy/local/demo.sh

bench: stack-up
	cargo bench -p dropline-benches

load: stack-up
	cargo build --release -p dropline-matcher -p dropline-load
	@mkdir -p target/load
	target/release/dropline-load run load-tests/scenarios/$${SCENARIO:-quick}.toml --report target/load/$${SCENARIO:-quick}.json

bench-limits: stack-up
	cargo build --release -p dropline-matcher -p dropline-load
	target/release/dropline-load limits

faults: stack-up
	cargo build --release -p dropline-matcher -p dropline-load
	target/release/dropline-load faults --scenario load-tests/scenarios/faults.toml
	target/release/dropline-load faults --scenario load-tests/scenarios/faults-split.toml

# No Docker or cluster needed: YAML, promtool, and deploy/ checked against the code.
deploy-check:
	deploy/check.sh
