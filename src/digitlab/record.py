"""A run's record of its own life, one owner for a single run (`callbacks.results.RunResults`) and for every
trial of a stack (`stacked.records.TrialRecords`):

- at the start: `config.json` (the composed config, resolved), `provenance.json` (what produced the run)
  and, for TensorBoard's HParams table, the hparams;
- every validated epoch: the latest metrics, kept in each checkpoint (`state_dict`), so that a run killed
  after its last checkpoint gets its `metrics.json` from that checkpoint when resumed;
- at the end: `metrics.json` with its `status`: completed, pruned (both finished: `resume=true` skips them),
  failed or interrupted (with the error; `resume=true` continues them). A run killed outright has none.

Every file goes through `digitlab.atomic`.
"""

from __future__ import annotations

import logging
import statistics
import time
from typing import Any

import digitlab.provenance as provenance
from digitlab.atomic import WriteFailed
from digitlab.event_files import add_summary
from digitlab.rundir import COMPLETED, FAILED, INTERRUPTED, PRUNED, Run

log = logging.getLogger(__name__)


def log_hparams(loggers: list[Any], hparams: dict[str, Any]) -> None:
    """The run's hparams. For TensorBoard, a session-start summary only: without a per-run experiment
    summary, TensorBoard builds the experiment from all runs' sessions, its metric columns are the scalars
    the runs log (with their latest values, so a finished run shows its final metrics), and the hparams that
    differ between runs (a sweep's swept values) are shown first."""
    from lightning.pytorch.loggers import TensorBoardLogger
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            _, session_start, _ = hparams_summary(hparams, {})
            add_summary(logger.experiment, session_start)
        else:
            logger.log_hyperparams(hparams)


BY_EPOCH = "by_epoch/"  # TensorBoard tags whose step is the epoch: trials of any batch size line up


def log_by_epoch(loggers: list[Any], metrics: dict[str, float], epochs: int) -> None:
    """Each validation metric again under `by_epoch/<tag>` at step `epochs` (trained so far): TensorBoard's x
    axis is the step, so a batch-64 run's `val/acc` curve is 8x a batch-512 one's; these line up by epoch."""
    values = by_epoch(metrics)
    for logger in loggers if values else ():
        logger.log_metrics(values, step=epochs)


def by_epoch(metrics: dict[str, float]) -> dict[str, float]:
    """The validation metrics under their `by_epoch/` tags (`log_by_epoch`)."""
    return {BY_EPOCH + name: value for name, value in metrics.items() if name.startswith("val/")}


class RunRecord:
    """The record of one run (or one stacked trial) while it trains."""

    def __init__(self, run: Run, config: dict[str, Any], hparams: dict[str, Any]) -> None:
        self.run, self.config, self.hparams = run, config, hparams
        self.latest: dict[str, float] = {}  # the last validated epoch's metrics
        self.epoch_times: list[float] = []
        self.earlier_wall_time = 0.0  # spent before the checkpoint this fit resumed from
        # A stacked trial's own cost: its share of each epoch the stack trained (`charge`), not the clock.
        self.charged: float | None = None
        self._started = time.perf_counter()
        self._epoch_started = self._started

    def start(self, loggers: list[Any]) -> None:
        self._started = time.perf_counter()
        self.run.write_config(self.config)
        self.run.write_provenance(provenance.collect())
        log_hparams(loggers, self.hparams)

    def epoch_started(self) -> None:
        self._epoch_started = time.perf_counter()

    def epoch_ended(self) -> None:
        # Lightning validates inside the training epoch, so this spans training and validation.
        self.epoch_times.append(time.perf_counter() - self._epoch_started)

    def validated(self, metrics: dict[str, float]) -> None:
        self.latest = dict(sorted(metrics.items()))

    def charge(self, seconds: float) -> None:
        """Add `seconds` of a stack's time to this trial's cost (then its `wall_time` is what it was charged)."""
        self.charged = (self.charged or 0.0) + seconds

    def wall_time(self) -> float:
        if self.charged is not None:
            return self.earlier_wall_time + self.charged
        return self.earlier_wall_time + time.perf_counter() - self._started

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint carries of the record."""
        return {"latest": self.latest, "epoch_times": self.epoch_times, "wall_time_s": self.wall_time()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.latest = dict(state.get("latest", {}))
        self.epoch_times = list(state.get("epoch_times", []))
        self.earlier_wall_time = float(state.get("wall_time_s", 0.0))

    def finish(
        self, status: str, *, epochs: int, steps: int, parameters: int, **extra: Any
    ) -> dict[str, Any]:
        """Write `metrics.json`: the last validated epoch's metrics, the status and the run's counts."""
        metrics: dict[str, Any] = dict(self.latest)
        metrics |= {
            "status": status,
            "epochs": epochs,
            "steps": steps,
            "wall_time_s": round(self.wall_time(), 3),
            "epoch_time_s": round(statistics.median(self.epoch_times), 4) if self.epoch_times else None,
            "parameters": parameters,
        }
        metrics |= extra
        self.run.write_metrics(metrics)
        return metrics

    def failed(self, error: BaseException, *, epochs: int, steps: int, parameters: int) -> None:
        """The record of a run an error or a signal ended: `interrupted` for Ctrl-C and SIGTERM (resume
        continues it), `failed` for the rest. A record that cannot be written (the disk that failed the
        run) is logged, not raised: the first error is the one the user sees."""
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        status = INTERRUPTED if isinstance(error, KeyboardInterrupt | SIGTERMException) else FAILED
        try:
            self.finish(
                status,
                epochs=epochs,
                steps=steps,
                parameters=parameters,
                error=f"{type(error).__name__}: {error}" if str(error) else type(error).__name__,
            )
        except WriteFailed as err:
            log.debug("the %s record was not written either: %s", status, err)


__all__ = ["COMPLETED", "FAILED", "INTERRUPTED", "PRUNED", "RunRecord", "log_hparams"]
