# profilesync — `make help` lists the targets. CI runs `make test` as it is.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,server,postgres,ducklake,clickhouse
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv sysdeps demo test test-fast lint format bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-10s %s\n", $$1, $$2}'

$(BIN)/profilesync: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	@touch $@

venv: $(BIN)/profilesync ## Create .venv and install profilesync with its test extras

sysdeps: ## Install the Debian packages the tests use (PostgreSQL + wal2json, Chromium), if missing
	@bash scripts/sysdeps.sh

demo: venv ## Build a local Delta warehouse, sync it twice and show what changed
	$(BIN)/profilesync demo

test: venv sysdeps ## Run the whole test suite (starts its own PostgreSQL)
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: venv ## Tests without the slow, Postgres and browser ones
	$(BIN)/pytest -m "not slow and not postgres and not browser" $(PYTEST_ARGS)

lint: venv ## ruff check, ruff format --check, mypy
	$(BIN)/ruff check profilesync tests bench
	$(BIN)/ruff format --check profilesync tests bench
	$(BIN)/mypy profilesync

format: venv ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix profilesync tests bench
	$(BIN)/ruff format profilesync tests bench

bench: venv sysdeps ## Benchmarks against baselines run alongside (sync per source, peers incl. dlt, segmentation, ingestion)
	$(BIN)/pip install --quiet -e ".[$(EXTRAS),bench]"
	$(BIN)/python bench/peers.py
	$(BIN)/python bench/sync_throughput.py
	$(BIN)/python bench/diff_throughput.py
	$(BIN)/python bench/postgres_throughput.py
	$(BIN)/python bench/segmentation.py
	$(BIN)/python bench/analyses.py
	$(BIN)/python bench/ingest.py

clean: ## Remove the venv, caches and demo output
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache profilesync-demo test-artifacts
