# freet: every target runs the project's own set-up first (an idempotent venv with torch 2.11.0).
SHELL := /bin/bash
ENV := scripts/with-env
export CARGO_TERM_COLOR ?= never

.PHONY: setup build test demo lint fmt reliability architecture test-pretrained bench-pretrained
setup:
	bash scripts/setup.sh
build:
	$(ENV) cargo build --release
test:
	$(ENV) cargo test --release
demo: build
	$(ENV) target/release/freet demo
lint:
	$(ENV) cargo fmt --check
	$(ENV) cargo clippy --release --all-targets -- -D warnings
fmt:
	$(ENV) cargo fmt
reliability:
	$(ENV) cargo test --release --test reliability -- --ignored --nocapture --test-threads 1
architecture:
	$(ENV) cargo test --release --test architecture
test-pretrained:
	bash scripts/test-pretrained.sh
bench-pretrained:
	bash scripts/bench-pretrained.sh
