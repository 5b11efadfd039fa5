"""digitlab from a notebook: a sweep, its comparison as a DataFrame, and a trained model, in a few cells.

Run it as a script (`.venv/bin/python experiments/notebook_api/notebook_api.py`) or paste the cells into a
notebook. `NOTEBOOK_API_ARGS` adds overrides to every run (the tests point it at a tiny dataset).
"""

# %% A sweep from Python: two models x two learning rates x two seeds, stacked into one fit per model.
import os
import tempfile
from pathlib import Path

import torch
from omegaconf import OmegaConf

import digitlab.build as build
from digitlab.api import compare, load_model, sweep
from digitlab.rundir import Run

extra = os.environ.get("NOTEBOOK_API_ARGS", "trainer.max_epochs=4").split()
folder = sweep(
    ["hydra/launcher=stacked", "model=linear,mlp", "optimizer.lr=0.1,1.0", "seed=0,1", *extra],
    sweep_dir=Path(tempfile.mkdtemp(prefix="notebook_api-")) / "sweep",
)

# %% The comparison: one row per setting, ranked, mean and std over seeds; nothing written to disk.
table = compare(folder)
print(
    table[["rank", "model", "optimizer.lr", "n", "val/acc_best", "val/acc_best std"]].to_string(index=False)
)

# %% The best setting's first run, as a trained model: its accuracy on the validation digits, recomputed.
best = table.iloc[0]
run_dir = next(
    path
    for path in sorted(folder.glob("[0-9]*_*"))
    if f"model={best['model']}" in path.name and f"optimizer.lr={best['optimizer.lr']}" in path.name
)
model = load_model(run_dir)
data = build.datamodule(OmegaConf.create(Run(run_dir).config))
data.setup("validate")
images, labels = data.valid_set.images, data.valid_set.labels
with torch.no_grad():
    predicted = model.probabilities(model(images.float() / 255 if images.dtype == torch.uint8 else images))
accuracy = (predicted.argmax(-1) == labels).float().mean().item()
print(f"{run_dir.name}: {type(model).__name__}, val/acc recomputed {accuracy:.4f}")
