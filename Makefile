# Ailurus developer entry points. `make test` works on a fresh clone with nothing installed.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
DATA_DIR ?= ./data
PYTEST_ARGS ?=

.PHONY: run test lint fmt venv deps clients soak bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Test-only system tools: kcat (librdkafka) and tmux (terminal UX checks) via apt,
# kafkajs via npm.
clients:
	@if ! command -v kcat >/dev/null 2>&1 || ! command -v tmux >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq kcat tmux >/dev/null; \
	fi
	@# (re)install when node_modules is missing or older than the lock file
	@if [ ! -f tests/js/node_modules/.package-lock.json ] || [ tests/js/package-lock.json -nt tests/js/node_modules/.package-lock.json ]; then \
	  cd tests/js && npm ci --no-audit --no-fund --silent; \
	fi

deps: venv clients

run: venv
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
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

soak: deps
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

bench: venv
	$(PIP) install -q -e '.[test,bench]'
	$(PY) bench/codec_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis
