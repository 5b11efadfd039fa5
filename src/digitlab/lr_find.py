"""The learning-rate finder: `digitlab-train <experiment> lr_find=true`.

Lightning's Tuner trains for a short while with the learning rate rising exponentially and records the
loss; the suggestion is where the loss falls fastest. The loss-vs-lr plot is saved as `<run>/lr_find.png`
and logged to TensorBoard; the suggestion is printed with the override that uses it, and saved to
`<run>/lr_find.json`. Nothing else is trained.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure

import digitlab.atomic as atomic
from digitlab.errors import ConfigError, DigitlabError

log = logging.getLogger(__name__)


def find_lr(
    trainer: L.Trainer,
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    output_dir: Path,
    min_lr: float = 1e-5,
    max_lr: float = 10.0,
    num_training: int = 100,
) -> dict[str, Any]:
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(
            f"lr_find=true needs a model trained by an optimizer; {type(model).__name__} has none."
        )
    from lightning.pytorch.tuner import Tuner

    finder = Tuner(trainer).lr_find(
        model,
        datamodule=datamodule,
        min_lr=min_lr,
        max_lr=max_lr,
        num_training=num_training,
        update_attr=False,
    )
    suggestion = finder.suggestion()
    figure = plot(finder.results.get("lr", []), finder.results.get("loss", []), suggestion)
    atomic.save_figure(figure, output_dir / "lr_find.png", dpi=100)
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure("lr_find", figure, close=False)
    steps = len(finder.results.get("lr", []))
    result = {"suggested_lr": suggestion, "min_lr": min_lr, "max_lr": max_lr, "steps": steps}
    atomic.write_json(output_dir / "lr_find.json", result)
    if suggestion is None:
        raise DigitlabError(
            f"lr_find ran {steps} of {num_training} steps and could not suggest a learning rate (see "
            f"{output_dir / 'lr_find.png'}). It needs about {num_training} training batches: raise "
            "trainer.max_epochs or lower data.batch_size."
        )
    return result


def plot(lrs: list[float], losses: list[float], suggestion: float | None) -> Figure:
    """Loss against learning rate (log axis), the suggestion marked: drawn on a Figure, no pyplot."""
    figure = Figure(figsize=(6, 4))
    ax = figure.subplots()
    ax.plot(lrs, losses)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss (smoothed)")
    if suggestion is not None:
        nearest = min(range(len(lrs)), key=lambda i: abs(lrs[i] - suggestion))
        ax.plot(
            lrs[nearest], losses[nearest], "o", color="red", markersize=8, label=f"suggested {suggestion:.3g}"
        )
        ax.legend()
    ax.set_title(f"lr finder: suggested lr {suggestion:.3g}" if suggestion else "lr finder")
    ax.grid(alpha=0.3)
    figure.tight_layout()
    return figure
