# Ailurus developer entry points. `make test` works on a fresh clone with nothing installed.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# the broker and its CLI only (what `make run` needs)
RUNTIME_STAMP := $(VENV)/.runtime-installed
# plus the test, lint and client toolchain (the `test` extra)
STAMP := $(VENV)/.installed
DATA_DIR ?= ./data
PYTEST_ARGS ?=
# `make test` spreads the test files over this many pytest processes (pytest-xdist;
# a file's tests stay together, so module-scoped brokers and clusters start once).
# Most tests wait on broker processes, clients and timers (sessions, leases), so
# three fit two cores.
TEST_WORKERS ?= 3
# System tools the tests drive (command names; apt packages in TOOL_PACKAGES):
# kcat (librdkafka), tmux (terminal UX checks), etcd + etcdctl (cluster tests).
TOOLS := kcat tmux etcd etcdctl
TOOL_PACKAGES := kcat tmux etcd-server etcd-client

.PHONY: run test lint fmt venv runtime deps clients soak bench clean

$(RUNTIME_STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $(RUNTIME_STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test]'
	touch $(STAMP) $(RUNTIME_STAMP)

runtime: $(RUNTIME_STAMP)

venv: $(STAMP)

# Test-only system tools via apt (re-run whenever one of them is missing), kafkajs
# via npm.
clients:
	@missing=; for tool in $(TOOLS); do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (apt: $(TOOL_PACKAGES))"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(TOOL_PACKAGES) >/dev/null; \
	fi
	@# (re)install when node_modules is missing or older than the lock file
	@if [ ! -f tests/js/node_modules/.package-lock.json ] || [ tests/js/package-lock.json -nt tests/js/node_modules/.package-lock.json ]; then \
	  cd tests/js && npm ci --no-audit --no-fund --silent; \
	fi

deps: venv clients

run: runtime
	$(VENV)/bin/ailurus serve --data-dir $(DATA_DIR)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

fmt: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: deps lint
	$(PY) -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

soak: deps
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

bench: venv
	$(PIP) install -q -e '.[test,bench]'
	$(PY) bench/codec_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis
