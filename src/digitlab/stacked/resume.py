"""Resume stopped trials as one stack: their own checkpoints (a single run's layout, full state, whether a
stack or a single run wrote them) joined into the checkpoint Lightning restores a `StackedClassifier` from.
Trials stack only when their checkpoints stand at the same step (`resume_point`), so the loops are shared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from digitlab.callbacks.results import RunResults
from digitlab.checkpoints import read_checkpoint, resume_checkpoint
from digitlab.rundir import BEST_KEY, Run

STACKED_BEST_KEY = "digitlab_stacked_val_acc_best"  # each trial's BEST_KEY, in a joined checkpoint


def plan(cfg: DictConfig) -> tuple[str | None, str | None]:
    """A `resume=true` job's `(point, checkpoint)`: where its stack resumes from (`resume_point`, or "fresh"
    for a run with no checkpoint) and the checkpoint; `(None, None)` for a complete run (it is skipped)."""
    run = Run(cfg.paths.output_dir)
    if run.completed:
        return None, None
    checkpoint = resume_checkpoint(run.path)
    return (resume_point(checkpoint) if checkpoint else "fresh"), checkpoint


def resume_point(checkpoint: str | Path) -> str:
    """Where a checkpoint stands: `epoch/step`. Trials resume in one stack only from the same point."""
    state = read_checkpoint(checkpoint)
    return f"{state['epoch']}/{state['global_step']}"


def stacked_checkpoint(paths: list[str | Path], records_key: str, data_key: str) -> dict[str, Any]:
    """The trials' checkpoints as one, the inverse of `TrialRecords._save`: their weights under `trials.<k>.`,
    their optimizer states as the param groups of one optimizer (trial k's parameters numbered after trial
    k-1's, as `Optimizer.state_dict` numbers them), their schedulers' states in `TrialSchedulers`' layout, the
    loops of the first (the same for all), each trial's ModelCheckpoint state and record for the
    `TrialRecords` callback (its `state_key`), each trial's training order for `StackedData` (`data_key`),
    and each trial's best val/acc."""
    trials = [read_checkpoint(path) for path in paths]
    first = trials[0]
    groups, state, offset = [], {}, 0
    for trial in trials:
        (own,) = trial["optimizer_states"]
        (group,) = own["param_groups"]
        groups.append({**group, "params": [offset + index for index in group["params"]]})
        state |= {offset + index: value for index, value in own["state"].items()}
        offset += len(group["params"])
    schedulers = [trial["lr_schedulers"][0] for trial in trials if trial["lr_schedulers"]]
    return {
        "epoch": first["epoch"],
        "global_step": first["global_step"],
        "pytorch-lightning_version": first["pytorch-lightning_version"],
        "state_dict": {
            f"trials.{k}.{name}": value
            for k, trial in enumerate(trials)
            for name, value in trial["state_dict"].items()
        },
        "loops": _without_loader_state(first["loops"]),
        "optimizer_states": [{"state": state, "param_groups": groups}],
        "lr_schedulers": [{"schedulers": schedulers}] if schedulers else [],
        "callbacks": {
            records_key: {
                "checkpointers": [_checkpointer_state(trial) for trial in trials],
                "records": [trial.get("callbacks", {}).get(RunResults.__qualname__) for trial in trials],
            }
        },
        data_key: {"orders": [_order(trial) for trial in trials]},
        STACKED_BEST_KEY: [trial.get(BEST_KEY, float("-inf")) for trial in trials],
    }


def _without_loader_state(loops: dict[str, Any]) -> dict[str, Any]:
    """The loops, less the single run's loader state: the stack's loader is restored by `StackedData`."""
    fit = loops["fit_loop"]
    state = {key: value for key, value in fit["state_dict"].items() if key != "combined_loader"}
    return {**loops, "fit_loop": {**fit, "state_dict": state}}


def _order(trial: dict[str, Any]) -> dict[str, Any] | None:
    """The trial's training-order state (its datamodule's, `DigitsDataModule.state_dict`)."""
    states = [value for value in trial.values() if isinstance(value, dict) and "train_order" in value]
    return states[0]["train_order"] if states else None


def _checkpointer_state(trial: dict[str, Any]) -> dict[str, Any] | None:
    """The trial's ModelCheckpoint state (its one callback state a stacked trial's checkpoint holds)."""
    states = [value for key, value in trial.get("callbacks", {}).items() if key.startswith("ModelCheckpoint")]
    return states[0] if states else None
