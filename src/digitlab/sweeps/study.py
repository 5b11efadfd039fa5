"""An Optuna study as digitlab keeps it: where it is stored, how a worker joins and draws trials from it, and
what each trial records. The sweeper (`hydra_plugins.digitlab_optuna_sweeper`) and the jobs (`trial.py`) both
reach the study through `open_study`, so a job in another process, or on another node, finds it the same way.

- Storage: `hydra.sweeper.storage: null` is Optuna's journal file `<sweep dir>/study.journal` (safe for several
  processes on one file system); a path is a journal file there; anything with `://` is an Optuna storage URL
  (`sqlite:///study.db`, `postgresql://...`).
- Workers: every `digitlab-train` pointed at the study is a worker. Counting the trials and asking new ones
  happens under a lock file in the sweep dir, so each number appears once and the total stops at `n_trials`.
  Each worker seeds its sampler with `seed + <workers before it>`: a single worker is reproducible, and two
  workers do not propose the same random start-up trials.
- A trial left RUNNING by a worker of this host whose process is gone (a killed search) is marked FAIL
  (user attr `stale`) and its parameters are enqueued again, so the search does not lose it.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from digitlab.errors import ConfigError

JOURNAL = "study.journal"
LOCK = "study.lock"
DIRECTIONS = ("minimize", "maximize")
# Trial user attributes (shown by optuna-dashboard):
RUN_DIR = "run_dir"  # the trial's run folder
TENSORBOARD = "tensorboard"  # its event files
WORKER = "worker"  # host:pid of the worker that asked it
STALE = "stale"  # its worker died while it ran; the same parameters were enqueued again
RETRY_OF = "retry_of"  # the stale trial this one repeats
WORKERS = "workers"  # study user attribute: how many workers have joined

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyLocation:
    name: str
    storage: str | optuna.storages.BaseStorage
    sweep_dir: Path

    @property
    def described(self) -> str:
        where = self.storage if isinstance(self.storage, str) else self.sweep_dir / JOURNAL
        return f"study {self.name!r} in {where}"


def locate(sweeper: Any, sweep_dir: str | Path) -> StudyLocation:
    """Where the study of a sweeper config (`hydra.sweeper`) lives, for the sweeper and for its jobs alike."""
    sweep_dir = Path(sweep_dir)
    name = sweeper.get("study_name") or sweep_dir.name
    storage = sweeper.get("storage")
    if storage is None or "://" not in str(storage):
        path = sweep_dir / JOURNAL if storage is None else Path(storage)
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend

        storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    return StudyLocation(name, storage, sweep_dir)


def directions(direction: str | Sequence[str]) -> list[str]:
    """`hydra.sweeper.direction` as a list; one paragraph for anything but minimize/maximize."""
    values = [direction] if isinstance(direction, str) else list(direction)
    if not values or any(value not in DIRECTIONS for value in values):
        raise ConfigError(
            f"hydra.sweeper.direction={direction!r} is not a direction: use minimize or maximize, or a list of "
            "them ([maximize, minimize]) for a multi-objective study, one per metric in optimized_metric."
        )
    return values


def create_study(
    location: StudyLocation, directions: list[str], sampler: optuna.samplers.BaseSampler
) -> optuna.Study:
    """The study, created on first use and loaded after; its directions must be the ones asked for."""
    study = optuna.create_study(
        study_name=location.name,
        storage=location.storage,
        sampler=sampler,
        directions=directions,
        load_if_exists=True,
    )
    stored = [d.name.lower() for d in study.directions]
    if stored != directions:
        raise ConfigError(
            f"hydra.sweeper.direction={directions if len(directions) > 1 else directions[0]} but "
            f"{location.described} was created with {stored}. Continue it with the same direction, or start "
            "another study (hydra.sweeper.study_name=<new name>)."
        )
    return study


def load_study(location: StudyLocation, pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """The study as a job sees it: reporting and pruning need no sampler."""
    return optuna.load_study(
        study_name=location.name,
        storage=location.storage,
        sampler=optuna.samplers.RandomSampler(),
        pruner=pruner,
    )


class Worker:
    """One sweeping process's share of a study: it joins once, then asks batches of trials."""

    def __init__(self, study: optuna.Study, location: StudyLocation, n_trials: int) -> None:
        from filelock import FileLock

        self.study = study
        self.n_trials = n_trials
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._lock = FileLock(location.sweep_dir / LOCK)

    def join(self) -> int:
        """Fail and re-enqueue this host's orphaned trials; return how many workers joined before this one."""
        with self._lock:
            for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if _orphaned(trial.user_attrs.get(WORKER)):
                    log.warning(
                        "trial %d was left running by %s, which is gone: marked FAIL, its parameters asked again",
                        trial.number,
                        trial.user_attrs[WORKER],
                    )
                    optuna.trial.Trial(self.study, trial._trial_id).set_user_attr(STALE, True)
                    self.study.tell(trial.number, state=TrialState.FAIL)
                    self.study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number})
            before = int(self.study.user_attrs.get(WORKERS, 0))
            self.study.set_user_attr(WORKERS, before + 1)
            return before

    def ask(self, n: int) -> list[optuna.Trial]:
        """Up to `n` trials, fewer when the study is near `n_trials` (counting every worker's trials; a
        stale trial is replaced by its retry, so it does not count)."""
        with self._lock:
            taken = sum(
                1
                for trial in self.study.get_trials(deepcopy=False)
                if trial.state != TrialState.WAITING and not trial.user_attrs.get(STALE)
            )
            trials = [self.study.ask() for _ in range(max(0, min(n, self.n_trials - taken)))]
            for trial in trials:
                trial.set_user_attr(WORKER, self.name)
            return trials


def _orphaned(worker: str | None) -> bool:
    """Whether `host:pid` names a process of this host that no longer runs (other hosts cannot be told)."""
    if not worker or ":" not in worker:
        return False
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
