"""Both sides of a SLURM sweep.

The submitting side (`launch`) submits the batch as one job array through submitit, as
hydra-submitit-launcher does, then waits for it itself:
- an `sbatch` that refuses the request is one paragraph quoting SLURM's reason;
- a job PENDING for more than a minute logs squeue's reason (again every few minutes), so a request the
  cluster can never meet does not wait in silence;
- a job that dies (cancelled, out of time or memory, its node lost) is one failed job, with SLURM's state as
  the reason, and the other jobs of the batch keep their own results; so is a job that SLURM no longer lists
  and that left no result (a cluster without accounting cannot say more).

The job side (`run_in_job`) runs in the allocation, around hydra-submitit-launcher's own job function:
- SLURM's warning signal (`--signal`, `signal_delay_s` before the time limit, or a preemption) is turned into
  the SIGTERM that Lightning handles: the fit stops at the end of the current batch and
  `checkpoints/interrupted.ckpt` is written; then the job requeues itself (submitit's requeue, at most
  `max_num_timeout` times) and exits without a result, so the submitting side keeps waiting;
- a requeued job (`SLURM_RESTART_COUNT` > 0) runs with `resume=true`: it continues from that checkpoint, and
  the run ends with the metrics of one uninterrupted run.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides

from digitlab.compat.hydra import job_error
from digitlab.compat.submitit import requeue

log = logging.getLogger(__name__)

PENDING_SAID_AFTER_S = 60  # a job waiting longer says why
PENDING_SAID_EVERY_S = 180
GONE_AFTER_S = 60  # a job SLURM no longer lists, with no result, for this long, is dead
POLL_S = 2.0
DEAD = {"CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "FAILED", "PREEMPTED", "BOOT_FAIL", "DEADLINE"}
# Ended from outside, not by the job's own fault: its trial is asked again (`errors.RunInterrupted`).
STOPPED = {"CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE"}
ENDED = DEAD | {"COMPLETED", "SPECIAL_EXIT", "REVOKED"}  # squeue lists ended jobs for a while (MinJobAge)


def run_in_job(
    job: Callable[[list[str]], JobReturn], params: dict[str, Any], overrides: list[str]
) -> JobReturn:
    """Run the job (hydra-submitit-launcher's `__call__` with these overrides) inside its allocation."""
    restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
    if restarts and not any(o.split("=", 1)[0].lstrip("+") == "resume" for o in overrides):
        overrides = [*overrides, "resume=true"]  # a requeued job continues its own run
    warned: list[int] = []

    def stop_at_batch_end(signum: int, frame: Any) -> None:
        warned.append(signum)
        os.kill(os.getpid(), signal.SIGTERM)  # Lightning's handler: stop at the batch end, checkpoint

    signal.signal(_warning_signal(), stop_at_batch_end)
    ret = job(overrides)
    if warned:
        allowed = int(params.get("max_num_timeout") or 0)
        if restarts < allowed:
            # submitit's own requeue (`scontrol requeue`), which its signal handler calls right away; here the
            # fit has first stopped at a batch boundary with its checkpoint written.
            requeue(allowed - restarts - 1)
            log.warning(
                "SLURM signalled this job ahead of its end: checkpointed and requeued (%d of %d)",
                restarts + 1,
                allowed,
            )
            sys.exit(-1)  # no result file: the submitting side waits for the requeued job
        log.warning(
            "SLURM signalled this job ahead of its end, and it was requeued %d times already", restarts
        )
    return ret


def _warning_signal() -> signal.Signals:
    """The signal SLURM sends ahead of the time limit: submitit's (`--signal=USR2@<signal_delay_s>`)."""
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    return getattr(signal, f"SIG{name}")


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    import submitit

    from digitlab.errors import DigitlabError
    from digitlab.process import exit_on_error

    params = launcher.params
    init_keys = {"submitit_folder", "max_num_timeout"}
    executor = submitit.AutoExecutor(
        folder=params["submitit_folder"],
        cluster="slurm",
        slurm_max_num_timeout=params.get("max_num_timeout", 0),
    )
    base = {
        "timeout_min",
        "cpus_per_task",
        "gpus_per_node",
        "tasks_per_node",
        "mem_gb",
        "nodes",
        "name",
        "stderr_to_stdout",
    }
    executor.update_parameters(
        **{
            k if k in base else f"slurm_{k}": v
            for k, v in params.items()
            if k not in init_keys and v is not None
        }
    )
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    log.info("SLURM sweep output dir: %s", sweep_dir)
    arguments = []
    for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
        log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
        arguments.append(
            (list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state())
        )
    with exit_on_error("digitlab-train"):
        try:
            jobs = executor.map_array(launcher, *zip(*arguments, strict=True))
        except (submitit.core.utils.FailedJobError, subprocess.CalledProcessError, OSError) as err:
            reason = " ".join(str(err).split())
            raise DigitlabError(
                f"sbatch refused the {len(arguments)} job(s) of this sweep: {reason[-600:]} The request comes from "
                f"hydra.launcher ({_request(params)}): override what the cluster cannot give, e.g. "
                "hydra.launcher.partition=<name>, hydra.launcher.mem_gb=4, hydra.launcher.gpus_per_node=0 "
                "(sinfo lists partitions and nodes)."
            ) from None
    log.info("submitted SLURM job(s) %s", ", ".join(job.job_id for job in jobs))
    _wait(jobs)
    return [_result(job, overrides) for job, (overrides, *_) in zip(jobs, arguments, strict=True)]


def _request(params: dict[str, Any]) -> str:
    keys = ("partition", "timeout_min", "cpus_per_task", "mem_gb", "gpus_per_node", "nodes", "tasks_per_node")
    return ", ".join(f"{k}={params.get(k)}" for k in keys if params.get(k) is not None)


def _wait(jobs: list[Any]) -> None:
    """Until every job has a result or is dead, saying why a job waits when it waits long. One squeue call
    per poll for the whole batch (submitit's watcher batches its sacct calls likewise)."""
    started = time.monotonic()
    said: dict[str, float] = {}
    unlisted: dict[str, float] = {}
    while True:
        waiting = [job for job in jobs if not job.paths.result_pickle.exists()]
        listed = _squeue(waiting)
        waiting = [job for job in waiting if not _dead(job, listed, unlisted)]
        if not waiting:
            return
        now = time.monotonic()
        if now - started > PENDING_SAID_AFTER_S:
            for job in waiting:
                state, reason = listed.get(job.job_id, ("", ""))
                if state == "PENDING" and now - said.get(job.job_id, -1e9) >= PENDING_SAID_EVERY_S:
                    log.warning(
                        "SLURM job %s is still PENDING after %.0f s: %s (%s)",
                        job.job_id,
                        now - started,
                        reason,
                        EXPLAINED.get(reason, "see squeue"),
                    )
                    said[job.job_id] = now
        time.sleep(POLL_S)


EXPLAINED = {
    "PartitionConfig": "the request exceeds what the partition allows (CPUs, memory, GPUs or time)",
    "Resources": "waiting for free CPUs, memory or GPUs",
    "Priority": "other jobs are ahead of it",
    "ReqNodeNotAvail": "a node it needs is down or drained",
    "BeginTime": "it may not start before its begin time",
}


def _squeue(jobs: list[Any]) -> dict[str, tuple[str, str]]:
    """`{job id: (state, reason)}` for the jobs SLURM still lists as not ended (array tasks one by one).
    Every state is asked for: squeue's default leaves out a job between its runs (REQUEUED, REQUEUE_FED)."""
    if not jobs:
        return {}
    arrays = sorted({job.job_id.split("_")[0] for job in jobs})
    out = subprocess.run(
        ["squeue", "-h", "-r", "--states=all", "-o", "%i %T %r", "-j", ",".join(arrays)],
        capture_output=True,
        text=True,
    ).stdout
    return {
        parts[0]: (parts[1], parts[2] if len(parts) > 2 else "")
        for parts in (line.split(" ", 2) for line in out.splitlines())
        if len(parts) >= 2 and parts[1] not in ENDED
    }


def _dead(job: Any, listed: dict[str, tuple[str, str]], unlisted: dict[str, float]) -> bool:
    # slurmctld (squeue) first: accounting lags it, and a job that requeued itself reads FAILED in sacct (its
    # first run's end) while slurmctld holds it REQUEUED, then PENDING for its next run.
    if job.job_id in listed:
        unlisted.pop(job.job_id, None)
        return False
    state = job.watcher.get_state(job.job_id, mode="standard").split(" ")[0]
    if state in DEAD or state == "COMPLETED":
        return True  # COMPLETED without a result file: the job's process died after SLURM's step ended
    first = unlisted.setdefault(job.job_id, time.monotonic())
    return time.monotonic() - first > GONE_AFTER_S


def _result(job: Any, overrides: list[str]) -> JobReturn:
    """The job's own JobReturn, or one failed JobReturn that says how SLURM ended it."""
    from digitlab.errors import DigitlabError, RunInterrupted
    from digitlab.sweeps.job_life import job_return

    try:
        ret = job.results()[0]
    except Exception as err:  # submitit's UncompletedJobError, or the job's own pickled error
        state = job.watcher.get_state(job.job_id, mode="force")
        said = str(err).strip().splitlines()
        detail = f"; submitit: {said[0][:300]}" if said else ""
        if state in ("UNKNOWN", "RUNNING", "PENDING"):
            state = "gone from squeue with no result (without SLURM accounting its end state is unknown)"
        ended = RunInterrupted if state.split(" ")[0] in STOPPED else DigitlabError
        error = ended(f"SLURM job {job.job_id} ended {state}{detail}. Its log: {job.paths.stderr}")
        ret = job_return(error, None, overrides)
        log.error("%s", error)
        return ret
    if ret.status == JobStatus.FAILED:  # it stopped itself (a cancelled job's SIGTERM): say SLURM's part
        state = job.watcher.get_state(job.job_id, mode="force")
        if state.split(" ")[0] in DEAD:
            error = job_error(ret)
            stopped = state.split(" ")[0] in STOPPED or isinstance(error, RunInterrupted)
            ended = RunInterrupted if stopped else DigitlabError
            ret.return_value = ended(f"SLURM job {job.job_id} ended {state}: {error}")
    return ret
