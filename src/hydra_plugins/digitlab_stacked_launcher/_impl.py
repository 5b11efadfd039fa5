"""Launch a batch of jobs, or stream a search's trials through one continuous stack (`stream`).

A batch: compose and check each one (or take the sweeper's check of it, `job.check_sweep`),
group the ones that can share a training loop (`digitlab.stacked.grouping`), train each group of two or more
as one stacked fit (at most `max_stack` trials each), and run the rest one at a time through the task
function with Hydra's `run_job`, as the basic launcher would. A stacked job's life is Hydra's too, split
around its fit (`digitlab.sweeps.job_life`): its folder, `.hydra/` and `on_job_start` before the fit, its
`JobReturn` and `on_job_end` after. One `JobReturn` per job, in the order given.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from omegaconf import DictConfig, open_dict

from digitlab.console import job_line, job_numbers, quiet_console, say, verbose

log = logging.getLogger(__name__)


@dataclass
class Job:
    idx: int
    sweep_config: DictConfig  # the job's whole config, `hydra.runtime.output_dir` set
    cfg: DictConfig | None = None  # its task config, resolved (None: it failed its checks)
    failed: JobReturn | None = None  # why it failed its checks
    key: str | None = None  # equal keys stack (None: it runs alone)
    why: str = ""  # why it runs alone
    resume_from: str | None = None  # resume=true: the checkpoint it continues from
    point: str | None = None  # resume=true: where it stands (`stacked.resume.resume_point`)
    passed_over: str | None = None  # a newer checkpoint a slot cannot take it from (`_into_a_slot`)

    @property
    def batch_key(self) -> str | None:
        """Equal keys stack in one batch's fit: only trials at the same point share its loops (a continuous
        stack's slots take a resumed trial at its own point, `_into_a_slot`)."""
        if self.key is None or self.point is None:
            return self.key
        return f"{self.key} resuming from {self.point}"


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    setup_globals()
    config = launcher.config
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    log.info("Launching %d jobs, stacked where they can be", len(job_overrides))
    started = time.perf_counter()
    jobs = [_prepare(launcher, initial_job_idx + i, overrides) for i, overrides in enumerate(job_overrides)]
    say("%d jobs composed, checked and grouped in %.1f s", len(jobs), time.perf_counter() - started)

    groups: dict[str, list[Job]] = {}
    alone: list[Job] = []
    for job in jobs:
        if job.cfg is None:
            continue  # failed its checks: `failed` holds the error
        if job.key is None:
            alone.append(job)
        else:
            groups.setdefault(job.batch_key, []).append(job)
    returns: dict[int, JobReturn] = {job.idx: job.failed for job in jobs if job.failed is not None}
    for group in groups.values():
        for start in range(0, len(group), launcher.max_stack):
            chunk = group[start : start + launcher.max_stack]
            if len(chunk) == 1:
                chunk[
                    0
                ].why = "no other job of this batch differs from it only in seed, MLP width, batch size (of the same micro-batch), optimizer and scheduler settings"
                alone.append(chunk[0])
            else:
                returns |= _train_stacked(launcher, chunk)
    for job in sorted(alone, key=lambda j: j.idx):
        returns[job.idx] = _run_alone(launcher, job)
    return [returns[job.idx] for job in jobs]


def stream(
    launcher: Any,
    ask: Callable[[], tuple[int, list[str]] | None],
    tell: Callable[[int, JobReturn], None],
    slots: int,
    shapes: Sequence[Sequence[str]] = (),
) -> None:
    """A search's jobs as they are asked (`ask`: the job's number and overrides, None when the search has
    no more), trained in one continuous stack of `slots` (`digitlab.stacked.slots`): a job that is done
    leaves its slot at an epoch's end and its `JobReturn` goes to `tell` at once, and the next job asked
    takes the slot. Jobs that fail their checks are told at once; jobs that cannot stack run alone (before
    the stack forms, or after it ends if they come while it trains). `shapes`: override lists of the
    search's widest jobs (its corners): the slots are made wide enough for any of them."""
    import math

    from digitlab.stacked.slots import train_continuous

    setup_globals()
    config = launcher.config
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    source = _Source(launcher, ask, tell)
    first = source.take(alone_now=True)
    if first is not None:
        corners = [_prepare(launcher, -1, list(o), said=False) for o in shapes]
        widest = [job.cfg for job in corners if job.cfg is not None and job.key == first.key]
        # The largest micro-batch every batch size of the search is made of (all 256: batches of 256).
        source.micro = math.gcd(*(int(cfg.data.batch_size) for cfg in (first.cfg, *widest)))
        entrants = [entrant for entrant in [source.open(first)] if entrant is not None]
        while len(entrants) < slots and (entrant := source.next()) is not None:
            entrants.append(entrant)
        if entrants:
            say("#%d: a continuous stack of %d slots, refilled as trials leave", first.idx, slots)
            started = time.perf_counter()
            train_continuous(entrants, source, source.micro, widest)
            took = time.perf_counter() - started
            say("the continuous stack trained %d trials in %.1f s", source.trained, took)
    for job in source.deferred:
        tell(job.idx, _run_alone(launcher, job))


class _Source:
    """The continuous stack's trials (`digitlab.stacked.slots.TrialSource`), asked from the sweeper, each
    job's life opened as it joins and closed as it leaves (`job_life`), as `_train_stacked` does for a
    batch."""

    def __init__(self, launcher: Any, ask: Callable, tell: Callable) -> None:
        self.launcher, self.ask, self.tell = launcher, ask, tell
        self.key: str | None = None  # the stack's: jobs with another key run alone after it
        self.deferred: list[Job] = []
        self.jobs: dict[int, tuple[Job, Any]] = {}  # open jobs by number, with their `job_life.OpenJob`
        self.held: dict[int, contextlib.ExitStack] = {}  # their run folders' holds (`run_lock`)
        self.first: Any = None  # the first open job: the stack's log is its log
        self.quiet = not verbose(launcher.config.hydra.verbose)
        self.trained = 0
        self.micro = 0  # the stack's micro-batch, once it forms: every trial's batch size a multiple of it

    def take(self, alone_now: bool) -> Job | None:
        """The next job that stacks; one that fails its checks is told, one that cannot stack runs alone
        now (`alone_now`: no stack trains yet) or after the stack."""
        while (asked := self.ask()) is not None:
            job = _prepare(self.launcher, *asked)
            if job.failed is not None:
                self.tell(job.idx, job.failed)
                continue
            if job.key is not None and job.point is not None and (why := _into_a_slot(job)):
                job.key, job.why = None, why
            if job.key is not None and self.key not in (None, job.key):
                job.key, job.why = (
                    None,
                    "its settings differ from the stack's beyond what trials may differ in",
                )
            if job.key is not None and self.micro and int(job.cfg.data.batch_size) % self.micro:
                size = job.cfg.data.batch_size
                job.key, job.why = (
                    None,
                    f"data.batch_size={size} is no multiple of the stack's {self.micro}-row micro-batch",
                )
            if job.key is None:
                if alone_now:
                    self.tell(job.idx, _run_alone(self.launcher, job))
                else:
                    self.deferred.append(job)
                continue
            self.key = job.key
            return job
        return None

    def open(self, job: Job) -> Any:
        """The job's folder held (`_held_first`, as a batch's), its life opened, and its slot's `Entrant`;
        None when another command holds its folder (the job is told it failed)."""
        import lightning  # noqa: F401 (before the process policy, which replaces the log handler it adds)
        from hydra.core.hydra_config import HydraConfig

        from digitlab.process import apply_process_policy
        from digitlab.stacked.slots import Entrant
        from digitlab.sweeps.job_life import open_job, share_log

        held = contextlib.ExitStack()
        refused, _ = _held_first([job], held)
        if refused:
            self.tell(job.idx, refused[job.idx])
            return None
        self.held[job.idx] = held  # until the job leaves its slot (`left`)
        one = open_job(self.launcher.hydra_context, job.sweep_config, self.launcher.task_function)
        if self.first is None:
            apply_process_policy()
            self.first = one
            HydraConfig.instance().set_config(job.sweep_config)
            configure_log(job.sweep_config.hydra.job_logging, job.sweep_config.hydra.verbose)
            if self.quiet:
                quiet_console()
        else:
            share_log(self.first, [one])
        self.jobs[job.idx] = (job, one)
        if job.resume_from:
            again = (
                job.passed_over and f", training again the epoch its {Path(job.passed_over).name} stands in"
            )
            say("#%d continues its run in the stack from %s%s", job.idx, job.resume_from, again or "")
        return Entrant(job.cfg, job.sweep_config.hydra, job.idx, job.resume_from)

    def next(self) -> Any:
        """The next job's `Entrant` (`open`), None when the search has no more that stack."""
        while (job := self.take(alone_now=False)) is not None:
            if (entrant := self.open(job)) is not None:
                return entrant
        return None

    def left(self, idx: int, outcome: Any) -> None:
        from digitlab.sweeps.job_life import close_job

        job, one = self.jobs.pop(idx)
        metric = job.cfg.get("optimized_metric")
        ret = close_job(self.launcher.hydra_context, one, outcome, metric)
        if self.quiet:
            metrics, error = (None, outcome) if isinstance(outcome, BaseException) else (outcome, None)
            print(job_line(job.idx, ret.overrides or [], metrics, metric, error))
        self.trained += 1
        self.held.pop(idx).close()
        self.tell(idx, ret)


def _into_a_slot(job: Job) -> str | None:
    """A `resume=true` job made ready for a slot of a continuous stack, which takes trials between epochs;
    else why it cannot take one. It can if its run has not started, or from a checkpoint written after an
    epoch's validation (`last.ckpt` and the best files are) with epochs left to train. A newer checkpoint
    that may stand within an epoch (`interrupted.ckpt`, where a signal stopped the fit, perhaps after an
    epoch's last batch but before its validation) is passed over for the newest one at an epoch's end: that
    epoch is trained again, to the same numbers. A run killed after its last epoch's checkpoint, before its
    record, is finished by its single run's resume, which trains nothing."""
    from digitlab.rundir import INTERRUPTED_CHECKPOINT
    from digitlab.stacked.resume import at_an_epoch_end

    if job.resume_from is None:
        return None
    if not job.point.endswith("/end") or Path(job.resume_from).name == INTERRUPTED_CHECKPOINT:
        earlier = at_an_epoch_end(job.cfg)
        if earlier is None:
            return f"it resumes from {job.resume_from}, which may stand within an epoch"
        job.passed_over = job.resume_from
        job.point, job.resume_from = earlier
    epoch = int(job.point.split("/")[0])
    if epoch + 1 >= int(job.cfg.trainer.max_epochs):
        return f"it resumes from {job.resume_from}, after its last epoch"
    return None


def _run_alone(launcher: Any, job: Job) -> JobReturn:
    say("#%d runs alone: %s", job.idx, job.why)  # which jobs do not stack, and why: what a user tunes by
    return run_job(
        hydra_context=launcher.hydra_context,
        task_function=launcher.task_function,
        config=job.sweep_config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )


def _prepare(launcher: Any, idx: int, overrides: Sequence[str], said: bool = True) -> Job:
    """The job composed (once per shape of override list, `sweeps.compose`), checked unless the sweeper
    checked it, resolved, and keyed for stacking. A job that fails its checks makes no folder."""
    from digitlab.errors import DigitlabError
    from digitlab.job import check_job, job_config, resolved_task
    from digitlab.stacked import resume
    from digitlab.stacked.grouping import stack_key
    from digitlab.sweeps.job_life import job_folder, job_return

    if said and verbose(launcher.config.hydra.verbose):  # quiet: each trial's line says it when it ends
        log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
    loader = launcher.hydra_context.config_loader
    sweep_config = loader.load_sweep_config(launcher.config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = idx
        sweep_config.hydra.job.num = idx
    job = Job(idx, sweep_config)
    resolved = (
        loader.checked_config(launcher.config, list(overrides)) if hasattr(loader, "checked_config") else None
    )
    if resolved is None:
        config, choices, task_overrides = job_config(sweep_config, job_folder(sweep_config))
        try:
            check_job(config, choices, task_overrides)
        except DigitlabError as err:
            log.error("%s", err)
            job.failed = job_return(err, None, task_overrides)
            return job
        resolved = resolved_task(config)
    job.cfg = resolved
    job.key, job.why = stack_key(job.cfg)
    if job.key is not None and sweep_config.hydra.job.chdir:
        job.key, job.why = None, "hydra.job.chdir=true: each job works in its own folder, a stack in one"
    if job.key is not None and job.cfg.get("resume"):
        job.point, job.resume_from = resume.plan(job.cfg)
        if job.point is None:
            job.key, job.why = None, "it is complete (resume=true skips it)"
    return job


def _train_stacked(launcher: Any, chunk: list[Job]) -> dict[int, JobReturn]:
    """The chunk's jobs held (`_held_first`), opened (`job_life.open_jobs`: folders, `.hydra/`,
    `on_job_start`), trained as one stacked fit (`job.run_checked_jobs`), and closed with each one's outcome
    (`close_job`: `JobReturn`, `on_job_end`)."""
    import lightning  # noqa: F401 (before the process policy, which replaces the log handler it adds)

    from digitlab.process import apply_process_policy

    apply_process_policy()
    with contextlib.ExitStack() as held:
        returns, chunk = _held_first(chunk, held)
        if chunk:
            returns |= _train_held(launcher, chunk)
    return returns


def _held_first(chunk: list[Job], held: contextlib.ExitStack) -> tuple[dict[int, JobReturn], list[Job]]:
    """Each job's run folder held (`run_lock`) before its folder or `.hydra/` is written, as a single run's
    is (`job.OutputDirsCheck`): a job whose folder another command writes is refused alone, in one
    paragraph, and its folder left as that command has it; the others go on."""
    from digitlab.errors import DigitlabError
    from digitlab.run_lock import holding
    from digitlab.sweeps.job_life import job_return

    refused, free = {}, []
    for job in chunk:
        try:
            held.enter_context(holding(job.cfg.paths.output_dir))
            free.append(job)
        except DigitlabError as err:
            log.error("%s", err)
            refused[job.idx] = job_return(err, None, list(job.sweep_config.hydra.overrides.task))
    return refused, free


def _train_held(launcher: Any, chunk: list[Job]) -> dict[int, JobReturn]:
    from hydra.core.hydra_config import HydraConfig

    from digitlab.job import CheckedJob, run_checked_jobs
    from digitlab.sweeps.job_life import close_job, open_jobs, share_log

    first = chunk[0].sweep_config
    quiet = not verbose(first.hydra.verbose)
    context = launcher.hydra_context
    started = time.perf_counter()
    opened = open_jobs(context, [job.sweep_config for job in chunk], launcher.task_function)
    # Hydra's job logging, configured once for the stack (as `run_job` configures it for a job): its log
    # file, in the first job's folder, is every job's.
    HydraConfig.instance().set_config(first)
    configure_log(first.hydra.job_logging, first.hydra.verbose)
    share_log(opened[0], opened[1:])
    if quiet:
        quiet_console()  # Lightning's notes for the fit (the log keeps them); each trial's line follows it
    say("%d job folders set up in %.1f s", len(chunk), time.perf_counter() - started)

    say("%s: %d trials stacked in one fit", job_numbers([j.idx for j in chunk]), len(chunk))
    started = time.perf_counter()
    try:
        outcomes = run_checked_jobs(
            [
                CheckedJob(
                    job.cfg,
                    job.sweep_config.hydra.runtime.choices,
                    list(job.sweep_config.hydra.overrides.task),
                    job.sweep_config.hydra,
                    job.resume_from,
                )
                for job in chunk
            ]
        )
    except Exception as err:  # the stack failed as a whole: every trial did
        log.error("the stacked fit failed: %s", err)
        outcomes = [err] * len(chunk)
    say("%d stacked trials trained and written in %.1f s", len(chunk), time.perf_counter() - started)
    returns = {}
    for job, one, outcome in zip(chunk, opened, outcomes, strict=True):
        metric = job.cfg.get("optimized_metric")
        returns[job.idx] = close_job(context, one, outcome, metric)
        if quiet:
            metrics, error = (None, outcome) if isinstance(outcome, Exception) else (outcome, None)
            print(job_line(job.idx, returns[job.idx].overrides or [], metrics, metric, error))
    return returns
