"""The learning-rate finder: `digitlab-train <experiment> lr_find=true`.

Lightning's Tuner trains for a short while with the learning rate rising exponentially and records the
(smoothed) loss; the suggestion is where the loss falls fastest. The loss-vs-lr plot, saved as
`<run>/lr_find.png` and logged to TensorBoard, is trimmed as fastai's `plot_lr_find` is: the first steps
(the smoothing's warm-up, which reads as "lowest loss at the smallest lr") and the steps after the loss
diverged are left out, and the suggestion is marked. The command to train with it is printed (the user's
own overrides, with `optimizer.lr` set), and the result saved to `<run>/lr_find.json`. Nothing else is
trained.
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


SKIP_BEGIN = 10  # Lightning's `suggestion(skip_begin=10)`: the smoothing's warm-up steps
DIVERGED = 4.0  # fastai's stop: the loss beyond 4x its lowest has diverged


def trimmed(lrs: list[float], losses: list[float]) -> tuple[list[float], list[float]]:
    """The part of the curve worth reading: after the warm-up, up to where the loss diverged."""
    lrs, losses = list(lrs[SKIP_BEGIN:]), list(losses[SKIP_BEGIN:])
    if not losses:
        return lrs, losses
    lowest = min(range(len(losses)), key=losses.__getitem__)
    end = next(
        (i for i in range(lowest, len(losses)) if losses[i] > DIVERGED * max(losses[lowest], 1e-12)),
        len(losses),
    )
    return lrs[:end], losses[:end]


def plot(lrs: list[float], losses: list[float], suggestion: float | None) -> Figure:
    """Loss against learning rate (log axis), trimmed (`trimmed`), the suggestion marked: on a Figure."""
    figure = Figure(figsize=(6, 4), layout="constrained")
    ax = figure.subplots()
    lrs, losses = trimmed(lrs, losses)
    ax.plot(lrs, losses)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss (smoothed)")
    if suggestion is not None and lrs:
        nearest = min(range(len(lrs)), key=lambda i: abs(lrs[i] - suggestion))
        ax.axvline(suggestion, color="red", linestyle=":", linewidth=1)
        ax.plot(
            lrs[nearest],
            losses[nearest],
            "o",
            color="red",
            markersize=8,
            label=f"steepest descent: lr {suggestion:.3g}",
        )
        ax.legend()
    ax.set_title(f"lr finder: suggested lr {suggestion:.3g}" if suggestion else "lr finder")
    ax.grid(alpha=0.3)
    return figure
