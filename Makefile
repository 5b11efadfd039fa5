# digitlab: `make train` trains the default experiment, `make test` runs the tests; both install first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# This machine's pip takes these two from its local wheel store; elsewhere pick the build you need, e.g.
# `make install TORCH_SPEC="torch torchvision --index-url https://download.pytorch.org/whl/cpu"`.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# Every other package at the exact version the tests passed with (`make lock` writes it). The torch build
# (torch, torchvision and the CUDA libraries a CUDA build pulls) is TORCH_SPEC's, so the CPU build works too.
LOCK := requirements.lock
TORCH_BUILD := ^(torch|torchvision|triton|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)==
PIP := -m pip --quiet --disable-pip-version-check
ARGS ?=
PORT ?= 6006

.PHONY: help install lock train test test-slow test-cluster bench lint format tensorboard dashboard clean

help:
	@echo "make train [ARGS='experiment=fastbook_mlp ...']  train (default: the chapter's linear model)"
	@echo "make test                                        install if needed, run the tests"
	@echo "make test-slow                                   also the slow real-data tests (resnet18)"
	@echo "make test-cluster                                real SLURM and PostgreSQL on this machine (root)"
	@echo "make tensorboard [PORT=6006]                     open every run under logs/"
	@echo "make dashboard [STUDY=logs/studies/mlp]          optuna-dashboard on a study (default: the newest)"
	@echo "make bench                                       digitlab against a bare PyTorch loop -> benchmarks/RESULTS.md"
	@echo "make lock                                        re-resolve the dependencies to the newest allowed, into requirements.lock"
	@echo "make lint | format | clean | install"

$(BIN)/.installed: pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python $(PIP) install $(TORCH_SPEC)
	$(BIN)/python $(PIP) install -r $(LOCK)
	$(BIN)/python $(PIP) install --no-deps -e '.[dev,postgres,notebook]'
	# An environment from before digitlab's own sweeper: hydra-optuna-sweeper (optuna<3) would shadow it.
	$(BIN)/python $(PIP) uninstall -y hydra-optuna-sweeper
	$(BIN)/python -m pip check
	touch $@

install: $(BIN)/.installed

# Re-resolve every dependency to the newest versions pyproject.toml's ranges allow, in a fresh venv, and
# write them to the lock; then `make test` (and commit the lock if it passes).
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python $(PIP) install $(TORCH_SPEC)
	.venv-lock/bin/python $(PIP) install -e '.[dev,postgres,notebook]'
	{ echo "# Exact versions \`make install\` installs (written by \`make lock\`; torch's build is TORCH_SPEC's)."; \
	  .venv-lock/bin/python -m pip freeze --exclude-editable | grep -vE '$(TORCH_BUILD)'; } > $(LOCK)
	rm -rf .venv-lock

train: install
	$(BIN)/digitlab-train $(ARGS)

# One test worker per core (pytest-xdist).
test: install
	$(BIN)/python -m pytest -n auto -m "not slow and not cluster" $(ARGS)

test-slow: install
	$(BIN)/python -m pytest -n auto -m "not cluster" $(ARGS)

# Real engines on this machine (root, apt): a single-node SLURM cluster with accounting and a PostgreSQL
# server, started and stopped by the tests (tests/cluster/).
test-cluster: install
	$(BIN)/python -m pytest -m cluster tests/cluster $(ARGS)

bench: install
	$(BIN)/python benchmarks/bench.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

tensorboard: install
	$(BIN)/tensorboard --logdir logs --port $(PORT)

STUDY ?=
DASHBOARD_PORT ?= 8080
dashboard: install
	$(BIN)/digitlab-dashboard $(STUDY) --port $(DASHBOARD_PORT)

clean:
	rm -rf logs .pytest_cache .ruff_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
