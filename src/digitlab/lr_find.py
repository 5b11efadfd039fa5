"""The learning-rate finder: `digitlab-train <experiment> lr_find=true`.

Lightning's Tuner trains for a short while with the learning rate rising exponentially and records the
(smoothed) loss; the suggestion is where the loss falls fastest. The loss-vs-lr plot, saved as
`<run>/lr_find.png` and logged to TensorBoard, is trimmed as fastai's `plot_lr_find` is: the first steps
(the smoothing's warm-up, which reads as "lowest loss at the smallest lr") and the steps after the loss
diverged are left out, and the suggestion is marked. A loss still falling at the top of the range (10)
makes the range grow by two decades at a time until it diverges (up to 1e5; the result says whether it did). The command to train with it is printed (the user's
own overrides, with `optimizer.lr` set), and the result saved to `<run>/lr_find.json`. Nothing else is
trained.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure

import digitlab.atomic as atomic
from digitlab.errors import ConfigError, DigitlabError
from digitlab.rundir import LR_FIND_JSON, LR_FIND_PNG

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

    per_decade = num_training / math.log10(max_lr / min_lr)
    while True:
        # Lightning's finder draws its own tqdm bar whatever the trainer's progress bar setting
        # (`_LRCallback(progress_bar_refresh_rate=1)` in lightning/pytorch/tuner/lr_finder.py): kept off the
        # console, which gets one line and the command (`cli.train.report`).
        with contextlib.redirect_stderr(io.StringIO()):
            finder = Tuner(trainer).lr_find(
                model,
                datamodule=datamodule,
                min_lr=min_lr,
                max_lr=max_lr,
                num_training=num_training,
                update_attr=False,
            )
        lrs, losses = finder.results.get("lr", []), finder.results.get("loss", [])
        if diverged(losses) or len(lrs) < num_training or max_lr >= LARGEST_LR:
            break
        # Still falling at the top of the range: the steepest descent may lie beyond it. The range grows
        # by two decades, with as many steps per decade, until the loss diverges.
        max_lr, num_training = max_lr * 100, round(num_training + 2 * per_decade)
    suggestion = finder.suggestion()
    figure = plot(lrs, losses, suggestion)
    atomic.save_figure(figure, output_dir / LR_FIND_PNG, dpi=100)
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure("lr_find", figure, close=False)
    steps = len(lrs)
    result = {
        "suggested_lr": suggestion,
        "min_lr": min_lr,
        "max_lr": max_lr,
        "steps": steps,
        "diverged": diverged(losses),
    }
    atomic.write_json(output_dir / LR_FIND_JSON, result)
    if suggestion is None:
        raise DigitlabError(
            f"lr_find ran {steps} of {num_training} steps and could not suggest a learning rate (see "
            f"{output_dir / LR_FIND_PNG}). It needs about {num_training} training batches: raise "
            "trainer.max_epochs or lower data.batch_size."
        )
    return result


SKIP_BEGIN = 10  # Lightning's `suggestion(skip_begin=10)`: the smoothing's warm-up steps
DIVERGED = 4.0  # fastai's stop: the loss beyond 4x its lowest has diverged
LARGEST_LR = 1e5  # the finder's range grows (from max_lr=10) no further than this


def diverged(losses: list[float]) -> bool:
    """Whether the loss passed `DIVERGED` times its lowest after it (the finder's range went far enough)."""
    losses = list(losses[SKIP_BEGIN:])
    if not losses:
        return False
    lowest = min(range(len(losses)), key=losses.__getitem__)
    return any(loss > DIVERGED * max(losses[lowest], 1e-12) for loss in losses[lowest:])


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
