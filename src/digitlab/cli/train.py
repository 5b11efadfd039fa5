"""`digitlab-train [overrides]` (or `python -m digitlab.cli.train`): compose, check, train, report.

The command line is checked before Hydra composes (`check_group_overrides`), the run or sweep folder before
Hydra creates it (`job.OutputDirsCheck`, conf/hydra/default.yaml), the composed config before any data work
(`job.check_job`); each failure is one paragraph naming what was typed. The job itself is
`job.run_checked_job`.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

import digitlab.console as console
from digitlab.config.checks import check_group_overrides, check_override_grammar, check_override_keys
from digitlab.config.location import config_dir, register_resolvers
from digitlab.errors import DigitlabError
from digitlab.process import apply_process_policy, exit_on_error
from digitlab.rundir import LR_FIND_PNG

log = logging.getLogger(__name__)


def report(
    metrics: dict[str, Any], output_dir: Path, log_root: Path, overrides: list[str], loggers: Any = None
) -> None:
    if "suggested_lr" in metrics:
        lr = metrics["suggested_lr"]
        kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in ("lr_find", "optimizer.lr")]
        command = shlex.join(["digitlab-train", *kept, f"optimizer.lr={lr:.3g}"])
        searched = f"lr {metrics['min_lr']:.0e} to {metrics['max_lr']:.0e}, {metrics['steps']} steps"
        if not metrics.get("diverged", True):
            searched += ", the loss never passed 4x its lowest"
        print(f"\nSuggested learning rate: {lr:.3g}  ({searched}; plot: {output_dir / LR_FIND_PNG})")
        print(f"Train with it:\n  {command}\n")
        return
    shown = {k: v for k, v in metrics.items() if k.startswith("val/")}
    print("\nFinal validation metrics:")
    for key, value in shown.items():
        print(f"  {key:<16} {value:.4f}")
    print(f"  (epochs {metrics['epochs']}, {metrics['wall_time_s']:.1f} s)")
    print(f"Run outputs:  {output_dir}  (metrics.json, checkpoints/, TensorBoard events, .hydra/)")
    # Every run under log_root side by side, unless this one was put elsewhere (hydra.run.dir=/tmp/x).
    shown_root = log_root if log_root.absolute() in output_dir.absolute().parents else output_dir
    loggers = loggers if loggers is not None else {"tensorboard": {}}
    if "tensorboard" in loggers:
        print(f"TensorBoard:  tensorboard --logdir {shown_root}")
    if "mlflow" in loggers:
        mlflow = loggers["mlflow"]
        print(
            f"MLflow:       mlflow ui --backend-store-uri {mlflow.get('tracking_uri')}  (experiment "
            f"{mlflow.get('experiment_name')!r}, run {mlflow.get('run_name')!r}: params, metrics, pictures, "
            "best checkpoint)"
        )
    print()


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def main(cfg: DictConfig) -> float | None:
    import lightning  # noqa: F401 (before the process policy, which replaces the log handler it adds)
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from digitlab.job import optimized, run_checked_job

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    apply_process_policy()  # also in the worker processes of hydra/launcher=joblib, which never run cli()
    quiet = multirun and not console.verbose(hydra_cfg.verbose)
    if quiet:
        console.quiet_console()  # this job's train.log keeps every line
    overrides = list(hydra_cfg.overrides.task)
    try:
        metrics = run_checked_job(cfg, hydra_cfg.runtime.choices, overrides)
    except DigitlabError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        log.error("%s", err)  # on the console and in the run's train.log
        if multirun:
            raise  # the launcher marks this job failed; the sweep's other jobs still run
        sys.exit(1)
    if quiet:
        print(
            console.job_line(hydra_cfg.job.num, overrides, metrics, cfg.get("optimized_metric")), flush=True
        )
    else:
        log_root = hydra_cfg.sweep.dir if multirun else cfg.paths.log_dir
        loggers = OmegaConf.to_container(cfg.logger, resolve=True) if cfg.get("logger") else {}
        report(metrics, Path(cfg.paths.output_dir), Path(log_root), overrides, loggers)
    return optimized(metrics, cfg.get("optimized_metric"))


def cli() -> None:
    """The `digitlab-train` command."""
    apply_process_policy()
    register_resolvers()
    sys.argv[1:] = console.take_verbose_flag(sys.argv[1:])
    with exit_on_error("digitlab-train"):
        check_override_grammar(sys.argv[1:])
        check_group_overrides(sys.argv[1:])
        check_override_keys(sys.argv[1:])
    main()


if __name__ == "__main__":
    cli()
