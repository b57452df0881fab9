# Homa developer commands. `make run` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
BUF := tools/node_modules/.bin/buf
STAMP := $(VENV)/.installed
NODE_STAMP := tools/node_modules/.installed
TS_STAMP := clients/typescript/node_modules/.installed
SRC := server clients/python/homa_client tests bench scripts
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help setup generate check-generated fmt lint typecheck test check run bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock requirements-nodeps.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

$(NODE_STAMP): tools/package.json tools/package-lock.json
	cd tools && npm install --silent --no-audit --no-fund
	@touch $@

$(TS_STAMP): clients/typescript/package.json
	cd clients/typescript && npm install --silent --no-audit --no-fund
	@touch $@

setup: $(STAMP) $(NODE_STAMP) ## Create .venv and install pinned Python and Node tools

generate: $(STAMP) $(NODE_STAMP) ## Regenerate protobuf/gRPC code from protos/ (Python and TypeScript)
	$(PY) scripts/generate.py
	$(BUF) generate

check-generated: $(STAMP) $(NODE_STAMP) ## Fail when generated code differs from protos/
	$(PY) scripts/check_generated.py

fmt: $(STAMP) $(NODE_STAMP) ## Format Python and protos
	$(VENV)/bin/ruff format $(SRC)
	$(VENV)/bin/ruff check --fix $(SRC)
	$(BUF) format -w

lint: $(STAMP) $(NODE_STAMP) ## ruff and buf lint
	$(VENV)/bin/ruff check $(SRC)
	$(VENV)/bin/ruff format --check $(SRC)
	$(BUF) lint
	$(BUF) format --diff --exit-code

typecheck: $(STAMP) $(TS_STAMP) ## mypy --strict on the server and client; tsc --strict on the TypeScript stubs
	$(VENV)/bin/mypy server/homa_server clients/python/homa_client
	cd clients/typescript && node_modules/.bin/tsc -p tsconfig.json

test: $(STAMP) ## Run the whole test suite
	$(PY) -m pytest $(PYTEST_ARGS)

check: lint typecheck check-generated ## Everything static: lint, types, generated-code drift

run: $(STAMP) ## Start the server on the embedded defaults (localhost:50051)
	$(VENV)/bin/homa serve

bench: $(STAMP) ## Load benchmark against a mock upstream (see bench/README.md)
	$(PY) -m bench.run

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) tools/node_modules .pytest_cache .mypy_cache .ruff_cache
