# belong — the two set-up commands are `make run` and `make test` (see README.md).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OPENBLAS_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1
export BELONG_DATA_DIR ?= $(abspath ../shared/data)
STORE ?= .belong/demo-store

.PHONY: install run serve test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## The product demo on embedded defaults (no database or Redis needed): simulate, ingest, train, recommend, then
## the API on 127.0.0.1:8000 with curl examples it runs itself (serves until Ctrl-C from a terminal, else stops).
run: $(STAMP)
	$(BIN)/belong demo --store $(STORE) --serve

## Lint (ruff, line length enforced), types (mypy, zero errors on src/), the layer contracts (import-linter), then the
## whole test suite (PostgreSQL/Redis tests run when BELONG_TEST_POSTGRES_URL / BELONG_TEST_REDIS_URL are set).
test: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .belong .pytest_cache

## The same demo, serving until Ctrl-C even without a terminal.
serve: $(STAMP)
	$(BIN)/belong demo --store $(STORE) --serve --wait
