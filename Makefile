# digitlab: `make train` trains the default experiment, `make test` runs the tests; both install first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# This machine's pip takes these two from its local wheel store; elsewhere pick the build you need, e.g.
# `make install TORCH_SPEC="torch torchvision --index-url https://download.pytorch.org/whl/cpu"`.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
ARGS ?=
PORT ?= 6006

.PHONY: help install train test test-slow test-cluster bench lint format tensorboard dashboard clean

help:
	@echo "make train [ARGS='experiment=fastbook_mlp ...']  train (default: the chapter's linear model)"
	@echo "make test                                        install if needed, run the tests"
	@echo "make test-slow                                   also the slow real-data tests (resnet18)"
	@echo "make test-cluster                                real SLURM and PostgreSQL on this machine (root)"
	@echo "make tensorboard [PORT=6006]                     open every run under logs/"
	@echo "make dashboard [STUDY=logs/studies/mlp]          optuna-dashboard on a study (default: the newest)"
	@echo "make bench                                       digitlab against a bare PyTorch loop -> benchmarks/RESULTS.md"
	@echo "make lint | format | clean | install"

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	# An environment from before digitlab's own sweeper: hydra-optuna-sweeper (optuna<3) would shadow it.
	$(BIN)/python -m pip uninstall --quiet --disable-pip-version-check -y hydra-optuna-sweeper
	touch $@

install: $(BIN)/.installed

train: install
	$(BIN)/digitlab-train $(ARGS)

# One test worker per core (pytest-xdist): most of a test's time is a process importing Lightning.
test: install
	$(BIN)/python -m pytest -n auto -m "not slow and not cluster" $(ARGS)

test-slow: install
	$(BIN)/python -m pytest -n auto -m "not cluster" $(ARGS)

# Real engines on this machine (root, apt): a single-node SLURM cluster with accounting and a PostgreSQL
# server, started and stopped by the tests (tests/cluster/).
test-cluster: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,postgres]'
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
