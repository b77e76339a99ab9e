# Two commands matter: `make demo` and `make test` (README). Both set up .venv on first use
# and skip the installs when nothing changed (stamp files inside .venv).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0
PYTEST_ARGS ?=

.PHONY: demo test lint clean-venv

# A host whose Python already has torch (a CUDA build on a GPU host) keeps it: the venv
# then sees the system site-packages. Otherwise torch==2.13.0, a CPU build, goes in first,
# so that installing the project never pulls a multi-GB CUDA build.
$(BIN)/python:
	@if $(PYTHON) -c 'import torch' 2>/dev/null; then \
	  echo "make: using the torch of $(PYTHON) ($$($(PYTHON) -c 'import torch; print(torch.__version__)'))"; \
	  $(PYTHON) -m venv --system-site-packages $(VENV); \
	else \
	  $(PYTHON) -m venv $(VENV); \
	fi

$(VENV)/.torch: | $(BIN)/python
	@$(BIN)/python -c 'import torch' 2>/dev/null || $(BIN)/pip install "torch==$(TORCH_VERSION)"
	@touch $@

$(VENV)/.runtime: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install -e .
	@touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install -e '.[dev]'
	@touch $@ $(VENV)/.runtime

demo: $(VENV)/.runtime
	$(BIN)/lungpath demo

test: $(VENV)/.dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

clean-venv:
	rm -rf $(VENV)
