"""Ray Tune on the shipped search, the way issue #29 measured it: OptunaSearch (the shipped seeded TPE, 6
start-up trials), ASHA early stopping, `reuse_actors`, 2 trials at once (this machine has 2 cores), a bare
PyTorch trainable (bare_search.py's loop, one torch thread per trial) with the data in Ray's object store. The
space and budget are conf/hparams_search/mlp.yaml's: lr log [0.01, 3], hidden {16, 30, 64, 128}, batch size
{64, 128, 256, 512}, 20 trials of up to 40 epochs, maximising the best validation accuracy so far. Prints one
JSON line: wall time (Ray's start included), best value, epochs trained, trials stopped early.

Ray is not a dependency of digitlab: run this with a Python that has `ray[tune]` and torch, e.g. a venv made
with `python -m venv /tmp/rayenv`, a `.pth` file naming digitlab's site-packages (for torch and optuna), and
`pip install 'ray[tune]==2.60.0'`; `make bench` runs it when DIGITLAB_BENCH_RAY_PYTHON names that Python.

    python benchmarks/ray_search.py <data_dir> [n_trials]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bare_search import EPOCHS


def trainable(config: dict, data: dict) -> None:
    import torch
    from bare_search import best_so_far
    from ray import tune

    torch.set_num_threads(1)
    train, valid = (data["train_x"], data["train_y"]), (data["valid_x"], data["valid_y"])
    hidden, batch, lr = config["model.net.hidden"], config["data.batch_size"], config["optimizer.lr"]
    for best in best_so_far(lr, hidden, batch, train, valid):
        tune.report({"acc_best": best})


def main(data_dir: str, n_trials: int) -> None:
    start = time.perf_counter()
    import optuna
    import ray
    from bare_loop import load_split
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    train_x, train_y = load_split(Path(data_dir), "train")
    valid_x, valid_y = load_split(Path(data_dir), "valid")
    data = {
        "train_x": train_x.flatten(1),
        "train_y": train_y,
        "valid_x": valid_x.flatten(1),
        "valid_y": valid_y,
    }
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
        runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parent)}},  # bare_loop
    )
    space = {
        "optimizer.lr": tune.loguniform(0.01, 3.0),
        "model.net.hidden": tune.choice([16, 30, 64, 128]),
        "data.batch_size": tune.choice([64, 128, 256, 512]),
    }
    with tempfile.TemporaryDirectory(prefix="ray-search-") as storage:
        tuner = tune.Tuner(
            tune.with_parameters(trainable, data=data),
            param_space=space,
            tune_config=tune.TuneConfig(
                metric="acc_best",
                mode="max",
                search_alg=OptunaSearch(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=6)),
                scheduler=ASHAScheduler(max_t=EPOCHS, grace_period=1, reduction_factor=3),
                num_samples=n_trials,
                max_concurrent_trials=2,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(storage_path=storage, verbose=0),
        )
        results = tuner.fit()
    best = results.get_best_result()
    epochs = sum(int(r.metrics.get("training_iteration", 0)) for r in results)
    stopped = sum(int(r.metrics.get("training_iteration", 0)) < EPOCHS for r in results)
    epochs_by_width = Counter()
    for r in results:
        epochs_by_width[int(r.config["model.net.hidden"])] += int(r.metrics.get("training_iteration", 0))
    ray.shutdown()
    print(
        json.dumps(
            {
                "wall_s": time.perf_counter() - start,
                "best": best.metrics["acc_best"],
                "best_params": best.config,
                "epochs": epochs,
                "pruned": stopped,
                "epochs_by_width": epochs_by_width,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 20)
