#!/usr/bin/env bash
# Reproduces experiments/lr_sweep/: the chapter's linear model (fastbook_linear) with the learning rate swept
# from 0.01 to 10, 3 seeds each, as one Hydra multirun; then digitlab-compare writes the table and plots here.
set -euo pipefail
cd "$(dirname "$0")/../.."
make -s install
sweep=logs/lr_sweep/$(date +%Y-%m-%d_%H-%M-%S)
.venv/bin/digitlab-train -m experiment=fastbook_linear optimizer.lr=0.01,0.03,0.1,0.3,1.0,3.0,10.0 seed=0,1,2 \
  hydra.sweep.dir="$sweep" trainer.enable_progress_bar=false trainer.enable_model_summary=false
.venv/bin/digitlab-compare "$sweep" --out experiments/lr_sweep/results
