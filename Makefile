# wrp — `make help` lists the targets. Every target creates .venv and installs wrp into it when
# missing (or when pyproject.toml changed), so a fresh clone needs nothing but Python >= 3.11.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.wrp-installed
PIP := $(PY) -m pip --disable-pip-version-check
PROFILE ?= demo
NBVAL_CELL_TIMEOUT ?= 900
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install demo test lab clean

help: ## list the targets with one line each
	@echo "wrp — Warp-Refine Propagation. Targets:"
	@awk 'BEGIN {FS = ":.*## "} /^[a-z]+:.*## / {printf "  make %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing wrp and its dependencies into $(VENV) (a few minutes the first time)"
	$(PIP) install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install wrp with its dev tools (other targets do this when needed)

demo: $(STAMP) ## run every notebook at profile demo, streaming their progress; executed copies → runs/demo/notebooks, figures → figures/
	$(PY) -m wrp reproduce --profile $(PROFILE) --log-output

test: $(STAMP) ## ruff, the import-layer contract, pytest (unit + integration) and nbval over notebooks/ at profile smoke
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	WRP_PROFILE=smoke $(PY) -m pytest tests notebooks --nbval-lax --nbval-current-env \
		--nbval-cell-timeout=$(NBVAL_CELL_TIMEOUT) --nbval-sanitize-with tests/nbval_sanitize.cfg \
		$(PYTEST_ARGS)

lab: $(STAMP) ## JupyterLab on the project's environment, opened at notebooks/
	$(VENV)/bin/jupyter lab notebooks

clean: ## remove runs/ (cached stages, executed notebooks, metrics); keeps .venv and figures/
	rm -rf runs
