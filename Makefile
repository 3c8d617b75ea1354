# tgad: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOTSTRAP ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tgad-installed

DATASET ?= embedded
ROOT ?=
CATEGORIES ?=
SHOTS ?= 1
SEEDS ?= 0
MODELS ?= patchcore
PRESET ?= cpu
N_GEN ?= 64
# optional: NAME (results/<dataset>/<name>), CONDITIONS (default: all six), SCORERS (default: the preset's,
# cpu: defect_safe with tau calibrated from the shots; e.g. "shot_fidelity none" for the selection ablation),
# BENCHMARK_ARGS (any other `tgad benchmark` option, e.g. --no-wandb)
NAME ?=
# EXECUTOR=ray runs the grid as Ray tasks (local cores, or RAY_ADDRESS=... to join a cluster)
EXECUTOR ?= sequential
RAY_ADDRESS ?=
CONDITIONS ?=
SCORERS ?=
BENCHMARK_ARGS ?=
# CLIP: a checkpoint file or an open_clip tag (found in your cache, or downloaded when online). No package ships
# real CLIP weights, so offline the `tgad` condition runs with RANDOM CLIP, said loudly and recorded in every
# row (clip_weights=...:RANDOM). ALLOW_RANDOM_CLIP=0 refuses that instead.
CLIP_WEIGHTS ?=
ALLOW_RANDOM_CLIP ?= 1

# PatchCore's coreset selection balloons to several GB with glibc's dynamic mmap threshold; a fixed one keeps
# it near 1.2 GB with identical results. 8 MiB (not 128 KiB) so that the generator's training, whose ~1 MB
# activations would otherwise be mmap'ed and page-faulted at every step, is not slowed 3-4x. It must be set
# before Python starts.
export MALLOC_MMAP_THRESHOLD_ ?= 8388608
# Lightning/anomalib must never reach a hub silently; weights come from tgad.assets.
export HF_HUB_OFFLINE ?= 1
export WANDB_MODE ?= offline
export PYTHONHASHSEED ?= 0

# Hermetic test environment: caches and run folders go to a temporary directory.
TEST_TMP := $(shell mktemp -d -u /tmp/tgad-test.XXXXXX)
TEST_ENV := MPLCONFIGDIR=$(TEST_TMP)/mpl WANDB_DIR=$(TEST_TMP)/wandb WANDB_CACHE_DIR=$(TEST_TMP)/wandb-cache \
	WANDB_CONFIG_DIR=$(TEST_TMP)/wandb-config WANDB_MODE=disabled HF_HUB_OFFLINE=1

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

# uv installs the same packages as pip in about half the time (parallel downloads and unpacking). Bytecode is
# compiled at install as pip does: without it every process compiles torch, Lightning and anomalib from source
# when PYTHONDONTWRITEBYTECODE is set (as on these machines): 21-25 s per `import` instead of 8.5. It reads its
# own settings, not pip's: scripts/uv_args_from_pip.py hands it the indexes, find-links and constraints pip is
# configured with, and it considers every index as pip does.
# INSTALLER=pip, or no uv to be had, installs with pip alone.
INSTALLER ?= uv

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON_BOOTSTRAP) -m venv $(VENV)
	# torch first: the pair proven here (a newer torch pulls a multi-GB CUDA build; torchvision must match)
	@if [ "$(INSTALLER)" = uv ] && $(PY) -m pip install --quiet --disable-pip-version-check "uv>=0.13,<0.14"; then \
	  set -x; uv_args="--quiet --python $(PY) --compile-bytecode --index-strategy unsafe-best-match $$($(PY) scripts/uv_args_from_pip.py)"; \
	  $(VENV)/bin/uv pip install $$uv_args "torch==2.14.1" "torchvision==0.29.1" && \
	  $(VENV)/bin/uv pip install $$uv_args -e ".[dev,ray]"; \
	else set -x; \
	  $(PY) -m pip install --quiet --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1" && \
	  $(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev,ray]"; fi
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install tgad with its pinned dependencies (no-op when up to date)

test: $(STAMP) ## run the default test suite (offline, CPU, slow tests excluded)
	@mkdir -p $(TEST_TMP)
	$(TEST_ENV) $(PY) -m pytest -q
	@rm -rf $(TEST_TMP)

test-slow: $(STAMP) ## run the slow tests only
	@mkdir -p $(TEST_TMP)
	$(TEST_ENV) $(PY) -m pytest -q -m slow
	@rm -rf $(TEST_TMP)

lint: $(STAMP) ## ruff check and format check
	$(VENV)/bin/ruff check tgad tests experiments
	$(VENV)/bin/ruff format --check tgad tests experiments

format: $(STAMP) ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix tgad tests experiments
	$(VENV)/bin/ruff format tgad tests experiments

data-check: $(STAMP) ## validate a dataset folder: make data-check DATASET=mvtec ROOT=... CATEGORIES=...
	@for c in $(or $(CATEGORIES),$(if $(filter embedded,$(DATASET)),brick grass gravel,)); do \
	  $(VENV)/bin/tgad data check --dataset $(DATASET) $(if $(ROOT),--root $(ROOT),) --category $$c || exit 1; done

benchmark: $(STAMP) ## shots vs plain_aug vs tgad vs tgad_aug: make benchmark [DATASET=mvtec ROOT=... CATEGORIES=... MODELS=... SEEDS="0 1 2 3 4" SCORERS=...]
	$(VENV)/bin/tgad benchmark --dataset $(DATASET) $(if $(ROOT),--root $(ROOT),) \
	  $(if $(CATEGORIES),--categories $(CATEGORIES),) --models $(MODELS) --shots $(SHOTS) --seeds $(SEEDS) \
	  --preset $(PRESET) --n-gen $(N_GEN) $(if $(NAME),--name $(NAME),) \
	  $(if $(CONDITIONS),--conditions $(CONDITIONS),) $(if $(SCORERS),--scorers $(SCORERS),) \
	  $(if $(CLIP_WEIGHTS),--clip-weights $(CLIP_WEIGHTS),) \
	  $(if $(filter 1,$(ALLOW_RANDOM_CLIP)),--allow-random-clip,) --executor $(EXECUTOR) \
	  $(if $(RAY_ADDRESS),--ray-address $(RAY_ADDRESS),) $(BENCHMARK_ARGS)

clean: ## remove caches and build outputs (keeps .venv and results)
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info lightning_logs

distclean: clean ## also remove .venv
	rm -rf $(VENV)

.PHONY: help install test test-slow lint format data-check benchmark clean distclean
