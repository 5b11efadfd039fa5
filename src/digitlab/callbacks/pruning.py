"""Optuna pruning inside Lightning's loop: each validation epoch the monitored metric is reported to the trial,
and when the study's pruner says stop, the fit ends after that epoch.

This is optuna-integration's `PyTorchLightningPruningCallback` with one change: outside DDP it raises
`TrialPruned` from `on_validation_end`, which runs before ModelCheckpoint's hook for that epoch, so the pruned
epoch's checkpoint would be lost and the loggers would close as failed. Here the trainer stops the way
Lightning stops (`trainer.should_stop`, as the integration itself does under DDP): the epoch is checkpointed,
`metrics.json` is written with `status: pruned` and the epoch, and `train` raises `TrialPruned` after fit so the
sweeper records the trial as PRUNED.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import optuna
from optuna_integration.pytorch_lightning import PyTorchLightningPruningCallback

from digitlab.rundir import PRUNED

PRUNED_SCALAR = "trial/pruned"


# What a pruned trial leaves, for a single run (`TrialPruning`) and a stack's trial (`stacked.records`) alike.


def report(trial: optuna.Trial, value: float, epoch: int, max_epochs: int | None) -> bool:
    """`value` reported to `trial` for `epoch`; whether the study's pruner stops the trial after it. Never
    after its last epoch: a trial that trained its whole budget is completed (pruning it would save nothing,
    and would rank it below worse completed trials)."""
    trial.report(value, step=epoch)
    return not last_epoch(epoch, max_epochs) and trial.should_prune()


def last_epoch(epoch: int, max_epochs: int | None) -> bool:
    """Whether `epoch` (0-based) is the last of `max_epochs` (None or -1: no epoch budget)."""
    return max_epochs is not None and max_epochs > 0 and epoch + 1 >= max_epochs


def log_pruned(loggers: list[Any], pruned: bool, step: int) -> None:
    """The `trial/pruned` scalar: TensorBoard's HParams table shows the scalars a run logs as its metric
    columns, and this one tells the pruned trials (1) from the completed ones (0)."""
    for logger in loggers:
        logger.log_metrics({PRUNED_SCALAR: float(pruned)}, step=step)


def pruned_record(epoch: int | None) -> dict[str, Any]:
    """What `metrics.json` adds for a trial pruned after `epoch` (nothing when it was not)."""
    return {} if epoch is None else {"status": PRUNED, "pruned_epoch": epoch}


def trial_pruned(number: int, epoch: int) -> optuna.TrialPruned:
    """What a pruned trial's job ends with, so that the sweeper records the trial as PRUNED."""
    return optuna.TrialPruned(f"trial {number} pruned by the study's pruner after epoch {epoch} (0-based)")


class TrialPruning(PyTorchLightningPruningCallback):
    def __init__(self, trial: optuna.Trial, monitor: str) -> None:
        super().__init__(trial, monitor)
        self.trial = trial
        self.pruned_epoch: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and last_epoch(trainer.current_epoch, trainer.max_epochs):
            value = trainer.callback_metrics.get(self.monitor)
            if trainer.is_global_zero and value is not None:  # reported, never pruned (`report`)
                self.trial.report(float(value), step=trainer.current_epoch)
            return
        try:
            super().on_validation_end(trainer, pl_module)
        except optuna.TrialPruned:
            self.pruned_epoch = trainer.current_epoch
            trainer.should_stop = True

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        log_pruned(trainer.loggers, self.pruned_epoch is not None, trainer.global_step)

    def outcome(self) -> dict[str, Any]:
        """What `metrics.json` adds for a pruned trial."""
        return pruned_record(self.pruned_epoch)

    def raise_if_pruned(self) -> None:
        """After fit: TrialPruned if the pruner stopped this trial (in this process or, under DDP, rank 0)."""
        self.check_pruned()
        if self.pruned_epoch is not None:
            raise trial_pruned(self.trial.number, self.pruned_epoch)
