"""Checkpoints beside Lightning's ModelCheckpoint (which keeps the best epoch by val/acc):

- `LastCheckpoint`: `last.ckpt` after every epoch, what `resume=true` continues from. Lightning's own
  `save_last` refreshes it only on epochs that also saved a best checkpoint, and ModelCheckpoint saves
  nothing for a model that takes no optimizer step (the pixel-similarity baseline). It is a `Checkpoint`, so
  Lightning calls it after the module's own `on_train_epoch_end` (which logs train/loss): the checkpoint's
  record holds the whole epoch.
- `CheckpointOnInterrupt`: `interrupted.ckpt` when training stops on an exception (Ctrl-C, SIGTERM, an
  error, a diverged loss), unless it stops while validating (then last.ckpt is where resuming starts).
  Lightning's OnExceptionCheckpoint would also make every later `fit()` without a `ckpt_path` resume from
  the newest checkpoint it finds; here resuming stays explicit.

Both write through `checkpoints.CheckpointFiles` (the trainer's checkpoint IO, see `build.trainer`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Checkpoint

from digitlab.atomic import WriteFailed
from digitlab.faults import pause_point
from digitlab.rundir import INTERRUPTED_CHECKPOINT, LAST_CHECKPOINT, Run

log = logging.getLogger(__name__)


class LastCheckpoint(Checkpoint):
    def __init__(self, run_dir: str | Path) -> None:
        self.path = Run(run_dir).checkpoints / LAST_CHECKPOINT

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.current.completed == trainer.num_training_batches // 2:
            pause_point(f"mid_epoch:{trainer.current_epoch}")  # between two checkpoints (fault tests)

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int, *args
    ) -> None:
        pause_mid_validation(trainer, batch_idx)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            trainer.save_checkpoint(self.path, weights_only=False)  # full state: resume needs the optimizer
            pause_point(f"epoch_end:{trainer.current_epoch}")


class CheckpointOnInterrupt(L.Callback):
    def __init__(self, run_dir: str | Path) -> None:
        self.path = Run(run_dir).checkpoints / INTERRUPTED_CHECKPOINT

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not worth_an_interrupted_checkpoint(trainer, exception):
            return
        try:
            trainer.save_checkpoint(self.path, weights_only=False)
        except WriteFailed as err:  # the error that stopped training is the one to report
            log.warning("interrupted.ckpt was not saved either: %s", err)
            return
        log.warning("training stopped (%s); checkpoint saved to %s", type(exception).__name__, self.path)


def pause_mid_validation(trainer: L.Trainer, batch_idx: int) -> None:
    """The `mid_validation:<epoch>` pause point (fault tests), for a single run and a stack alike."""
    if batch_idx == 0 and not trainer.sanity_checking and trainer.state.fn == "fit":
        pause_point(f"mid_validation:{trainer.current_epoch}")  # the epoch trained, not yet validated


def worth_an_interrupted_checkpoint(trainer: L.Trainer, exception: BaseException) -> bool:
    """Whether the state a fit stopped in is one `interrupted.ckpt` should keep, for a single run and for
    every trial of a stack alike."""
    if trainer.state.fn != "fit" or (trainer.global_step == 0 and trainer.current_epoch == 0):
        return False  # nothing trained yet: nothing worth keeping
    if isinstance(exception, WriteFailed):
        return False  # the disk that refused a write: last.ckpt and the epochs' checkpoints stand
    if trainer.validating:
        # Lightning resumes a checkpoint saved mid-validation without validating that epoch again
        # (Lightning-AI/pytorch-lightning#19549, #20288): resuming from the epoch before, last.ckpt,
        # trains this epoch again to the same numbers and validates it.
        log.warning(
            "training stopped (%s) while validating epoch %d; resume=true repeats that epoch from %s",
            type(exception).__name__,
            trainer.current_epoch,
            LAST_CHECKPOINT,
        )
        return False
    return True
