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

## Main job on embedded defaults (no server needed).
run: $(STAMP)
	$(BIN)/belong demo --store $(STORE)

## Whole test suite (PostgreSQL/Redis tests run when BELONG_TEST_POSTGRES_URL / BELONG_TEST_REDIS_URL are set).
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

lint: $(STAMP)
	$(BIN)/ruff check src tests

clean:
	rm -rf $(VENV) .belong .pytest_cache

## The product demo: the same world, then the API on 127.0.0.1:8000 with curl examples (Ctrl-C to stop).
serve: $(STAMP)
	$(BIN)/belong demo --store $(STORE) --serve
