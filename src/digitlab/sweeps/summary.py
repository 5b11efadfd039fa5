"""A Hydra callback: when a multirun ends, its comparison (table, CSV, plots) is written to
`<sweep dir>/compare/`, with the HParams experiment TensorBoard shows for it (`compare/hparams/`), so every
sweep and Optuna study leaves its summary beside its jobs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        report_sweep(Path(config.hydra.sweep.dir))


def report_sweep(sweep_dir: Path) -> None:
    """Write and print the sweep's comparison (when a sweep ends, and before a sweep with failed jobs
    reports them)."""
    from digitlab.analysis.hparams_experiment import write_hparams_experiment
    from digitlab.analysis.summary import write_summary
    from digitlab.errors import DigitlabError
    from digitlab.loggers import log_sweep_artifacts

    try:
        comparison, table, written = write_summary(sweep_dir)
    except DigitlabError as err:  # a sweep whose jobs all failed early leaves nothing to compare
        log.warning("no sweep summary: %s", err)
        return
    print(f"\n{len(comparison.runs)} runs under {sweep_dir}, ranked by {comparison.metric}:\n\n{table}")
    if not written:  # the sweep folder became read-only meanwhile
        log.warning("no sweep summary written: %s is read-only", sweep_dir)
        return
    write_hparams_experiment(comparison, written[0].parent)
    log_sweep_artifacts(sweep_dir, written[0].parent)  # the MLflow sweep's parent run, if it has one
    print(f"Written to {written[0].parent}: {', '.join(p.name for p in written)}")
