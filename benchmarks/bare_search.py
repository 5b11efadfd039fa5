"""The baseline of the search benchmark: what a researcher writes instead of `digitlab-train hparams_search=mlp`.

Optuna's ask/tell with the shipped search's sampler, pruner and space (conf/hparams_search/mlp.yaml: seeded
TPE, 6 start-up trials; successive halving, min_resource 1, reduction factor 3; lr log [0.01, 3], hidden
{16, 30, 64, 128}, batch size {64, 128, 256, 512}; 20 trials of up to 40 epochs, maximising the best
validation accuracy so far), a bare PyTorch loop per trial (bare_loop.py's: the cached tensors in memory,
`index_select` batches, SGD, mnist_loss), trials one at a time in one process, the study in memory. Prints
one JSON line: wall time, best value, epochs trained, trials pruned.

    python benchmarks/bare_search.py <data_dir> [n_trials]
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import optuna
import torch
from bare_loop import load_split, mnist_loss
from torch import nn

EPOCHS = 40
SEED = 0  # conf/config.yaml's seed: each trial's initial weights and shuffle order


def best_so_far(
    lr: float, hidden: int, batch: int, train: tuple[torch.Tensor, ...], valid: tuple[torch.Tensor, ...]
) -> Iterator[float]:
    """One trial of the shipped MLP search, bare: after each of its epochs, the best validation accuracy so
    far (`train`, `valid`: flattened images and labels in memory). Ray's trainable runs it too."""
    (train_x, train_y), (valid_x, valid_y) = train, valid
    torch.manual_seed(SEED)
    model = nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 1))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    best = 0.0
    for _ in range(EPOCHS):
        for idx in torch.randperm(len(train_y)).split(batch):
            loss = mnist_loss(model(train_x.index_select(0, idx)).squeeze(-1), train_y.index_select(0, idx))
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            preds = (model(valid_x).squeeze(-1) > 0).long()
        best = max(best, float((preds == valid_y).float().mean()))
        yield best


def trained_gflop(epochs_by_width: dict, train_rows: int, valid_rows: int) -> float:
    """The math a search did, whichever trials it chose: each epoch of a trial of hidden width H is a forward
    and backward pass over the training rows (3 x the forward's FLOPs) and a forward pass over the validation
    rows, at 2 FLOPs per weight per row (784 x H + H x 1 weights). `epochs_by_width`: H -> epochs trained."""
    return (
        sum(
            epochs * (3 * train_rows + valid_rows) * 2 * (784 * int(hidden) + int(hidden))
            for hidden, epochs in epochs_by_width.items()
        )
        / 1e9
    )


def main(data_dir: str, n_trials: int) -> None:
    start = time.perf_counter()
    train_x, train_y = load_split(Path(data_dir), "train")
    valid_x, valid_y = load_split(Path(data_dir), "valid")
    train_x, valid_x = train_x.flatten(1), valid_x.flatten(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=6),
        pruner=optuna.pruners.SuccessiveHalvingPruner(
            min_resource=1, reduction_factor=3, min_early_stopping_rate=0
        ),
    )
    epochs_trained, epochs_by_width = 0, Counter()
    for _ in range(n_trials):
        trial = study.ask()
        lr = trial.suggest_float("optimizer.lr", 0.01, 3.0, log=True)
        hidden = trial.suggest_categorical("model.net.hidden", [16, 30, 64, 128])
        batch = trial.suggest_categorical("data.batch_size", [64, 128, 256, 512])
        best, state = 0.0, optuna.trial.TrialState.COMPLETE
        train, valid = (train_x, train_y), (valid_x, valid_y)
        for epoch, best in enumerate(best_so_far(lr, hidden, batch, train, valid)):
            epochs_trained += 1
            epochs_by_width[hidden] += 1
            trial.report(best, epoch)
            if trial.should_prune():
                state = optuna.trial.TrialState.PRUNED
                break
        if state == optuna.trial.TrialState.PRUNED:
            study.tell(trial, state=state)
        else:
            study.tell(trial, best)
    pruned = len(study.get_trials(states=(optuna.trial.TrialState.PRUNED,)))
    print(
        json.dumps(
            {
                "wall_s": time.perf_counter() - start,
                "best": study.best_value,
                "best_params": study.best_params,
                "epochs": epochs_trained,
                "pruned": pruned,
                "epochs_by_width": epochs_by_width,
                "train_rows": len(train_y),
                "valid_rows": len(valid_y),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 20)
