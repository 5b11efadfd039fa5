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


class TrialPruning(PyTorchLightningPruningCallback):
    def __init__(self, trial: optuna.Trial, monitor: str) -> None:
        super().__init__(trial, monitor)
        self.pruned_epoch: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        try:
            super().on_validation_end(trainer, pl_module)
        except optuna.TrialPruned:
            self.pruned_epoch = trainer.current_epoch
            trainer.should_stop = True

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # TensorBoard's HParams table shows the scalars a run logs as its metric columns: this one tells the
        # pruned trials (1) from the completed ones (0).
        for logger in trainer.loggers:
            logger.log_metrics(
                {PRUNED_SCALAR: float(self.pruned_epoch is not None)}, step=trainer.global_step
            )

    def outcome(self) -> dict[str, Any]:
        """What `metrics.json` adds for a pruned trial."""
        if self.pruned_epoch is None:
            return {}
        return {"status": PRUNED, "pruned_epoch": self.pruned_epoch}

    def raise_if_pruned(self) -> None:
        """After fit: TrialPruned if the pruner stopped this trial (in this process or, under DDP, rank 0)."""
        self.check_pruned()
        if self.pruned_epoch is not None:
            raise optuna.TrialPruned(
                f"trial {self._trial.number} pruned by the study's pruner after epoch {self.pruned_epoch} (0-based)"
            )
