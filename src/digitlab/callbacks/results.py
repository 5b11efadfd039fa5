"""A single run's record (`digitlab.record.RunRecord`) kept by Lightning's callback hooks: config, provenance
and hparams when fit starts, the composed config in every checkpoint (so eval and predict need the checkpoint
alone) with the record so far (so a resumed run's `metrics.json` is the uninterrupted run's), and
`metrics.json` last: completed or pruned when fit ends, failed or interrupted when an error or a signal ends it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol

import lightning as L

from digitlab.checkpoint_format import CONFIG_KEY, RECORD_CALLBACK
from digitlab.faults import pause_point
from digitlab.loggers import log_run_artifacts
from digitlab.record import RunRecord, log_by_epoch
from digitlab.rundir import COMPLETED, Run


class Outcome(Protocol):
    """A callback that can end a fit early on purpose (Optuna pruning) says so in `metrics.json`."""

    def outcome(self) -> dict[str, Any]: ...


def logged_metrics(trainer: L.Trainer) -> dict[str, float]:
    """The scalars logged so far this fit (validation and training epoch metrics), finite ones only."""
    return {
        name: float(value)
        for name, value in trainer.callback_metrics.items()
        if value.numel() == 1 and math.isfinite(float(value))
    }


class RunResults(L.Callback):
    def __init__(
        self,
        output_dir: str | Path,
        hparams: dict[str, Any],
        config: dict[str, Any],
        outcome: Outcome | None = None,
    ) -> None:
        self.record = RunRecord(Run(output_dir), config, hparams)
        self.outcome = outcome
        self._trainer: L.Trainer | None = None

    @property
    def state_key(self) -> str:
        return RECORD_CALLBACK  # where a checkpoint keeps the record (`checkpoint_format`)

    @property
    def run(self) -> Run:
        return self.record.run

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        self._note_metrics()
        return self.record.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.record.load_state_dict(state_dict)

    def _note_metrics(self) -> None:
        # Nothing logged yet in this fit (a resumed run with no epoch left): the record keeps the restored one.
        if self._trainer is not None and (metrics := logged_metrics(self._trainer)):
            self.record.validated(metrics)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint[CONFIG_KEY] = self.record.config

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank == 0:
            self.record.start(trainer.loggers)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.record.epoch_started()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit" and trainer.global_rank == 0:
            log_by_epoch(trainer.loggers, logged_metrics(trainer), trainer.current_epoch + 1)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.record.epoch_ended()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        self._note_metrics()
        pause_point("before_metrics")  # the last checkpoint written, metrics.json not yet (fault tests)
        extra = self.outcome.outcome() if self.outcome else {}
        self.record.finish(
            extra.pop("status", COMPLETED),
            epochs=trainer.current_epoch,
            steps=trainer.global_step,
            parameters=_parameters(pl_module),
            **extra,
        )
        best = getattr(trainer.checkpoint_callback, "best_model_path", None)
        log_run_artifacts(trainer.loggers, self.run.path, best)  # pictures (drawn before), best, record

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if trainer.global_rank != 0 or trainer.state.fn != "fit":
            return
        self._note_metrics()
        self.record.failed(
            exception,
            epochs=trainer.current_epoch,
            steps=trainer.global_step,
            parameters=_parameters(pl_module),
        )


def _parameters(module: L.LightningModule) -> int:
    return sum(p.numel() for p in module.parameters())
