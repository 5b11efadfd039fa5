"""Every trial of an Optuna study, read from its storage (a database URL or a journal), with where it ran:
`digitlab-compare --study <url or study folder>`. Workers on several machines each see only their own run
folders; the study sees every trial, its worker (`host:pid:id`) and its run folder on that host."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def trial_rows(where: str, name: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """`(study name, one row per trial)`; the study is the only one in the storage unless `name` says."""
    import optuna

    from digitlab.errors import ConfigError
    from digitlab.sweeps.study import JOURNAL, RUN_DIR, WORKER, open_storage

    journal = Path(where) / JOURNAL if Path(where).is_dir() else Path(where)
    if "://" not in where and not journal.is_file():
        raise ConfigError(
            f"--study {where!r} is not an Optuna study: pass a storage URL (postgresql://...) or a study folder "
            f"holding {JOURNAL} (e.g. logs/studies/mlp)."
        )
    storage = open_storage(where, repair=False)  # a reader: nothing written, locked or repaired
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    if name is None and len(names) != 1:
        raise ConfigError(
            f"--study {where!r} holds {len(names)} studies ({', '.join(names) or 'none'}): name one with --study-name."
        )
    if name is not None and name not in names:
        raise ConfigError(
            f"--study-name {name!r} is not in {where!r}: it holds {', '.join(names) or 'no study'}."
        )
    study = optuna.load_study(study_name=name or names[0], storage=storage)
    rows = []
    for trial in study.get_trials(deepcopy=False):
        worker = str(trial.user_attrs.get(WORKER, ""))
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name.lower(),
                "value": trial.values if trial.values and len(trial.values) > 1 else trial.value,
                **{key: value for key, value in trial.params.items()},
                "host": worker.split(":")[0] if worker else "",
                "run_dir": trial.user_attrs.get(RUN_DIR, ""),
            }
        )
    return study.study_name, rows


def markdown_rows(rows: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [_cell(row.get(column)) for column in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
