# The two commands a newcomer runs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck fmt bench bench-compare reliability docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# setup.py and the C file: the native part is built (in place) by the install
$(STAMP): pyproject.toml setup.py src/modelvault/_fastscan.c | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[sklearn]'
	touch $@

$(DEVSTAMP): pyproject.toml setup.py src/modelvault/_fastscan.c | $(BIN)/python
	./tests/ensure_build_deps.sh
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@ $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(DEVSTAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	./tests/ensure_postgres.sh
	$(BIN)/python -m pytest -n 2

fmt: $(DEVSTAMP)
	$(BIN)/ruff format src tests bench examples
	$(BIN)/ruff check --fix src tests bench examples

docs: $(DEVSTAMP)
	$(BIN)/python -m modelvault.cli.docgen > docs/cli-reference.md
	$(BIN)/python -m modelvault.server.openapi > docs/openapi.json

bench: $(DEVSTAMP)
	$(BIN)/python -m bench

bench-compare: $(DEVSTAMP)
	$(BIN)/python -m bench.compare

# The reliability suite at full scale (CI runs it at a bounded scale inside `make test`).
reliability: $(DEVSTAMP)
	./tests/ensure_postgres.sh
	MODELVAULT_RELIABILITY_SCALE=full $(BIN)/python -m pytest tests/reliability -n 2

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
