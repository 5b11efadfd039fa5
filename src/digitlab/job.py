"""Run checked jobs: the one function every way of training calls (`run_checked_jobs`: `digitlab-train`,
`digitlab.api.run`, the basic, joblib and SLURM launchers through the task function, the stacked launcher for
the jobs it stacks), as Hydra's launchers all call `run_job`.

A job is checked whole before any work (`check_job`: the composed config, and that its folder holds no
earlier run unless it resumes it), once: where the sweep's check or `OutputDirsCheck` checked it in its
folder, its run only checks the folder again, under its lock. Then it is trained, alone (`training.train`)
or stacked with others (`stacked.training.train_stack`); both resume and report to the Optuna trial the job
may be. What it returns to a sweeper is `optimized(metrics, cfg.optimized_metric)`. `OutputDirsCheck` (a
Hydra callback, conf/hydra/default.yaml) checks a single run's job, and the run or sweep folder, before Hydra
makes that folder.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

import digitlab.config.checks as checks
from digitlab.run_lock import holding

log = logging.getLogger(__name__)

# The jobs this process checked in their folders, by (folder, command line): `run_checked_job` does not
# check them again.
_checked: set[tuple[str, tuple[str, ...]]] = set()


def check_job(
    cfg: DictConfig,
    choices: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    dataset: bool = True,
    machine: bool = True,
) -> None:
    """ConfigError naming the first bad value, choice or folder of this job (DataError: its dataset)."""
    checks.validate(cfg, choices, overrides, dataset, machine)
    output_dir = OmegaConf.select(cfg, "paths.output_dir")
    _check_folder(cfg)
    if output_dir and machine:  # a job that runs elsewhere checks its machine there, again
        _checked.add(_job_key(output_dir, overrides))
    log.debug("job checked: %s", output_dir)  # `hydra.verbose=digitlab.job` shows each check


def _check_folder(cfg: DictConfig) -> None:
    output_dir = OmegaConf.select(cfg, "paths.output_dir")
    if output_dir and not cfg.get("resume") and not cfg.get("lr_find"):
        checks.check_holds_no_run(output_dir)


def _job_key(output_dir: str, overrides: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    return str(Path(str(output_dir)).absolute()), tuple(overrides)


def job_config(config: DictConfig, output_dir: str | Path) -> tuple[DictConfig, Any, list[str]]:
    """A job as its task will see it, from its Hydra config before Hydra makes its folder: the config with
    `hydra.runtime.output_dir` set to `output_dir` (in place, as Hydra's `run_job` sets it; the checks read
    past the `hydra` node, so it is not copied away), its group choices and its command line. Leaves
    `HydraConfig` set to this job, so `${hydra:...}` values resolve to its own."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
        config.hydra.runtime.output_dir = str(Path(str(output_dir)).absolute())
    # What `HydraConfig.set_config` does, but for its deep copy of the `hydra` node (a sweep of 256 jobs
    # paid 1.5 s for it): `HydraConfig.get()` reads `cfg.hydra`, here the job's own node, frozen as Hydra
    # freezes its copy.
    OmegaConf.set_readonly(config.hydra, True)
    HydraConfig.instance().cfg = config
    return config, config.hydra.runtime.choices, list(config.hydra.overrides.task)


def resolved_task(config: DictConfig) -> DictConfig:
    """The job's config as its task function receives it (`hydra` left out), resolved, a config of its own;
    `HydraConfig` set to the job (`job_config`), so its `${hydra:...}` values are its own. Copied and
    resolved in place: a round trip through plain containers (`to_container`, then `create`) took half as
    long again (19 against 13 ms a job, measured at the chapter's linear experiment)."""
    task = OmegaConf.masked_copy(config, [key for key in config if key != "hydra"])
    OmegaConf.resolve(task)
    return task


def check_sweep(
    config_loader: Any, config: DictConfig, jobs: Sequence[Sequence[str]], placed: bool = True
) -> None:
    """Every job of a sweep composed and checked (`check_job`) before the first one trains, as the launcher
    will number and place it: ConfigError naming the first bad job's overrides. Whatever the launcher
    (basic, joblib, stacked, slurm), one bad job refuses the whole sweep before any folder is made.
    `placed=False`: the jobs stand for the trials a search may ask (`SearchSpace.corners`), whose folders
    are not known yet; their values are checked, not their folders."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from omegaconf import open_dict

    from digitlab.errors import ConfigError

    datasets: dict[str, DictConfig] = {}  # checked once every job's settings passed
    here = not checks.runs_elsewhere(config)  # else each job checks its machine where it runs
    try:
        for idx, overrides in enumerate(jobs):
            which = f"{f'job #{idx}' if placed else 'a trial'} of this sweep ({' '.join(overrides)})"
            try:
                sweep_config = config_loader.load_sweep_config(config, list(overrides))
                with open_dict(sweep_config):
                    sweep_config.hydra.job.id = sweep_config.hydra.job.num = idx
                folder = Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)
                job = job_config(sweep_config, folder)
                if placed:
                    check_job(*job, dataset=False, machine=here)
                else:
                    checks.validate(*job, dataset=False, machine=here)
                data = checks.dataset_of(job[0])
                if data is not None:
                    datasets.setdefault(str(data), data)
                if placed and hasattr(config_loader, "note_checked"):  # digitlab's `SweepConfigCache`
                    config_loader.note_checked(config, list(overrides), resolved_task(job[0]))
            except ConfigError as err:
                raise ConfigError(
                    f"{which}: {err} Nothing was run: every job of a sweep is checked before the first one trains."
                ) from None
            except HydraException as err:
                raise ConfigError(
                    f"{which} cannot be composed: {str(err).splitlines()[0]} Nothing was run: every job of a "
                    "sweep is checked before the first one trains."
                ) from None
        for data in datasets.values():
            checks.check_dataset(data)
    finally:
        HydraConfig.instance().set_config(config)


@dataclass
class CheckedJob:
    """A job ready to run: its task config (`cfg`), the group choices and command line its check names
    (`choices`, `overrides`), its Hydra config (`hydra`, for the Optuna trial it may be), and, for a trial
    of a stack that resumes, the checkpoint it continues from (`resume_from`, `stacked.resume.plan`)."""

    cfg: DictConfig
    choices: Mapping[str, Any] | None = None
    overrides: Sequence[str] = ()
    hydra: Any = None
    resume_from: str | None = None


def run_checked_jobs(jobs: Sequence[CheckedJob]) -> list[dict[str, Any] | Exception]:
    """The one function that runs checked jobs, as Hydra's launchers all call `run_job`: the CLI, the
    Python API and every launcher reach it. Each job's run folder is held (`run_lock`) and its job checked
    there (only the folder, now held, when this process checked the job there already); then one job trains
    alone (`training.train`) and several as one stacked fit (`stacked.training.train_stack`, for the jobs
    `stacked.grouping` stacks). Per job its outcome: its final metrics, or the exception that ended it."""
    with contextlib.ExitStack() as held:
        outcomes: list[dict[str, Any] | Exception | None] = []
        for job in jobs:
            try:
                held.enter_context(holding(job.cfg.paths.output_dir))
                if _job_key(job.cfg.paths.output_dir, job.overrides) in _checked:
                    _check_folder(job.cfg)
                else:
                    check_job(job.cfg, job.choices, job.overrides)
                outcomes.append(None)
            except Exception as err:  # this job is refused; the others still run
                outcomes.append(err)
        ready = [k for k, outcome in enumerate(outcomes) if outcome is None]
        if len(jobs) == 1 and ready:  # a job alone: any net, lr_find, DDP
            from digitlab.training import train

            try:
                outcomes[0] = train(jobs[0].cfg)
            except Exception as err:
                outcomes[0] = err
        elif ready:  # a stack: its trials' outcomes, one failing without the others'
            from digitlab.stacked.training import train_stack

            trained = train_stack(
                [jobs[k].cfg for k in ready],
                [jobs[k].hydra for k in ready],
                [jobs[k].resume_from for k in ready],
            )
            for k, outcome in zip(ready, trained, strict=True):
                outcomes[k] = outcome
        return outcomes  # type: ignore[return-value]


def run_checked_job(
    cfg: DictConfig, choices: Mapping[str, Any] | None = None, overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """`run_checked_jobs` for one job: its final metrics, or the exception that ended it raised."""
    (outcome,) = run_checked_jobs([CheckedJob(cfg, choices, overrides)])
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def optimized(metrics: dict[str, Any], names: str | Sequence[str] | None) -> float | list[float] | None:
    """What a sweeper optimizes: the metric `optimized_metric` names, or a list for a list of names."""
    if names is None or isinstance(names, str):
        return metrics.get(names) if names else None
    return [metrics.get(name) for name in names]


class OutputDirsCheck(Callback):
    """Hydra makes the run folder (or the sweep folder) before digitlab's code runs, and an unwritable one
    ends in its traceback; this checks it first, naming the key the user set (`paths.log_dir` when the
    folder is under it, else `hydra.run.dir` / `hydra.sweep.dir`). For a single run it also checks the whole
    job (`check_job`) there, so that a refused command leaves no run folder behind."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")
        from digitlab.process import exit_on_error
        from digitlab.run_lock import check_free, hold

        with exit_on_error("digitlab-train"):
            folder = Path(str(config.hydra.run.dir))
            check_free(folder)  # another command's run may be writing it: say so, not what it holds
            check_job(*job_config(config, folder))
            # Held from here for the process's life, before Hydra writes anything into the folder.
            hold(folder)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, dir_key: str) -> None:
        from hydra.core.hydra_config import HydraConfig

        from digitlab.process import exit_on_error

        HydraConfig.instance().set_config(config)  # what Hydra does before it resolves the folder itself
        with exit_on_error("digitlab-train"):
            folder = Path(OmegaConf.select(config, dir_key)).absolute()
            log_dir = Path(config.paths.log_dir).absolute()
            typed = {o.split("=", 1)[0] for o in config.hydra.overrides.hydra}
            under_log_dir = log_dir in (folder, *folder.parents) and dir_key not in typed
            checks.check_creatable(
                "paths.log_dir" if under_log_dir else dir_key, log_dir if under_log_dir else folder
            )
