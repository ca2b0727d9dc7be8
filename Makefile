# One command for each job; CI (.ci/run) calls the same targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python

.PHONY: install install-dev diagram run sim check lint fix test cov bench clean env k8s-secrets deliverables-check lock prometheus docs docs-examples assets screenshots

## What running needs only (make run, make sim).
install: $(VENV)/.installed

## Plus the tools of the checks and the tests (the suite also covers bench/, hence its extras).
install-dev: $(VENV)/.installed-dev

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $@ $(VENV)/.installed

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
check: install-dev
	$(BIN)/ruff format --check src tests bench tools
	$(BIN)/ruff check src tests bench tools
	$(BIN)/mypy

lint: check

## Apply the formatter and the safe lint fixes.
fix: install-dev
	$(BIN)/ruff format src tests bench tools
	$(BIN)/ruff check --fix src tests bench tools

## The test suite (real processes on 127.0.0.1).
test: install-dev
	$(PY) -m pytest -n 3 --dist loadfile --no-loadscope-reorder

bench: install-dev
	$(PY) bench/run.py

## Regenerate docs/api.md, docs/configuration.md, the module map of docs/architecture.md and the picture.
docs: install-dev diagram
	$(PY) -m tools.docs_gen

## Render docs/img/overview.svg (the devices -> edge -> cloud picture) from docs/img/overview.json.
diagram:
	$(PYTHON) -m tools.diagram

## Re-run the docs' runnable examples against a fresh `iotedge run` and refresh their shown output.
docs-examples: install-dev
	$(PY) -m tools.docs_gen examples

## Refresh the vendored front-end files (uPlot; axe-core for tests) from the npm registry, with their manifests.
assets: install
	$(PY) tools/vendor_assets.py

## Regenerate docs/images/console-*.png from a seeded simulator and edge, in headless chromium.
screenshots: install-dev
	$(PY) tools/console_screenshots.py

# Copies an example settings file, replacing each '=change-me' by a fresh random value.
define FILL_PLACEHOLDERS
import pathlib, re, secrets, sys
src, dst = map(pathlib.Path, sys.argv[1:3])
if dst.exists():
    sys.exit(f"{dst} exists; not overwriting it")
text = re.sub(r"(?<==)change-me(?=[,\s]|$$)", lambda _: secrets.token_urlsafe(32), src.read_text(), flags=re.M)
dst.write_text(text)
dst.chmod(0o600)
print(f"wrote {dst} with fresh random keys and passwords")
endef
export FILL_PLACEHOLDERS

## Write .env for compose.yaml from .env.example with random keys and password (once).
env:
	@$(PYTHON) -c "$$FILL_PLACEHOLDERS" .env.example .env

## Write deploy/k8s/secrets.env and deploy/k8s-scale/postgres.env from their examples with random values (once each).
k8s-secrets:
	@for dst in deploy/k8s/secrets.env deploy/k8s-scale/postgres.env; do \
		if [ -e "$$dst" ]; then echo "$$dst exists; not overwriting it"; \
		else $(PYTHON) -c "$$FILL_PLACEHOLDERS" "$$dst.example" "$$dst" || exit 1; fi; \
	done

## Static checks of the Dockerfile, compose.yaml, deploy/k8s and deploy/prometheus (also in make test).
deliverables-check: install-dev
	$(PY) -m pytest tests/delivery

## Re-pin the image's runtime dependencies (deploy/docker/requirements.txt) from pyproject.toml.
lock:
	rm -rf $(VENV)-lock
	$(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/pip install --quiet .
	{ sed -n '1,2p' deploy/docker/requirements.txt; $(VENV)-lock/bin/pip freeze --exclude iotedge; } \
		> deploy/docker/requirements.txt.new
	mv deploy/docker/requirements.txt.new deploy/docker/requirements.txt
	rm -rf $(VENV)-lock

clean:
	rm -rf $(VENV) $(VENV)-lock .mypy_cache .ruff_cache .pytest_cache
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache $(PROMETHEUS_DATA)
