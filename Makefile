# Set-up, tests, chat and benchmarks: every target installs what it needs, from nothing, idempotently.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/backspace
SMOLLM2 := $(CACHE_DIR)/models/SmolLM2-135M-Instruct.Q4_1.gguf
# llama-cpp-python compiles llama.cpp from source; use every core, and let pip cache the wheel.
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: install install-test test chat bench models clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamp files keep a second run fast: pip runs again only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

$(SMOLLM2): scripts/fetch_smollm2.py | $(BIN)/python
	$(BIN)/python scripts/fetch_smollm2.py $@

models: $(SMOLLM2)

test: install-test models
	BACKSPACE_TEST_MODEL=$(SMOLLM2) $(BIN)/python -m pytest

# The built-in model, unless BACKSPACE_MODEL names another.
chat: install
	$(BIN)/backspace chat

# Builds llama-bench (cached), then writes bench/results.md: native llama.cpp, llama-cpp-python and us.
bench: install-test models
	BACKSPACE_TEST_MODEL=$(SMOLLM2) CACHE_DIR=$(CACHE_DIR) $(BIN)/python bench/bench_perf.py
	BACKSPACE_TEST_MODEL=$(SMOLLM2) $(BIN)/python bench/bench_render.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis

# The built-in model, trained from scratch (about 25 minutes on 2 cores; see training/train.py).
.PHONY: demo-model
$(VENV)/.installed-train: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[train]'
	touch $@

demo-model: $(VENV)/.installed-train
	nice -n 10 $(BIN)/python training/train.py --out backspace_cli/models/backspace-tiny.gguf

# The converter's benchmark: builds a 2 GB synthetic GGUF once in $(CACHE_DIR)/bench (needs ~7 GB free).
.PHONY: bench-convert
bench-convert: install-test models
	BACKSPACE_TEST_MODEL=$(SMOLLM2) nice $(BIN)/python bench/bench_convert.py --cache $(CACHE_DIR)/bench
