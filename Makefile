# `make demo` and `make test` work on a fresh machine: they create .venv from uv.lock.
SHELL := /bin/bash
VENV := .venv
UV := $(shell command -v uv 2>/dev/null || echo .uv/bin/uv)

.PHONY: setup demo test test-fast lint clean

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

# Every check runs, even after one fails, so one pass shows all that needs fixing.
lint: setup
	@status=0; \
	echo "ruff check"; $(VENV)/bin/ruff check src tests benchmarks || status=1; \
	echo "ruff format --check"; $(VENV)/bin/ruff format --check --output-format concise src tests benchmarks || status=1; \
	echo "mypy"; $(VENV)/bin/mypy || status=1; \
	echo "lint-imports"; $(VENV)/bin/lint-imports || status=1; \
	exit $$status

clean:
	rm -rf $(VENV) .uv examples/*/.keel .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .grimp_cache
