"""A Hydra job's life when its training is not its own call: the jobs of a stack train in one fit.

Hydra's `run_job` sets a job up (its folder, `.hydra/`, its log), fires `on_job_start`, calls the task and
fires `on_job_end` with the `JobReturn`. A stack cannot call a task per job, so the launcher splits that life
around the one fit: `open_job` before it (what `run_job` does before the task), `close_job` after it (what it
does after), so Hydra's job callbacks fire around the real training, as under `run_job`. `job_return` is the
one place a job's outcome (its metrics, or the error that ended it) becomes a `JobReturn`.

Per job this is cheap at K = 256: the job's config is the one the sweeper composed and checked (never copied
again), `.hydra/*.yaml` is written by libyaml's emitter with OmegaConf's own quoting, and the stack has one log
file, made for its first job and linked into every other job's folder under the name Hydra gives a job's log.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf

from digitlab.atomic import together, write_text

log = logging.getLogger(__name__)


@dataclass
class OpenJob:
    config: DictConfig  # the job's whole config, `hydra` included, with `hydra.runtime.output_dir` set
    output_dir: Path


def job_folder(config: DictConfig) -> Path:
    """The folder `run_job` gives a sweep's job: `hydra.sweep.dir` / `hydra.sweep.subdir`, absolute."""
    return Path(str(config.hydra.sweep.dir), str(config.hydra.sweep.subdir)).absolute()


def open_job(hydra_context: Any, config: DictConfig, task_function: Any) -> OpenJob:
    """The job set up as `run_job` sets it up, then `on_job_start` (`config`: set up by `job.job_config`)."""
    return open_jobs(hydra_context, [config], task_function)[0]


def open_jobs(hydra_context: Any, configs: list[DictConfig], task_function: Any) -> list[OpenJob]:
    """`open_job` for each of a stack's jobs: every job's `.hydra/` files committed together (one disk flush
    for all, `atomic.together`, rather than an fsync a file: 768 files at 256 trials), then `on_job_start`
    job by job, each job's files in place before its own."""
    opened = [OpenJob(config, Path(str(config.hydra.runtime.output_dir))) for config in configs]
    with together():
        for job in opened:
            write_hydra_files(job.config, job.output_dir)
    if _listens(hydra_context, "on_job_start"):
        for job in opened:
            _current(job.config)
            hydra_context.callbacks.on_job_start(config=job.config, task_function=task_function)
    return opened


def write_hydra_files(config: DictConfig, output_dir: Path) -> None:
    """The job's folder with `.hydra/config.yaml`, `hydra.yaml` and `overrides.yaml`, as `run_job` writes
    them (none where `hydra.output_subdir` is null). Every job digitlab sets up itself (a stack's, the Python
    API's) is recorded by this one writer; the others by Hydra's `run_job`."""
    output_dir.mkdir(parents=True, exist_ok=True)
    if config.hydra.output_subdir is None:
        return
    hydra_dir = output_dir / str(config.hydra.output_subdir)
    whole = OmegaConf.to_container(config, resolve=False, enum_to_str=True)
    hydra = whole.pop("hydra")
    write_text(hydra_dir / "config.yaml", to_yaml(whole))
    write_text(hydra_dir / "hydra.yaml", to_yaml({"hydra": hydra}))
    write_text(hydra_dir / "overrides.yaml", to_yaml(hydra["overrides"]["task"]))


def close_job(hydra_context: Any, job: OpenJob, outcome: Any, optimized_metric: Any) -> JobReturn:
    """The job's `JobReturn` (`job_return`), then `on_job_end`, as `run_job` ends a job."""
    ret = job_return(outcome, optimized_metric, list(job.config.hydra.overrides.task))
    ret.working_dir = os.getcwd()
    ret.task_name = str(job.config.hydra.job.name)
    if _listens(hydra_context, "on_job_end"):
        _current(job.config)
        ret.cfg = OmegaConf.masked_copy(job.config, [k for k in job.config if k != "hydra"])
        ret.hydra_cfg = OmegaConf.masked_copy(job.config, "hydra")
        hydra_context.callbacks.on_job_end(config=job.config, job_return=ret)
    return ret


def job_return(outcome: Any, optimized_metric: Any, overrides: list[str]) -> JobReturn:
    """A job's outcome as Hydra's launchers return it: metrics -> COMPLETED with the optimized value (the
    task function's return value, `job.optimized`); an exception -> FAILED with it."""
    from digitlab.job import optimized

    ret = JobReturn(overrides=overrides)
    if isinstance(outcome, BaseException):
        ret.status, ret.return_value = JobStatus.FAILED, outcome
    else:
        ret.status, ret.return_value = JobStatus.COMPLETED, optimized(outcome, optimized_metric)
    return ret


def finished_return(run_dir: str | Path | None, optimized_metric: Any, number: int) -> JobReturn | None:
    """The `JobReturn` of trial `number`'s job read back from its run folder, if that run finished
    (`metrics.json` says completed or pruned), whatever happened to the process that ran it afterwards:
    what the job returned, or the `TrialPruned` it ended with. None for a run that did not finish."""
    from digitlab.callbacks.pruning import trial_pruned
    from digitlab.rundir import PRUNED, Run

    if not run_dir or not Path(run_dir).is_dir():
        return None
    run = Run(Path(run_dir))
    if not run.completed:
        return None
    metrics = run.metrics or {}
    outcome = (
        trial_pruned(number, metrics.get("pruned_epoch", metrics.get("epochs")))
        if run.status == PRUNED
        else metrics
    )
    return job_return(outcome, optimized_metric, run.overrides)


def share_log(first: OpenJob, others: list[OpenJob]) -> None:
    """The log file Hydra's job logging opened for `first` (configured for it) linked into the others'
    folders under the same name, so each job of the stack keeps the stack's whole log as its own."""
    for handler in logging.getLogger().handlers:
        name = getattr(handler, "baseFilename", None)
        if name is None or first.output_dir not in Path(name).parents:
            continue
        relative = Path(name).relative_to(first.output_dir)
        for job in others:
            target = job.output_dir / relative
            target.unlink(missing_ok=True)
            try:
                os.link(name, target)
            except OSError:  # a file system without hard links: a pointer to the shared log instead
                write_text(target, f"this job trained in a stack; its log is {name}\n")


def to_yaml(container: Any) -> str:
    """What `OmegaConf.to_yaml` writes for the config `container` is (unresolved, enums as text), emitted by
    libyaml where PyYAML has it: several times faster at a job's config."""
    import yaml

    return yaml.dump(
        container, Dumper=_dumper(), default_flow_style=False, allow_unicode=True, sort_keys=False
    )


@functools.cache
def _dumper() -> Any:
    import yaml

    from digitlab.compat.omegaconf import yaml_string_representer

    base = getattr(yaml, "CDumper", yaml.Dumper)

    class Dumper(base):  # type: ignore[misc, valid-type]
        pass

    Dumper.add_representer(str, yaml_string_representer())  # quotes '1', 'true', ... as OmegaConf does
    return Dumper


def _listens(hydra_context: Any, hook: str) -> bool:
    """Whether a configured Hydra callback overrides `hook` (else setting up its arguments is skipped)."""
    from hydra.experimental.callback import Callback

    callbacks = getattr(hydra_context.callbacks, "callbacks", [])
    return any(getattr(type(c), hook, None) is not getattr(Callback, hook) for c in callbacks)


def _current(config: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(config)
