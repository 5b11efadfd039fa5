"""Run one checked job: the one function every way of training calls (`digitlab-train`, `digitlab.api.run`,
and the stacked launcher for the jobs it checks and stacks), as Hydra's launchers all call `run_job`.

A job is checked whole before any work (`check_job`: the composed config, and that its folder holds no
earlier run unless it resumes it), then trained (`training.train`, which resumes and reports to the Optuna
trial the job may be). What it returns to a sweeper is `optimized(metrics, cfg.optimized_metric)`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf


def check_job(
    cfg: DictConfig, choices: Mapping[str, Any] | None = None, overrides: Sequence[str] = ()
) -> None:
    """ConfigError naming the first bad value, choice or folder of this job."""
    from digitlab.config.checks import check_holds_no_run, validate

    validate(cfg, choices, overrides)
    output_dir = OmegaConf.select(cfg, "paths.output_dir")
    if output_dir and not cfg.get("resume") and not cfg.get("lr_find"):
        check_holds_no_run(output_dir)


def run_checked_job(
    cfg: DictConfig, choices: Mapping[str, Any] | None = None, overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """Check the job, then train it; its final metrics (`metrics.json`)."""
    from digitlab.training import train

    check_job(cfg, choices, overrides)
    return train(cfg)


def optimized(metrics: dict[str, Any], names: str | Sequence[str] | None) -> float | list[float] | None:
    """What a sweeper optimizes: the metric `optimized_metric` names, or a list for a list of names."""
    if names is None or isinstance(names, str):
        return metrics.get(names) if names else None
    return [metrics.get(name) for name in names]
