#!/usr/bin/env bash
# The pruned (median, successive halving) and the unpruned Optuna search of the chapter's simple_net (hparams_search=mlp: lr, hidden width,
# batch size; 20 trials of up to 40 epochs; seeded TPE), one after the other on an otherwise idle machine,
# then the table. Each study starts afresh in logs/studies/<name>/.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.venv/bin}
out=experiments/optuna_pruning
: > "$out/wall_times.txt"
for spec in "mlp_median:hydra/sweeper/pruner=median" "mlp_halving:hydra/sweeper/pruner=successive_halving" \
  "mlp_unpruned:hydra/sweeper/pruner=none"; do
  name=${spec%%:*}
  rm -rf "logs/studies/$name"
  start=$(date +%s.%N)
  "$BIN/digitlab-train" hparams_search=mlp "hydra.sweeper.study_name=$name" "${spec#*:}"
  echo "$name $(python3 -c "print(round($(date +%s.%N) - $start, 1))")" >> "$out/wall_times.txt"
done
"$BIN/python" "$out/summarize.py" logs/studies/mlp_{median,halving,unpruned} > "$out/results.md"
for name in mlp_median mlp_halving mlp_unpruned; do
  cp "logs/studies/$name/compare/compare.md" "$out/${name}_compare.md"
done
cat "$out/results.md"
