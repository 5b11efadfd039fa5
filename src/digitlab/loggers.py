"""Loggers that need more than Lightning's class to work under a sweep (`conf/logger/`).

`mlflow_logger`: Lightning's MLFlowLogger on a store many jobs share. MLflow creates a SQLite store's tables,
and an experiment, the first time a client asks for them; two jobs of a parallel sweep (hydra/launcher=joblib)
doing that at once collide (`table ... already exists`, `RESOURCE_ALREADY_EXISTS`). Here the store and the
experiment are made once, under a file lock beside the store, before the logger starts; every later job finds
them. A sweep's jobs are MLflow's way of a sweep: one experiment named like the sweep folder, one parent run
for the sweep (its compare table as artifacts, `log_sweep_artifacts`), each job a child run of it; a run's
pictures, best checkpoint and record are its artifacts when it ends (`log_run_artifacts`).
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
    sweep_dir: str | None = None,
) -> Any:
    """Lightning's `MLFlowLogger` with these arguments, its store and experiment made first (see above);
    `sweep_dir` (a sweep's job): the sweep's experiment, and this job a child run of the sweep's run."""
    import contextlib

    from lightning.pytorch.loggers import MLFlowLogger
    from mlflow.tracking import MlflowClient

    tags = dict(tags or {})
    if sweep_dir:
        experiment_name = Path(sweep_dir).name  # one experiment per sweep, named like its folder
    lock: Any = contextlib.nullcontext()
    if tracking_uri.startswith(SQLITE):
        from filelock import FileLock

        store = Path(tracking_uri.removeprefix(SQLITE))
        store.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(f"{store}.lock")
    with lock:
        client = MlflowClient(tracking_uri)  # creates or upgrades a SQLite store's tables
        experiment = client.get_experiment_by_name(experiment_name)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else client.create_experiment(experiment_name, artifact_location=artifact_location)
        )
        if sweep_dir:
            tags |= {PARENT_TAG: sweep_parent(client, experiment_id, sweep_dir), SWEEP_TAG: str(sweep_dir)}
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


PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag: the UI nests a child run under its parent
SWEEP_TAG = "digitlab.sweep_dir"  # the sweep a run belongs to (its parent run holds it too)


def sweep_parent(client: Any, experiment_id: str, sweep_dir: str) -> str:
    """The id of the sweep's parent run, made by the sweep's first job (callers hold the store's lock)."""
    found = client.search_runs(
        [experiment_id], filter_string=f"tags.`{SWEEP_TAG}` = '{sweep_dir}' and tags.`digitlab.parent` = '1'"
    )
    if found:
        return found[0].info.run_id
    parent = client.create_run(
        experiment_id, run_name=Path(sweep_dir).name, tags={SWEEP_TAG: str(sweep_dir), "digitlab.parent": "1"}
    )
    client.set_terminated(parent.info.run_id)  # a sweep's record, not a training: its jobs are the runs
    return parent.info.run_id


def log_run_artifacts(loggers: list[Any], run_dir: Path, best: str | Path | None) -> None:
    """A finished run's pictures, best checkpoint and record as the artifacts of its MLflow run."""
    from lightning.pytorch.loggers import MLFlowLogger

    from digitlab.rundir import METRICS_JSON, Run

    run = Run(run_dir)
    for logger in loggers:
        if not isinstance(logger, MLFlowLogger):
            continue
        client, run_id = logger.experiment, logger.run_id
        if run.pictures.is_dir():
            client.log_artifacts(run_id, str(run.pictures), "pictures")
        if best and Path(best).is_file():
            client.log_artifact(run_id, str(best), "checkpoints")
        if (run.path / METRICS_JSON).is_file():
            client.log_artifact(run_id, str(run.path / METRICS_JSON))


def log_sweep_artifacts(sweep_dir: Path, compare_dir: Path) -> None:
    """The sweep's compare table and plots as artifacts of its MLflow parent run, when its jobs logged to
    MLflow (their `config.json` names the store)."""
    from digitlab.rundir import find_runs

    runs = [run for run in find_runs(sweep_dir) if not run.unreadable]
    settings = (runs[0].config.get("logger") or {}).get("mlflow") if runs else None
    if not settings or not settings.get("tracking_uri"):
        return
    from mlflow.tracking import MlflowClient

    client = MlflowClient(settings["tracking_uri"])
    experiment = client.get_experiment_by_name(Path(sweep_dir).name)
    if experiment is None:
        return
    parent = sweep_parent(client, experiment.experiment_id, str(sweep_dir))
    client.log_artifacts(parent, str(compare_dir), "compare")
