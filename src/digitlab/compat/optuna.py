"""Optuna (bounded to 5.1.x): whether a trial in a database ever beat.

`has_heartbeat`: Optuna's `fail_stale_trials` judges a RUNNING trial by its last heartbeat and passes over a
trial that never beat (a worker killed between asking it and its first beat); digitlab's worker then judges
that trial by its own clock (`sweeps.study.Worker._unclaimed`). Optuna has no public reader for a trial's
heartbeat (its own check, `RDBStorage._get_stale_trial_ids`, is private), so its table is read through
Optuna's model of it. Upstream: none filed that this project found.
"""

from __future__ import annotations

from typing import Any


def has_heartbeat(storage: Any, trial_id: int) -> bool:
    """Whether `RDBStorage.record_heartbeat` was ever called for this trial of `storage` (an RDBStorage)."""
    import sqlalchemy.orm
    from optuna.storages._rdb.models import TrialHeartbeatModel

    with sqlalchemy.orm.Session(storage.engine) as session:
        return TrialHeartbeatModel.where_trial_id(trial_id, session) is not None
