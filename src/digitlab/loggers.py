"""Loggers that need more than Lightning's class to work under a sweep (`conf/logger/`).

`mlflow_logger`: Lightning's MLFlowLogger on a store many jobs share. MLflow creates a SQLite store's tables,
and an experiment, the first time a client asks for them; two jobs of a parallel sweep (hydra/launcher=joblib)
doing that at once collide (`table ... already exists`, `RESOURCE_ALREADY_EXISTS`). Here the store and the
experiment are made once, under a file lock beside the store, before the logger starts; every later job finds
them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SQLITE = "sqlite:///"


def mlflow_logger(
    experiment_name: str,
    tracking_uri: str,
    run_name: str | None = None,
    tags: dict[str, Any] | None = None,
    artifact_location: str | None = None,
    log_model: bool | str = False,
    prefix: str = "",
    synchronous: bool | None = None,
) -> Any:
    """Lightning's `MLFlowLogger` with these arguments, its store and experiment made first (see above)."""
    from lightning.pytorch.loggers import MLFlowLogger

    if tracking_uri.startswith(SQLITE):
        from filelock import FileLock
        from mlflow.tracking import MlflowClient

        store = Path(tracking_uri.removeprefix(SQLITE))
        store.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{store}.lock"):
            client = MlflowClient(tracking_uri)  # creates or upgrades the tables
            if client.get_experiment_by_name(experiment_name) is None:
                client.create_experiment(experiment_name, artifact_location=artifact_location)
    return MLFlowLogger(
        experiment_name=experiment_name,
        tracking_uri=tracking_uri,
        run_name=run_name,
        tags=tags,
        artifact_location=artifact_location,
        log_model=log_model,
        prefix=prefix,
        synchronous=synchronous,
    )
