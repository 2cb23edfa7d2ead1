# Infrastructure tooling, included by the main Makefile (`include mk/infra.mk`); also usable alone
# as `make -f mk/infra.mk infra-tools`.
#
# The tools live in venvs of their own, not in .venv: checkov pins its own boto3/botocore and
# other versions that conflict with moto and the functions' runtime pins, and python-hcl2 shares
# its import name (hcl2) with checkov's fork (bc-python-hcl2), so the two cannot share a venv
# either. Each venv is rebuilt only when its pinned version (this file) changes.

PYTHON ?= python3
CHECKOV_VERSION := 3.3.30
PYTHON_HCL2_VERSION := 8.1.4
CHECKOV_VENV := .venv-checkov
HCL_VENV := .venv-hcl
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)
HCL_STAMP := $(HCL_VENV)/.installed-$(PYTHON_HCL2_VERSION)

.PHONY: infra-tools infra-test infra-clean

infra-tools: $(CHECKOV_STAMP) $(HCL_STAMP)

$(CHECKOV_STAMP):
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION)
	@touch $@

$(HCL_STAMP):
	rm -rf $(HCL_VENV)
	$(PYTHON) -m venv $(HCL_VENV)
	$(HCL_VENV)/bin/python -m pip install --quiet --disable-pip-version-check python-hcl2==$(PYTHON_HCL2_VERSION)
	@touch $@

# The infrastructure tests alone (they also run under `make test`).
infra-test: infra-tools
	.venv/bin/python -m pytest tests/infra

infra-clean:
	rm -rf $(CHECKOV_VENV) $(HCL_VENV)
