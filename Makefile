# `make demo` and `make test` work on a fresh machine: they create .venv from uv.lock.
SHELL := /bin/bash
VENV := .venv
UV := $(shell command -v uv 2>/dev/null || echo .uv/bin/uv)

.PHONY: setup demo test test-fast clean

$(UV):
	python3 -m venv .uv
	.uv/bin/pip install --quiet uv

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --compile-bytecode
	@touch $@

setup: $(VENV)/.synced

demo: setup
	$(VENV)/bin/keel demo

test: setup
	$(VENV)/bin/pytest

test-fast: setup
	$(VENV)/bin/pytest -m "not slow"

clean:
	rm -rf $(VENV) .uv examples/*/.keel .pytest_cache
