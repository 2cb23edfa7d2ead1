# rds2bq: `make demo` plays a whole day locally; `make test` runs every test. Both set themselves up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo stack docs-samples test test-unit lint typecheck bench check-prereqs clean

include mk/infra.mk

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || \
	  { echo "Python 3.11+ is required (found: $$($(PYTHON) --version 2>&1))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet "setuptools>=70.1"
	$(PY) -m pip install --quiet --no-deps --no-build-isolation --editable .
	@touch $(STAMP)

check-prereqs:
	@bash scripts/check-prereqs.sh

test: check-prereqs $(STAMP) infra-tools lint typecheck
	$(PY) -m pytest

# No wire peers needed (Cloud Build runs this before deploying).
test-unit: $(STAMP)
	$(PY) -m pytest tests/unit

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

demo: check-prereqs $(STAMP)
	$(PY) -m devstack.demo

# Benchmarks: each figure against a baseline measured in the same run (about 3 minutes).
bench: check-prereqs $(STAMP)
	$(PY) -m bench

stack: check-prereqs $(STAMP)
	$(PY) -m devstack.stack

# The sample output in docs/operations.md and the README, taken on the local stack (about 1 min).
docs-samples: check-prereqs $(STAMP)
	$(PY) -m devstack.samples

clean: infra-clean
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
