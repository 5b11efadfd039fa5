"""What a run records about itself: hparams for TensorBoard's HParams table, its composed config, resolved,
in `config.json` (what compare reads) and in every checkpoint (so eval and predict need the checkpoint
alone), and `metrics.json`, written last.

The hparams are written when fit starts as a session-start summary only. Without a per-run experiment
summary, TensorBoard builds the experiment from all runs' sessions: its metric columns are the scalars the
runs log (`val/acc`, ... with their latest values, so a finished run shows its final metrics), and the
hparams that differ between runs (a sweep's swept values) are shown first. `metrics.json` is written
atomically at the end of fit, so its presence means the run completed.
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from typing import Any, Protocol

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger

from digitlab.rundir import COMPLETED, CONFIG_KEY, Run


class Outcome(Protocol):
    """A callback that can end a fit early on purpose (Optuna pruning) says so in `metrics.json`."""

    def outcome(self) -> dict[str, Any]: ...


def log_hparams(loggers: list[Any], hparams: dict[str, Any]) -> None:
    """The run's hparams: for TensorBoard a session-start summary only (see above), else the logger's own."""
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            _, session_start, _ = hparams_summary(hparams, {})
            logger.experiment._get_file_writer().add_summary(session_start)
        else:
            logger.log_hyperparams(hparams)


class RunResults(L.Callback):
    def __init__(
        self,
        output_dir: str | Path,
        hparams: dict[str, Any],
        config: dict[str, Any],
        outcome: Outcome | None = None,
    ) -> None:
        self.run = Run(output_dir)
        self.outcome = outcome
        self.hparams = hparams
        self.config = config
        self._started = time.perf_counter()
        self._epoch_started = self._started
        self._epoch_times: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning validates inside the training epoch, so this spans training and validation.
        self._epoch_times.append(time.perf_counter() - self._epoch_started)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint[CONFIG_KEY] = self.config

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()
        if trainer.global_rank != 0:
            return
        self.run.write_config(self.config)
        log_hparams(trainer.loggers, self.hparams)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        metrics: dict[str, Any] = {
            name: float(value)
            for name, value in sorted(trainer.callback_metrics.items())
            if value.numel() == 1 and math.isfinite(float(value))
        }
        metrics |= {
            "status": COMPLETED,
            "epochs": trainer.current_epoch,
            "steps": trainer.global_step,
            "wall_time_s": round(time.perf_counter() - self._started, 3),
            "epoch_time_s": round(statistics.median(self._epoch_times), 4) if self._epoch_times else None,
            "parameters": sum(p.numel() for p in pl_module.parameters()),
        }
        metrics |= self.outcome.outcome() if self.outcome else {}
        self.run.write_metrics(metrics)
