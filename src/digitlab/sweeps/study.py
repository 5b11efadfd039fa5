"""An Optuna study as digitlab keeps it: where it is stored, how a worker joins and draws trials from it, and
what each trial records. The sweeper (`hydra_plugins.digitlab_optuna_sweeper`) and the jobs (`trial.py`) both
reach the study through `open_study`, so a job in another process, or on another node, finds it the same way.

- Storage: `hydra.sweeper.storage: null` is Optuna's journal file `<sweep dir>/study.journal` (safe for several
  processes on one file system); a path is a journal file there; anything with `://` is an Optuna storage URL
  (`sqlite:///study.db`, `postgresql://...`).
- Workers: every `digitlab-train` pointed at the study is a worker, known as `host:pid:<random id>`. Counting
  the trials and asking new ones happens under a lock (a lock file in the sweep dir for a journal; a lock in
  the database for a database, `database.lock`, so workers on machines that share no folder coordinate), so
  each number appears once and the total stops at `n_trials`. A worker whose study is full waits for the
  trials other workers still run, so the study is never reported complete with a trial left RUNNING.
  Each worker seeds its sampler with `seed + <workers before it>`: a single worker is reproducible, and two
  workers do not propose the same random start-up trials.
- A trial left RUNNING by a worker that is gone (a killed search) whose run had finished (its `metrics.json`
  says completed or pruned: the worker was killed before it told the study) gets that run's outcome, as the
  job would have returned it: one trial, one run folder, nothing trained twice. Any other is marked FAIL and
  its parameters are asked again, once, so the search does not lose it. In a database this is Optuna's own trial heartbeat and
  `RetryHeartbeatStaleTrialCallback`. In a journal (user attr `stale`), gone means: on this host, its process no longer
  runs; on any host, its heartbeat (a study user attribute refreshed every `hydra.sweeper.heartbeat_s`) is
  older than 4 beats. A RUNNING trial that names no worker (its worker killed between asking it and naming
  itself, or a trial another tool left) and that nothing beats for (no Optuna heartbeat either) is gone once
  a worker has watched it for 4 beats. Workers check when they join, before each batch, and while they wait
  for other workers' trials at the end.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from digitlab.errors import ConfigError
from digitlab.faults import pause_point

JOURNAL = "study.journal"
LOCK = "study.lock"
DIRECTIONS = ("minimize", "maximize")
# Trial user attributes (shown by optuna-dashboard):
RUN_DIR = "run_dir"  # the trial's run folder
TENSORBOARD = "tensorboard"  # its event files
WORKER = "worker"  # host:pid:id of the worker that asked it
STALE = "stale"  # its worker died while it ran; the same parameters were enqueued again
RETRY_OF = "retry_of"  # the stale trial this one repeats
STOPPED = "stopped"  # why its worker stopped it (`Worker.give_back`)
GONE = "gone:"  # study user attribute per finished trial whose run folder was lost and which was run again
WORKERS = "workers"  # study user attribute: how many workers have joined
HEARTBEAT = (
    "heartbeat:"  # study user attribute per worker (`heartbeat:<host:pid:id>`): its last beat, unix time
)
GRACE_BEATS = 4  # a worker silent for this many heartbeat intervals is gone

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyLocation:
    name: str
    storage: str | optuna.storages.BaseStorage
    sweep_dir: Path

    @property
    def described(self) -> str:
        from digitlab.sweeps.database import mask

        if isinstance(self.storage, optuna.storages.RDBStorage):
            where = mask(self.storage.url)
        else:
            where = mask(self.storage) if isinstance(self.storage, str) else self.sweep_dir / JOURNAL
        return f"study {self.name!r} in {where}"

    @property
    def in_database(self) -> bool:
        return isinstance(self.storage, optuna.storages.RDBStorage)


def locate(sweeper: Any, sweep_dir: str | Path) -> StudyLocation:
    """Where the study of a sweeper config (`hydra.sweeper`) lives, for the sweeper and for its jobs alike."""
    from digitlab.sweeps.database import connect

    sweep_dir = Path(sweep_dir)
    name = sweeper.get("study_name") or sweep_dir.name
    storage = sweeper.get("storage")
    if storage is None or "://" not in str(storage):
        path = sweep_dir / JOURNAL if storage is None else Path(storage)
        path.parent.mkdir(parents=True, exist_ok=True)
        return StudyLocation(name, open_storage(path), sweep_dir)
    heartbeat_s = float(sweeper.get("heartbeat_s") or 30.0)
    return StudyLocation(name, connect(str(storage), heartbeat_s, GRACE_BEATS * heartbeat_s), sweep_dir)


def open_storage(where: str | Path, repair: bool = True) -> str | optuna.storages.BaseStorage:
    """An Optuna storage URL as is; anything else is a journal file (a study folder: its `study.journal`).
    `repair=False` is for readers (compare, the dashboard): nothing is written, locked or repaired, so a study
    in a read-only folder opens; a journal damaged before its end is refused (`check_journal`), and one whose
    last record was cut short is read without it (Optuna's reader ignores an unterminated last line)."""
    if "://" in str(where):
        if repair:
            return str(where)
        # No table created or upgraded: a reader only reads.
        return optuna.storages.RDBStorage(str(where), skip_table_creation=True)
    path = Path(where)
    from optuna.storages.journal import JournalFileBackend

    journal = path / JOURNAL if path.is_dir() else path
    if repair:
        check_journal(journal)
    elif journal.is_file():
        _complete_records(journal, journal.read_bytes())
    return optuna.storages.JournalStorage(JournalFileBackend(str(journal)))


def check_journal(path: Path) -> None:
    """Before anything is appended to a journal file: a last record cut short (a worker killed while
    writing) is dropped, the original kept beside it as `<name>.damaged-<time>`, with one log line; a file
    that is not an Optuna journal, or whose damage is not at its end, is refused and never written to. Done
    under Optuna's own lock of that file, so no worker writes meanwhile."""
    import time

    from optuna.storages.journal import JournalFileSymlinkLock

    import digitlab.atomic as atomic

    if not path.is_file() or path.stat().st_size == 0:
        return
    with _held(JournalFileSymlinkLock(str(path))):
        data = path.read_bytes()
        complete, tail = _complete_records(path, data)
        if not tail:
            return
        backup = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        atomic.write_bytes(backup, data)
        atomic.write_bytes(path, b"".join(line + b"\n" for line in complete))
        log.warning(
            "%s ended in a record cut short (%d bytes, a worker killed while writing): it was dropped; the "
            "original is kept as %s",
            path,
            len(tail),
            backup.name,
        )


@contextlib.contextmanager
def _held(lock: optuna.storages.journal.JournalFileSymlinkLock) -> Iterator[None]:
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _complete_records(path: Path, data: bytes) -> tuple[list[bytes], bytes]:
    """The journal `data`'s complete records and what follows the last one (a record cut short, or b"");
    ConfigError for a file that is not an Optuna journal, or that is damaged before its end."""

    def record(line: bytes) -> bool:
        try:
            value = json.loads(line)
        except ValueError:
            return False
        return isinstance(value, dict) and "op_code" in value

    if not data:
        return [], b""
    *complete, tail = data.split(b"\n")
    bad = [i for i, line in enumerate(complete) if not record(line)]
    if (complete and not record(complete[0])) or (not complete and not record(tail)) or bad[:1] == [0]:
        raise ConfigError(
            f"{path} is not an Optuna journal (its first line is not a journal record), so it is not "
            "touched. Point the search at a study folder of its own (hydra.sweeper.study_name=<name>, or "
            "hydra.sweeper.storage=<another file or URL>)."
        )
    if bad:
        raise ConfigError(
            f"{path} is damaged at line {bad[0] + 1} of {len(complete)}, not only at its end, so it is not "
            "touched. Restore it from a copy, or start another study (hydra.sweeper.study_name=<name>)."
        )
    return complete, tail


def directions(direction: str | Sequence[str]) -> list[str]:
    """`hydra.sweeper.direction` as a list; one paragraph for anything but minimize/maximize."""
    values = [direction] if isinstance(direction, str) else list(direction)
    if not values or any(value not in DIRECTIONS for value in values):
        raise ConfigError(
            f"hydra.sweeper.direction={direction!r} is not a direction: use minimize or maximize, or a list of "
            "them ([maximize, minimize]) for a multi-objective study, one per metric in optimized_metric."
        )
    return values


IDENTITY = "digitlab:identity"  # the study user attribute that says what the study searches


def create_study(
    location: StudyLocation,
    directions: list[str],
    sampler: optuna.samplers.BaseSampler,
    identity: dict[str, Any] | None = None,
) -> optuna.Study:
    """The study, created on first use and loaded after; its directions, and its identity (the search
    space and objective it was created with, `search_identity`), must be the ones asked for: trials of two
    different searches are never mixed in one study."""
    try:  # loaded first: a study that is refused below is not written to at all
        study = optuna.load_study(study_name=location.name, storage=location.storage, sampler=sampler)
    except KeyError:
        study = optuna.create_study(
            study_name=location.name,
            storage=location.storage,
            sampler=sampler,
            directions=directions,
            load_if_exists=True,  # another worker may create it meanwhile
        )
    stored = [d.name.lower() for d in study.directions]
    if stored != directions:
        raise ConfigError(
            f"hydra.sweeper.direction={directions if len(directions) > 1 else directions[0]} but "
            f"{location.described} was created with {stored}. Continue it with the same direction, or start "
            "another study (hydra.sweeper.study_name=<new name>)."
        )
    if identity is not None:
        held = study.user_attrs.get(IDENTITY)
        if held is None:
            study.set_user_attr(IDENTITY, identity)  # a new study, or one from before identities
        elif held != identity:
            differ = [key for key in identity if identity.get(key) != held.get(key)]
            shown = "; ".join(f"{key}: {held.get(key)} there, {identity.get(key)} here" for key in differ)
            raise ConfigError(
                f"{location.described} belongs to another search ({shown}): its trials and this search's would be "
                "mixed. Continue it with the search it was made by, or start another study: "
                "hydra.sweeper.study_name=<new name> (and hydra.sweep.dir=<new folder> for a journal study)."
            )
    return study


def search_identity(distributions: dict[str, Any], objective: list[str] | None) -> dict[str, Any]:
    """What makes a study the study it is, as JSON: each parameter's distribution and the metrics it
    optimizes (the directions are the study's own)."""
    from optuna.distributions import distribution_to_json

    return {
        "search_space": {
            key: json.loads(distribution_to_json(d)) for key, d in sorted(distributions.items())
        },
        "objective": list(objective or []),
    }


def trial_id(storage: optuna.storages.BaseStorage, study_name: str, number: int) -> int:
    """The storage's id of the study's trial `number`: Optuna's trial objects keep it private (`_trial_id`);
    its storage API looks it up by number."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)


def load_study(location: StudyLocation, pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """The study as a job sees it: reporting and pruning need no sampler."""
    return optuna.load_study(
        study_name=location.name,
        storage=location.storage,
        sampler=optuna.samplers.RandomSampler(),
        pruner=pruner,
    )


class Worker:
    """One sweeping process's share of a study: it joins once, then asks batches of trials, and while it
    runs it beats: `heartbeat:<host:pid:id>` (a study user attribute) is refreshed every `heartbeat_s`."""

    def __init__(
        self,
        study: optuna.Study,
        location: StudyLocation,
        n_trials: int,
        heartbeat_s: float = 30.0,
        finished: Callable[[optuna.trial.FrozenTrial], bool] | None = None,
    ) -> None:
        from filelock import FileLock

        from digitlab.sweeps import database

        self.study = study
        # Records the outcome of a gone worker's trial whose run had finished; whether it did (`_retry_orphans`).
        self.finished = finished
        self.n_trials = n_trials
        # Unique across machines and containers that share a host name; host and pid say where it runs.
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.heartbeat_s = heartbeat_s
        self.in_database = location.in_database
        self.storage = location.storage
        # RUNNING trials no worker claims (by number), and when this worker first saw them (`_unclaimed`).
        self._unclaimed_since: dict[int, float] = {}
        file_lock = FileLock(location.sweep_dir / LOCK)
        self._locked = (
            (lambda: database.lock(location.storage, f"digitlab-study:{location.name}"))
            if self.in_database
            else (lambda: file_lock)
        )
        self._stop = threading.Event()
        self._beating: threading.Thread | None = None

    def join(self) -> int:
        """Start beating, fail and re-enqueue orphaned trials; return how many workers joined before."""
        self._beat()
        self._beating = threading.Thread(
            target=self._beat_until_stopped, name="optuna-heartbeat", daemon=True
        )
        self._beating.start()
        with self._locked():
            self._retry_orphans()
            before = int(self.study.user_attrs.get(WORKERS, 0))
            self.study.set_user_attr(WORKERS, before + 1)
            return before

    def check_runs(self, rerun: bool) -> None:
        """A finished trial whose run folder is gone from this machine is reported; with `rerun`
        (resume=true) its parameters are asked again, as an orphan's are, and it no longer counts."""
        with self._locked():
            attrs = self.study.user_attrs
            for trial in self.study.get_trials(
                deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)
            ):
                folder = trial.user_attrs.get(RUN_DIR)
                worker = str(trial.user_attrs.get(WORKER, ""))
                if replaced(attrs, trial) or not folder or worker.split(":")[0] != socket.gethostname():
                    continue  # a folder on another machine is that machine's to see
                if Path(folder).is_dir():
                    continue
                if not rerun:
                    log.warning(
                        "trial %d's run folder %s is gone; with resume=true it is run again",
                        trial.number,
                        folder,
                    )
                    continue
                log.warning(
                    "trial %d's run folder %s is gone: its parameters are asked again", trial.number, folder
                )
                self.study.set_user_attr(f"{GONE}{trial.number}", folder)  # a finished trial takes none
                self.study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number})

    def leave(self) -> None:
        """Stop beating (the study keeps the last beat)."""
        self._stop.set()
        if self._beating is not None:
            self._beating.join()

    def ask(self, n: int, wait: bool = True) -> list[optuna.Trial]:
        """Up to `n` trials, fewer when the study is near `n_trials` (counting every worker's trials; a
        stale trial is replaced by its retry, so it does not count). Orphans of workers that died since are
        retried first. When the study is full but other workers' trials still run, it waits for them to end
        or to be found orphaned (then it runs their retry): [] means no trial of the study is left running.
        Without `wait` (a worker that still runs trials of its own), [] means the study is full now."""
        waiting_said = False
        while True:
            with self._locked():
                self._retry_orphans()
                attrs = self.study.user_attrs
                trials = self.study.get_trials(deepcopy=False)
                retried = {t.system_attrs.get("failed_trial") for t in trials} - {None}
                taken = sum(
                    1
                    for trial in trials
                    if trial.state != TrialState.WAITING
                    and not replaced(attrs, trial)
                    and trial.number not in retried
                )
                count = max(0, min(n, self.n_trials - taken))
                if count or not wait or not any(t.state == TrialState.RUNNING for t in trials):
                    with warnings.catch_warnings():
                        # Optuna warns that its trial heartbeat is meant for `Study.optimize`; this worker
                        # beats its trials itself (`_beat`), which is what that warning is about.
                        warnings.filterwarnings(
                            "ignore", message="Heartbeat of storage is supposed to be used"
                        )
                        asked = [self.study.ask() for _ in range(count)]
                    for trial in asked:
                        trial.set_user_attr(WORKER, self.name)
                        pause_point("trial_asked")  # before its first heartbeat (fault tests)
                        self._beat_trial(trial.number)
                    return asked
            if not waiting_said:
                log.info("the study is full; waiting for the trials other workers still run")
                waiting_said = True
            time.sleep(min(self.heartbeat_s, 5.0))

    def give_back(self, trial: optuna.Trial, why: str) -> None:
        """A trial this worker could not finish through no fault of its own (it was stopped: SIGTERM, as
        `scancel` sends): FAIL with the reason, and its parameters asked again, once, by whichever worker
        asks next, as a dead worker's trial is."""
        self.storage.set_trial_user_attr(self._id(trial.number), STALE, True)
        trial.set_user_attr(STOPPED, why[:500])
        self.study.tell(trial.number, state=TrialState.FAIL)
        self.study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number})

    def _retry_orphans(self) -> None:
        # First, the orphans whose run had finished (its metrics.json written, the worker killed before it
        # told the study): the run is the trial's outcome, recorded as is; nothing is trained again.
        for trial, worker, why in self._orphans():
            if self.finished is not None and self.finished(trial):
                log.warning(
                    "trial %d was left running by %s (%s) after its run had finished: its outcome is "
                    "recorded from %s",
                    trial.number,
                    worker,
                    why,
                    trial.user_attrs.get(RUN_DIR),
                )
        if self.in_database:
            # Optuna's own: a RUNNING trial whose heartbeat is older than the grace period is failed, and
            # RetryHeartbeatStaleTrialCallback enqueues it once again (`database.connect`). A trial that never
            # beat has no heartbeat for Optuna to find: its worker's beats (below) or its age do.
            with warnings.catch_warnings():  # experimental since Optuna 2.9, unchanged since
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)
        for trial, worker, why in self._orphans():
            log.warning(
                "trial %d was left running by %s (%s): marked FAIL, its parameters asked again",
                trial.number,
                worker,
                why,
            )
            self.storage.set_trial_user_attr(self._id(trial.number), STALE, True)
            self.study.tell(trial.number, state=TrialState.FAIL)
            self.study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number})

    def _orphans(self) -> list[tuple[optuna.trial.FrozenTrial, str, str]]:
        """The RUNNING trials whose worker is gone, each with that worker and why it is judged gone. Every
        worker beats the study itself (`_beat`), whatever the storage."""
        beats = {
            k.removeprefix(HEARTBEAT): v for k, v in self.study.user_attrs.items() if k.startswith(HEARTBEAT)
        }
        grace_s = GRACE_BEATS * self.heartbeat_s
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        orphans = []
        for trial in running:
            worker = trial.user_attrs.get(WORKER)
            if worker:
                why = _orphaned(worker, beats.get(worker), grace_s)
            else:
                why = self._unclaimed(trial.number, grace_s)
                worker = "no digitlab worker"
            if why:
                orphans.append((trial, worker, why))
        self._unclaimed_since = {
            t.number: s for t in running if (s := self._unclaimed_since.get(t.number)) is not None
        }
        return orphans

    def _unclaimed(self, number: int, grace_s: float) -> str:
        """Why a RUNNING trial that no digitlab worker claims (a worker killed between asking it and naming
        itself in it, which it does under the study lock, or a trial another tool left) is gone ("" if it
        may be alive): nothing has beaten for it since this worker first saw it, `grace_s` ago or more. Its
        age is this worker's own clock (hosts' clocks and time zones need not agree); a trial with Optuna's
        heartbeat is Optuna's to judge (`fail_stale_trials`, above)."""
        from digitlab.compat.optuna import has_heartbeat

        if self.in_database and has_heartbeat(self.storage, self._id(number)):
            return ""
        seen = self._unclaimed_since.setdefault(number, time.monotonic())
        if time.monotonic() - seen < grace_s:
            return ""
        return f"no worker named in it and no heartbeat for {time.monotonic() - seen:.0f} s"

    def _beat(self) -> None:
        self.study.set_user_attr(HEARTBEAT + self.name, time.time())
        if self.in_database:  # Optuna's trial heartbeat, for the trials this worker runs
            for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if trial.user_attrs.get(WORKER) == self.name:
                    self._beat_trial(trial.number)

    def _beat_trial(self, number: int) -> None:
        if self.in_database:
            self.storage.record_heartbeat(self._id(number))

    def _id(self, number: int) -> int:
        return trial_id(self.storage, self.study.study_name, number)

    def _beat_until_stopped(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self._beat()


def replaced(study_attrs: dict[str, Any], trial: optuna.trial.FrozenTrial) -> bool:
    """Whether another trial repeats this one (its worker died, or its run folder was lost); `study_attrs`:
    the study's user attributes, read once."""
    return bool(trial.user_attrs.get(STALE)) or f"{GONE}{trial.number}" in study_attrs


def _orphaned(worker: str | None, last_beat: float | None, grace_s: float) -> str:
    """Why the worker `host:pid:id` is gone ("" if it may be alive): on this host, its process no longer
    runs; on any host, it has not beaten for `grace_s` (clocks of hosts are assumed to agree within it)."""
    if not worker or ":" not in worker:
        return ""
    host, pid = worker.split(":")[:2]
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return "its process is gone"
        except PermissionError:
            pass
    if last_beat is not None and time.time() - last_beat > grace_s:
        return f"no heartbeat for {time.time() - last_beat:.0f} s"
    return ""
