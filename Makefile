# One command for each job; CI (.ci/run) calls the same targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python

.PHONY: install run sim prometheus check lint fix test cov bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $@

## Start the simulator and the edge together with demo keys (Ctrl-C stops both).
run: install
	$(BIN)/iotedge run

## Serve the device API simulator alone.
sim: install
	$(BIN)/iotedge sim

## Prometheus without Docker, scraping an edge on 127.0.0.1:8001 (UI: http://127.0.0.1:9090).
PROMETHEUS_DATA ?= .prometheus-data
prometheus:
	@command -v prometheus >/dev/null || { \
	  echo "prometheus not on PATH (Debian: apt-get install prometheus)" >&2; exit 1; }
	prometheus --config.file=deploy/prometheus/prometheus.local.yml \
	  --storage.tsdb.path=$(PROMETHEUS_DATA) --web.listen-address=127.0.0.1:9090

## Read-only checks: formatting, lint, types.
check: install
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

lint: check

## Apply the formatter and the safe lint fixes.
fix: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

## The test suite (real processes on 127.0.0.1).
test: install
	$(PY) -m pytest

bench: install
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache $(PROMETHEUS_DATA)
