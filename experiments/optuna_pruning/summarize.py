"""The table of experiments/optuna_pruning: per study, its trials by state, the best val/acc_best, the epochs
all its trials trained and the time they took, read from the study's journal and its trials' metrics.json.

    python experiments/optuna_pruning/summarize.py logs/studies/mlp_median logs/studies/mlp_unpruned
"""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
from optuna.trial import TrialState

from digitlab.rundir import Run
from digitlab.sweeps.study import RUN_DIR, open_storage

HERE = Path(__file__).parent


def summary(study_dir: Path, wall_times: dict[str, str]) -> dict:
    storage = open_storage(study_dir)
    study = optuna.load_study(study_name=study_dir.name, storage=storage)
    runs = [Run(t.user_attrs[RUN_DIR]) for t in study.trials]
    metrics = [run.metrics for run in runs if run.completed]
    max_epochs = runs[0].setting("trainer.max_epochs")
    best = study.best_trial
    count = {state: sum(t.state == state for t in study.trials) for state in TrialState}
    return {
        "study": study_dir.name,
        "pruner": runs[0].hydra["sweeper"]["pruner"]["_target_"].rsplit(".", 1)[-1],
        "trials (complete / pruned / failed)": f"{count[TrialState.COMPLETE]} / {count[TrialState.PRUNED]} / "
        f"{count[TrialState.FAIL]}",
        "best val/acc_best": f"{best.value:.4f} (trial {best.number})",
        "epochs trained": f"{sum(m['epochs'] for m in metrics)} of {max_epochs * len(study.trials)}",
        "summed fit time (s)": f"{sum(m['wall_time_s'] for m in metrics):.0f}",
        "command wall time (s)": wall_times.get(study_dir.name, "-"),
        "best params": ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items()
        ),
    }


def main(dirs: list[str]) -> None:
    times_file = HERE / "wall_times.txt"
    wall_times = (
        dict(line.split() for line in times_file.read_text().splitlines()) if times_file.exists() else {}
    )
    rows = [summary(Path(d), wall_times) for d in dirs]
    headers = list(rows[0])
    print("| " + " | ".join(headers) + " |")
    print("|" + "---|" * len(headers))
    for row in rows:
        print("| " + " | ".join(str(row[h]) for h in headers) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
