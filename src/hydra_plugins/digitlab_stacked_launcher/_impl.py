"""Launch a batch of jobs: set each one up as Hydra would (its folder, `.hydra/`, its log file) and check its
config, group the ones that can share a training loop (`digitlab.stacked.grouping`), train each group of two
or more as one stacked fit (at most `max_stack` trials each), and run the rest one at a time through the
task function, as the basic launcher would. One `JobReturn` per job, in the order given.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict

from digitlab.console import job_line, quiet_console, say, verbose

log = logging.getLogger(__name__)


@dataclass
class Job:
    idx: int
    sweep_config: DictConfig
    prepared: JobReturn
    cfg: DictConfig | None = None  # the composed job config, resolved (None: it failed its checks)
    hydra: DictConfig | None = None  # its Hydra config (`hydra` node): which Optuna trial it is, if any
    key: str | None = None  # equal keys stack
    why: str = ""  # why it runs alone
    resume_from: str | None = None  # resume=true: the checkpoint it continues from


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    setup_globals()
    config = launcher.config
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    log.info("Launching %d jobs, stacked where they can be", len(job_overrides))
    started = time.perf_counter()
    jobs = [_prepare(launcher, initial_job_idx + i, overrides) for i, overrides in enumerate(job_overrides)]
    say("%d job folders set up and checked in %.1f s", len(jobs), time.perf_counter() - started)

    groups: dict[str, list[Job]] = {}
    alone: list[Job] = []
    for job in jobs:
        if job.cfg is None:
            continue  # failed its checks: `prepared` holds the error
        if job.key is None:
            alone.append(job)
        else:
            groups.setdefault(job.key, []).append(job)
    returns: dict[int, JobReturn] = {job.idx: job.prepared for job in jobs if job.cfg is None}
    for group in groups.values():
        for start in range(0, len(group), launcher.max_stack):
            chunk = group[start : start + launcher.max_stack]
            if len(chunk) == 1:
                chunk[
                    0
                ].why = "no other job of this batch differs from it only in seed, optimizer and scheduler settings"
                alone.append(chunk[0])
            else:
                returns |= _train_stacked(chunk)
    for job in sorted(alone, key=lambda j: j.idx):
        say("#%d runs alone: %s", job.idx, job.why)  # which jobs do not stack, and why: what a user tunes by
        returns[job.idx] = run_job(
            hydra_context=launcher.hydra_context,
            task_function=launcher.task_function,
            config=job.sweep_config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
    return [returns[job.idx] for job in jobs]


def _prepare(launcher: Any, idx: int, overrides: Sequence[str]) -> Job:
    """The job's folder, `.hydra/` and checks (unless the sweeper checked it), made by Hydra's own `run_job`
    around a task that only looks."""
    from digitlab.errors import DigitlabError
    from digitlab.job import check_job
    from digitlab.stacked import resume
    from digitlab.stacked.grouping import stack_key

    if verbose(launcher.config.hydra.verbose):  # quiet: each trial's line says it when the trial ends
        log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
    sweep_config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = idx
        sweep_config.hydra.job.num = idx
    job = Job(idx, sweep_config, prepared=None)  # type: ignore[arg-type]

    loader = launcher.hydra_context.config_loader
    checked = hasattr(loader, "was_checked") and loader.was_checked(launcher.config, list(overrides))

    def look(cfg: DictConfig) -> None:
        hydra_cfg = HydraConfig.get()
        try:
            if not checked:  # the sweeper checked it in its folder already (`job.check_sweep`)
                check_job(cfg, hydra_cfg.runtime.choices, list(hydra_cfg.overrides.task))
        except DigitlabError as err:
            log.error("%s", err)
            raise
        # Resolved now: `${hydra:...}` values (the run folder) are this job's only while it is being set up.
        job.cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
        job.key, job.why = stack_key(job.cfg)
        if job.key is not None and job.cfg.get("resume"):
            point, job.resume_from = resume.plan(job.cfg)
            if point is None:
                job.key, job.why = None, "it is complete (resume=true skips it)"
            else:
                job.key += f" resuming from {point}"  # only trials at the same point share the loops

    # `run_job` only sets `hydra.runtime.output_dir` on the config it is given (to the value a later
    # `run_job` of the same config sets again) and works on copies, so a job that runs alone reuses it.
    job.prepared = run_job(
        hydra_context=launcher.hydra_context,
        task_function=look,
        config=sweep_config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    if job.prepared.status == JobStatus.FAILED:
        job.cfg = None
    else:
        job.hydra = job.prepared.hydra_cfg.hydra  # run_job's own copy of the job's Hydra config
    return job


def _train_stacked(chunk: list[Job]) -> dict[int, JobReturn]:
    import lightning  # noqa: F401 (before the process policy, which replaces the log handler it adds)

    from digitlab.job import optimized
    from digitlab.process import apply_process_policy
    from digitlab.stacked.training import train_stack

    apply_process_policy()
    quiet = not verbose(chunk[0].hydra.verbose)
    if quiet:
        quiet_console()  # Lightning's notes for the fit; each trial's line follows it

    say("#%s: %d trials stacked in one fit", ",".join(str(j.idx) for j in chunk), len(chunk))
    started = time.perf_counter()
    try:
        outcomes = train_stack(
            [job.cfg for job in chunk], [job.hydra for job in chunk], [job.resume_from for job in chunk]
        )
    except Exception as err:  # the stack failed as a whole: every trial did
        log.error("the stacked fit failed: %s", err)
        outcomes = [err] * len(chunk)
    say("%d stacked trials trained and written in %.1f s", len(chunk), time.perf_counter() - started)
    returns = {}
    for job, outcome in zip(chunk, outcomes, strict=True):
        ret = job.prepared
        if isinstance(outcome, Exception):
            ret.return_value = outcome
            ret.status = JobStatus.FAILED
        else:
            ret.return_value = optimized(outcome, job.cfg.get("optimized_metric"))
            ret.status = JobStatus.COMPLETED
        if quiet:
            metrics, error = (None, outcome) if isinstance(outcome, Exception) else (outcome, None)
            print(job_line(job.idx, ret.overrides or [], metrics, job.cfg.get("optimized_metric"), error))
        returns[job.idx] = ret
    return returns
