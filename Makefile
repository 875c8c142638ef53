# Two entry points for a fresh machine: `make repro` (the pipeline) and `make test`.
# Each creates .venv when it is missing and installs the pinned requirements.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export DVC_NO_ANALYTICS := 1

.PHONY: setup repro test smoke browser ci clean-venv

setup: $(STAMP)

# torch goes first and pinned, so that nothing later resolves it to a multi-GB CUDA build.
$(STAMP): pyproject.toml requirements/base.txt requirements/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name llome --display-name "llome (.venv)" >/dev/null
	touch $(STAMP)

repro: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The whole pipeline at smoke size, and one queued smoke experiment (dvc exp), in scratch copies of the
# project (your data/ and experiments are untouched).
smoke: $(STAMP)
	$(BIN)/python -m pytest -q -m pipeline tests/test_pipeline.py tests/test_dvc_queue.py

# Debian's chromium, for the offline-report check of `make smoke` (installed only when root and missing).
browser:
	command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || true

# What CI runs.
ci: browser test smoke

clean-venv:
	rm -rf $(VENV)
