#!/usr/bin/env bash
# Reproduces experiments/fastbook_ch4/: the fastbook pipelines as one Hydra multirun (3 seeds each), then
# the results table. `bash experiments/fastbook_ch4/run.sh` for MNIST_SAMPLE (3s vs 7s),
# `bash experiments/fastbook_ch4/run.sh mnist` for the same pipelines on all 10 digits.
set -euo pipefail
cd "$(dirname "$0")/../.."
make -s install
study=${1:-fastbook}
sweep=logs/fastbook_ch4/${study}_$(date +%Y-%m-%d_%H-%M-%S)
.venv/bin/digitlab-train -m \
  experiment=${study}_baseline,${study}_linear,${study}_mlp,${study}_resnet18 seed=0,1,2 \
  hydra.sweep.dir="$sweep" trainer.enable_progress_bar=false trainer.enable_model_summary=false
.venv/bin/python experiments/fastbook_ch4/make_table.py "$sweep" > "experiments/fastbook_ch4/${study}_results.md"
cat "experiments/fastbook_ch4/${study}_results.md"
