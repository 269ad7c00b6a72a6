# Set-up, tests, chat and benchmarks: every target installs what it needs, from nothing, idempotently.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/backspace
SMOLLM2 := $(CACHE_DIR)/models/SmolLM2-135M-Instruct.Q4_1.gguf
# llama-cpp-python compiles llama.cpp from source; use every core.
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)
# The version that the tests and benchmarks pass on (pyproject.toml allows up to 0.4).
LLAMA_CPP_PYTHON := 0.3.36
# GCC builds llama.cpp's AMX kernels so that they crash on Sapphire Rapids: the tile config they load
# is dropped from the stack (ggml-org/llama.cpp#20824, #26954). x86 builds go without AMX; llama-bench
# and rpc-server (scripts/build_llama_tool.sh) are built with the same flags.
ifeq ($(shell uname -m),x86_64)
export LLAMA_CPP_CFLAGS ?= -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
endif
# llama.cpp's RPC backend is always built in: `--rpc` spreads a model's layers over rpc-server workers.
# A user's own CMAKE_ARGS (CUDA, Metal) are kept and added to.
export CMAKE_ARGS := -DGGML_RPC=ON $(CMAKE_ARGS)
# The wheel is built from llama-cpp-python's sdist with our llama.cpp patches (patches/llama.cpp/), once
# per version, build flags and patches, and cached outside the repo. pip's own cache keys a wheel by
# version alone, so it would hand back a build made with other flags or without the patches.
LLAMA_PATCHES := $(shell cat patches/llama.cpp/*.patch | sha256sum | cut -c1-12)
LLAMA_BUILD := $(shell printf '%s' '$(CMAKE_ARGS) $(LLAMA_CPP_CFLAGS) $(LLAMA_PATCHES)' | sha256sum | cut -c1-12)
LLAMA_WHEELS := $(CACHE_DIR)/wheels/llama-cpp-python-$(LLAMA_CPP_PYTHON)-$(LLAMA_BUILD)
LLAMA_SDIST := $(CACHE_DIR)/sdist/llama-cpp-python-$(LLAMA_CPP_PYTHON)
EXTENSION := backspace_cli/engine/_min_p.c
# The tests' extras, the server's among them (a variable: a comma in $(call) would split its argument).
TEST_EXTRAS := [test,serve,train]

.PHONY: install install-test test chat bench models clean chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(LLAMA_WHEELS)/.built: | $(BIN)/python $(LLAMA_SDIST)/.downloaded
	rm -rf $(LLAMA_WHEELS).partial $(LLAMA_WHEELS).source
	source=$$(bash scripts/patched_llama_source.sh $(LLAMA_SDIST)/*.tar.gz $(LLAMA_WHEELS).source) && \
	CFLAGS="$(LLAMA_CPP_CFLAGS)" CXXFLAGS="$(LLAMA_CPP_CFLAGS)" $(BIN)/python -m pip wheel --quiet --no-deps \
		--no-cache-dir -w $(LLAMA_WHEELS).partial "$$source"
	rm -rf $(LLAMA_WHEELS).source $(LLAMA_WHEELS) && mv $(LLAMA_WHEELS).partial $(LLAMA_WHEELS)
	touch $@

# Stamp files keep a second run fast: pip runs again only when pyproject.toml, our C extension or the
# llama.cpp build changes. The wheel goes in first, forced: pip would keep another build of it.
define install_with
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps $(LLAMA_WHEELS)/*.whl
	$(BIN)/python -m pip install --quiet -e '.$(1)'
	touch $@
endef

$(VENV)/.installed: pyproject.toml $(EXTENSION) $(LLAMA_WHEELS)/.built | $(BIN)/python
	$(call install_with,)

$(VENV)/.installed-test: pyproject.toml $(EXTENSION) $(LLAMA_WHEELS)/.built | $(BIN)/python
	$(call install_with,$(TEST_EXTRAS))

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

$(SMOLLM2): scripts/fetch_smollm2.py | $(BIN)/python
	$(BIN)/python scripts/fetch_smollm2.py $@

models: $(SMOLLM2)

# The server's browser test drives Debian's chromium; without it (no apt, no root) that test is skipped.
chromium:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium) || \
		echo "chromium could not be installed: the browser test will be skipped"

# llama.cpp's rpc-server, for the --rpc tests: built once from the wheel's own source, cached.
RPC_SERVER := PYTHON=$(BIN)/python CACHE_DIR=$(CACHE_DIR) bash scripts/build_llama_tool.sh ggml-rpc-server

# llama-cpp-python's sdist: the source of the wheel, and the llama.cpp converter that it vendors
# (vendor/llama.cpp/convert_hf_to_gguf.py, with its gguf-py), which tests/test_hf_workflow.py runs:
# downloaded once, cached.
$(LLAMA_SDIST)/.downloaded: | $(BIN)/python
	rm -rf $(LLAMA_SDIST).partial
	$(BIN)/python -m pip download --quiet --no-binary :all: --no-deps -d $(LLAMA_SDIST).partial \
		llama-cpp-python==$(LLAMA_CPP_PYTHON)
	rm -rf $(LLAMA_SDIST) && mv $(LLAMA_SDIST).partial $(LLAMA_SDIST)
	touch $@

.PHONY: sdist
sdist: $(LLAMA_SDIST)/.downloaded

test: install-test models chromium sdist
	rpc_server=$$($(RPC_SERVER)) && \
	BACKSPACE_TEST_MODEL=$(SMOLLM2) BACKSPACE_RPC_SERVER=$$rpc_server \
	BACKSPACE_LLAMA_SDIST=$$(ls $(LLAMA_SDIST)/*.tar.gz) $(BIN)/python -m pytest

# Thousands of mutants of the built-in model through complete, chat, inspect and convert (the suite runs
# 50); prints what it finds and keeps those files in fuzz-findings/. Then thousands of random and mutated
# requests to a server (the suite sends 200). FUZZ_SEED picks another set.
.PHONY: fuzz
FUZZ_MUTANTS ?= 3000
FUZZ_REQUESTS ?= 3000
FUZZ_SEED ?= 1
fuzz: install-test
	$(BIN)/python tests/test_fuzz.py --mutants $(FUZZ_MUTANTS) --seed $(FUZZ_SEED)
	BACKSPACE_SERVE_FUZZ_CASES=$(FUZZ_REQUESTS) BACKSPACE_SERVE_FUZZ_SEED=$(FUZZ_SEED) $(BIN)/python -m pytest -q \
		tests/test_serve_fuzz.py

# The built-in model, unless BACKSPACE_MODEL names another.
chat: install
	$(BIN)/backspace chat

# Builds llama-bench and rpc-server (cached), then writes bench/results.md: native llama.cpp, llama-cpp-python
# and us, and us through a loopback rpc-server; deletes on recurrent and hybrid models; the peer, backtrack-sampler.
$(VENV)/.installed-bench: pyproject.toml $(EXTENSION) $(LLAMA_WHEELS)/.built | $(BIN)/python
	$(call install_with,[bench])

bench: install-test $(VENV)/.installed-bench models
	BACKSPACE_TEST_MODEL=$(SMOLLM2) CACHE_DIR=$(CACHE_DIR) $(BIN)/python bench/bench_perf.py
	BACKSPACE_TEST_MODEL=$(SMOLLM2) $(BIN)/python bench/bench_render.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis backspace_cli/engine/*.so

# The built-in model, in two `backspace train` runs: from scratch on single two-sum questions
# (training/recipe.json), then on questions half of them asked in chats (training/recipe-chats.json). About
# 80 minutes on 2 busy cores (training/NOTES.md). Each run's folder is kept: a stopped run goes on where it
# stopped, and a finished one is not run again.
.PHONY: demo-model
DEMO_WORK ?= $(CACHE_DIR)/demo-model
$(VENV)/.installed-train: pyproject.toml $(EXTENSION) $(LLAMA_WHEELS)/.built | $(BIN)/python
	$(call install_with,[train])

$(DEMO_WORK)/questions.jsonl: training/twosum.py | $(BIN)/python
	mkdir -p $(DEMO_WORK)
	$(BIN)/python training/twosum.py 60000 --seed 1 > $@.partial && mv $@.partial $@

$(DEMO_WORK)/chats.jsonl: training/twosum.py | $(BIN)/python
	mkdir -p $(DEMO_WORK)
	$(BIN)/python training/twosum.py 20000 --seed 2 --chats 0.5 > $@.partial && mv $@.partial $@

# $(1): the run's folder; $(2): a new run's arguments. A run that was started goes on with --resume.
define train_or_resume
	if [ -f $(1)/run.json ]; then nice -n 10 $(BIN)/backspace train --resume $(1) --force; \
	else nice -n 10 $(BIN)/backspace train $(2) --work $(1) --force; fi
endef

$(DEMO_WORK)/questions.gguf: $(VENV)/.installed-train $(DEMO_WORK)/questions.jsonl training/recipe.json
	$(call train_or_resume,$(DEMO_WORK)/questions.train,$(DEMO_WORK)/questions.jsonl --from-scratch tiny \
		--recipe training/recipe.json --eval-tasks training/eval-tasks.jsonl -o $@)

demo-model: $(DEMO_WORK)/questions.gguf $(DEMO_WORK)/chats.jsonl
	$(call train_or_resume,$(DEMO_WORK)/chats.train,$(DEMO_WORK)/chats.jsonl \
		-m $(DEMO_WORK)/questions.train/grpo/final --recipe training/recipe-chats.json \
		--eval-tasks training/eval-tasks.jsonl -o backspace_cli/models/backspace-tiny.gguf)

# SmolLM2-135M-Instruct taught to delete on sorting (training/sorting.py), and the same fine-tune without
# deletes, both from the tests' Q4_1 file; then both on 1,000 held-out lists, and the delete model on 100
# ordinary chat prompts beside the base model. The figures land in training/smollm2/
# (training/smollm2/NOTES.md). Each run resumes as demo-model's do. The eval's table comes last, then the
# delete rate on ordinary prompts is written beside it.
.PHONY: smollm2-deletes
SORT_WORK ?= $(CACHE_DIR)/smollm2-sorting
SORT_OUT := training/smollm2
# The recipe's steps times its batch: each list is learned once.
SORT_TASKS ?= 1280
SORT_TEMPS ?= 0,0.7
$(SORT_WORK)/tasks.jsonl: training/sorting.py | $(BIN)/python
	mkdir -p $(SORT_WORK)
	$(BIN)/python training/sorting.py $(SORT_TASKS) --seed 1 > $@.partial && mv $@.partial $@

$(SORT_WORK)/held-out.jsonl: training/sorting.py | $(BIN)/python
	mkdir -p $(SORT_WORK)
	$(BIN)/python training/sorting.py 1000 --eval --seed 2 > $@.partial && mv $@.partial $@

$(SORT_WORK)/%.gguf: $(SORT_OUT)/recipe-%.json $(SORT_WORK)/tasks.jsonl $(SORT_WORK)/held-out.jsonl \
		$(VENV)/.installed-train | $(SMOLLM2)
	$(call train_or_resume,$(SORT_WORK)/$*.train,$(SORT_WORK)/tasks.jsonl -m $(SMOLLM2) --recipe $< \
		--outtype q8_0 --eval-tasks $(SORT_WORK)/held-out.jsonl -o $@)

smollm2-deletes: $(SORT_WORK)/deletes.gguf $(SORT_WORK)/plain.gguf
	$(BIN)/backspace eval $(SORT_WORK)/held-out.jsonl -m $(SORT_WORK)/deletes.gguf \
		--baseline $(SORT_WORK)/plain.gguf --temps $(SORT_TEMPS) -n 32 --plot $(SORT_OUT)/eval.svg \
		--answers $(SORT_WORK)/answers.jsonl --report $(SORT_OUT)/eval.json
	$(BIN)/python training/delete_rate.py $(SORT_WORK)/deletes.gguf --base $(SMOLLM2) \
		--out $(SORT_OUT)/ordinary-prompts.json

# The converter's benchmark: builds a 2 GB synthetic GGUF once in $(CACHE_DIR)/bench (needs ~7 GB free).
.PHONY: bench-convert
bench-convert: install-test models
	BACKSPACE_TEST_MODEL=$(SMOLLM2) nice $(BIN)/python bench/bench_convert.py --cache $(CACHE_DIR)/bench
