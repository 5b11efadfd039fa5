"""A study in a database (`hydra.sweeper.storage=postgresql://...`, `sqlite:///...`): workers on several
machines share nothing but it, so everything they coordinate goes through it.

- `connect`: Optuna's `RDBStorage`, with Optuna's own trial heartbeat and `RetryHeartbeatStaleTrialCallback` (a trial
  whose worker stopped beating is failed and retried exactly once). Any number of workers may start at once
  on an empty database: creating the tables races, and a worker that loses the race connects again. A
  missing driver is one paragraph naming the extra to install.
- `lock`: a lock held in the database (PostgreSQL's advisory lock; for SQLite, whose file is on one machine,
  a lock file beside it; other databases, untested, fall back to a lock file and say so): counting and asking trials under it keeps each trial number once and the total at
  `n_trials`, and gives each worker its own sampler stream.
- Passwords never reach a log or a file: `mask` hides them wherever a URL is shown, and `without_password`
  moves one typed in the URL to `PGPASSWORD` (read by libpq, inherited by the jobs) before the URL is saved
  with the sweep's configs.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import time
import warnings
from collections.abc import Iterator
from typing import Any

from digitlab.errors import ConfigError

log = logging.getLogger(__name__)

DRIVER_EXTRAS = {"postgresql": "postgres"}  # URL scheme -> digitlab's extra that brings its driver
CONNECT_ATTEMPTS = 8


def mask(url: str) -> str:
    """The URL as it may be shown: its password, if any, replaced by ***."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: show no part of what follows the scheme's user
        return url.split("://", 1)[0] + "://***"


def without_password(url: str) -> str:
    """The URL without its password; a PostgreSQL password goes to `PGPASSWORD` for this process and every
    job it starts (libpq reads it), so it is written nowhere. Other databases keep theirs (and it is masked
    wherever digitlab shows the URL)."""
    from sqlalchemy.engine import URL, make_url

    try:
        parsed = make_url(url)
    except Exception:  # not a URL SQLAlchemy reads: `connect` says so in one paragraph
        return url
    if parsed.password is None or not parsed.drivername.startswith("postgresql"):
        return url
    os.environ["PGPASSWORD"] = str(parsed.password)
    bare = URL.create(
        parsed.drivername, parsed.username, None, parsed.host, parsed.port, parsed.database, parsed.query
    )
    return bare.render_as_string(hide_password=False)


def connect(url: str, heartbeat_s: float, grace_s: float) -> Any:
    """Optuna's RDBStorage on `url`, its tables created if need be."""
    import optuna
    import sqlalchemy.exc
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    _check_driver(url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry_once = RetryHeartbeatStaleTrialCallback(max_retry=1)
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            # The heartbeat's API is experimental since Optuna 2.8, and unchanged since.
            with warnings.catch_warnings(), _creating(url):
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=max(1, round(heartbeat_s)),
                    grace_period=max(2, round(grace_s)),
                    heartbeat_stale_trial_callback=retry_once,
                    engine_kwargs={"pool_pre_ping": True},
                )
        except sqlalchemy.exc.DBAPIError as err:
            if not _lost_creation_race(err):
                raise ConfigError(
                    f"hydra.sweeper.storage={mask(url)} cannot be reached: {_first_line(err)}. Check the host, "
                    "port, database and user (a password goes in PGPASSWORD or ~/.pgpass)."
                ) from None
            # Two workers creating the tables of an empty database at once: one wins (DuplicateTable,
            # UniqueViolation on alembic_version); the other finds them made when it connects again.
            if attempt == CONNECT_ATTEMPTS:
                raise ConfigError(
                    f"{mask(url)}: the study's tables could not be created ({_first_line(err)})."
                ) from None
            time.sleep(random.uniform(0.1, 0.5) * attempt)
    raise AssertionError("unreachable")


def _lost_creation_race(err: Exception) -> bool:
    """Whether `err` is another worker having created (or creating) the same tables first: PostgreSQL says
    DuplicateTable or UniqueViolation; SQLite says `table ... already exists` or `database is locked`, both as
    an OperationalError, the class that otherwise means an unreachable database."""
    import sqlalchemy.exc

    if isinstance(err, (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError)):
        return True
    text = str(getattr(err, "orig", err))
    return "already exists" in text or "database is locked" in text


@contextlib.contextmanager
def _creating(url: str) -> Iterator[None]:
    """SQLite's file is on this machine: its workers create the tables one at a time under a lock file
    beside it, so the race is not run at all (other databases' workers retry, see `_lost_creation_race`)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        yield
        return
    from filelock import FileLock

    with FileLock(f"{parsed.database}.create.lock"):
        yield


def _check_driver(url: str) -> None:
    """A URL whose driver is not installed: one paragraph naming what to install."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
        parsed.get_dialect().import_dbapi()
    except ImportError as err:
        scheme = url.split("://", 1)[0]
        extra = DRIVER_EXTRAS.get(scheme.split("+", 1)[0]) if "+" not in scheme else None
        fix = (
            f"pip install 'digitlab[{extra}]'"
            if extra
            else f"install the Python driver {err.name or scheme!r}"
        )
        raise ConfigError(
            f"hydra.sweeper.storage={mask(url)} needs a database driver that is not installed ({err}): {fix}."
        ) from None
    except Exception as err:  # sqlalchemy's ArgumentError / NoSuchModuleError: not a URL it knows
        raise ConfigError(
            f"hydra.sweeper.storage={mask(url)} is not a database URL SQLAlchemy reads ({_first_line(err)}). Use "
            "e.g. postgresql://user@host/db or sqlite:///study.db, or a path for a journal file."
        ) from None


@contextlib.contextmanager
def lock(storage: Any, name: str) -> Iterator[None]:
    """Held by one worker at a time, across machines: PostgreSQL's advisory lock `name`; SQLite's file
    is on one machine, so a lock file beside it."""
    engine = storage.engine
    if engine.dialect.name == "postgresql":
        import sqlalchemy

        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()
        return
    from filelock import FileLock

    if engine.dialect.name != "sqlite":
        # No lock of this database's own is used: the workers must then share the folder of the lock file.
        log.warning("%s: workers coordinate through a lock file in %s", engine.dialect.name, os.getcwd())
    database = engine.url.database or "memory"
    with FileLock(f"{database}.{hashlib.sha256(name.encode()).hexdigest()[:8]}.lock"):
        yield


def _first_line(err: Exception) -> str:
    return str(getattr(err, "orig", None) or err).strip().splitlines()[0]
