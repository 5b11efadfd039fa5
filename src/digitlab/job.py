"""Run one checked job: the one function every way of training calls (`digitlab-train`, `digitlab.api.run`,
and the stacked launcher for the jobs it checks and stacks), as Hydra's launchers all call `run_job`.

A job is checked whole before any work (`check_job`: the composed config, and that its folder holds no
earlier run unless it resumes it), once: where the sweep's check or `OutputDirsCheck` checked it in its
folder, its task only checks the folder again, under its lock. Then it is trained (`training.train`, which resumes and reports to the Optuna
trial the job may be). What it returns to a sweeper is `optimized(metrics, cfg.optimized_metric)`.
`OutputDirsCheck` (a Hydra callback, conf/hydra/default.yaml) checks a single run's job, and the run or sweep
folder, before Hydra makes that folder.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

import digitlab.config.checks as checks

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


def run_checked_job(
    cfg: DictConfig, choices: Mapping[str, Any] | None = None, overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """Hold the job's run folder (`run_lock`), check the job (only its folder, now held, when this process
    checked it there already), then train it; its final metrics."""
    from digitlab.run_lock import holding
    from digitlab.training import train

    with holding(cfg.paths.output_dir):
        if _job_key(cfg.paths.output_dir, overrides) in _checked:
            _check_folder(cfg)
        else:
            check_job(cfg, choices, overrides)
        return train(cfg)


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
