#!/usr/bin/env bash
# "How sensitive is simple_net to its learning rate?": fastbook_mlp (40 epochs) at 12 learning rates x 5 seeds,
# 60 jobs, once with the stacked launcher and once with the basic one (same sweep, for the wall times and the
# check that both give the same numbers), then the table and plots of the stacked sweep.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.venv/bin}
out=experiments/mlp_lr_sensitivity
grid=(experiment=fastbook_mlp optimizer.lr=0.01,0.02,0.05,0.1,0.2,0.3,0.5,1,2,3,5,10 seed=0,1,2,3,4
      trainer.enable_progress_bar=false)
: > "$out/wall_times.txt"
for launcher in stacked basic; do
  rm -rf "logs/multiruns/mlp_lr_$launcher"
  start=$(date +%s.%N)
  "$BIN/digitlab-train" -m "${grid[@]}" "hydra/launcher=$launcher" "hydra.sweep.dir=logs/multiruns/mlp_lr_$launcher"
  echo "$launcher $(python3 -c "print(round($(date +%s.%N) - $start, 1))")" >> "$out/wall_times.txt"
done
"$BIN/digitlab-compare" logs/multiruns/mlp_lr_stacked --out "$out/results"
"$BIN/python" - <<'PY' > "$out/differences.txt"
import json
from pathlib import Path
stacked = {p.parent.name: json.loads(p.read_text()) for p in Path("logs/multiruns/mlp_lr_stacked").glob("*/metrics.json")}
basic = {p.parent.name: json.loads(p.read_text()) for p in Path("logs/multiruns/mlp_lr_basic").glob("*/metrics.json")}
for key in ("val/loss", "val/acc", "val/acc_best"):
    diffs = [abs(m[key] - basic[name][key]) for name, m in stacked.items() if name in basic]
    print(f"{key}: largest |stacked - basic| over {len(diffs)} runs = {max(diffs):.3g}")
print(f"completed: {len(stacked)} stacked, {len(basic)} basic, of 60")
print("per lr, largest |stacked - basic| over its seeds: val/loss, val/acc")
by_lr = {}
for name, m in stacked.items():
    lr = float(name.split("optimizer.lr=")[1].split(",")[0])
    worst = by_lr.setdefault(lr, [0.0, 0.0])
    for i, key in enumerate(("val/loss", "val/acc")):
        worst[i] = max(worst[i], abs(m[key] - basic[name][key]))
for lr, (loss, acc) in sorted(by_lr.items()):
    print(f"  lr {lr:g}: {loss:.2g}, {acc:.2g}")
PY
cat "$out/wall_times.txt" "$out/differences.txt"
