"""Resume stopped trials as one stack: their own checkpoints (a single run's layout, full state, whether a
stack or a single run wrote them) joined into the checkpoint Lightning restores a `StackedClassifier` from.
Trials stack only when their checkpoints stand at the same step (`resume_point`), so the loops are shared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from digitlab.rundir import Run


def plan(cfg: DictConfig) -> tuple[str | None, str | None]:
    """A `resume=true` job's `(point, checkpoint)`: where its stack resumes from (`resume_point`, or "fresh"
    for a run with no checkpoint) and the checkpoint; `(None, None)` for a complete run (it is skipped)."""
    run = Run(cfg.paths.output_dir)
    if run.completed:
        return None, None
    checkpoint = run.resume_checkpoint()
    return (resume_point(checkpoint) if checkpoint else "fresh"), checkpoint


def resume_point(checkpoint: str | Path) -> str:
    """Where a checkpoint stands: `epoch/step`. Trials resume in one stack only from the same point."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return f"{state['epoch']}/{state['global_step']}"


def stacked_checkpoint(paths: list[str | Path], records_key: str) -> dict[str, Any]:
    """The trials' checkpoints as one: their weights under `trials.<k>.`, their optimizer states as the param
    groups of one optimizer (trial k's parameters numbered after trial k-1's, as `Optimizer.state_dict`
    numbers them), their schedulers' states in `TrialSchedulers`' layout, the loops of the first (the same
    for all), and each trial's ModelCheckpoint state for the `TrialRecords` callback (its `state_key`)."""
    trials = [torch.load(path, map_location="cpu", weights_only=False) for path in paths]
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
        "loops": first["loops"],
        "optimizer_states": [{"state": state, "param_groups": groups}],
        "lr_schedulers": [{"schedulers": schedulers}] if schedulers else [],
        "callbacks": {records_key: {"checkpointers": [_checkpointer_state(trial) for trial in trials]}},
    }


def _checkpointer_state(trial: dict[str, Any]) -> dict[str, Any] | None:
    """The trial's ModelCheckpoint state (its one callback state a stacked trial's checkpoint holds)."""
    states = [value for key, value in trial.get("callbacks", {}).items() if key.startswith("ModelCheckpoint")]
    return states[0] if states else None
