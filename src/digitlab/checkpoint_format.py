"""What a digitlab checkpoint holds, beyond Lightning's own keys, and how a stack's checkpoint relates to its
trials' (the one place that knows both layouts).

A single run's checkpoint is Lightning's (`Trainer.save_checkpoint`) plus the run's composed config
(`CONFIG_KEY`, so eval and predict need the file alone), its best val/acc so far (`BEST_KEY`) and its record
in the `RunResults` callback's state (`RECORD_CALLBACK`).

A stack of K trials writes one checkpoint per point (an epoch's end, an interruption): Lightning's checkpoint
of the `StackedClassifier` fit, with each trial's weights under `trials.<k>.`, one param group per trial in
one optimizer, and `STACK_KEY` naming each slot's run folder and what its single run's checkpoint carries
besides. That one file is linked into every trial's `checkpoints/`, so the trials always stand at the same
point; `split` turns it into trial k's own checkpoint, exactly as its single run would have written it, and
`join` is its inverse (trials resumed together, from split units or from single runs' checkpoints alike).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CONFIG_KEY = "digitlab_config"  # the run's composed config
BEST_KEY = "digitlab_val_acc_best"  # the best val/acc up to the checkpoint (resume goes on from it)
RECORD_CALLBACK = "RunResults"  # the callback state holding the run's record (`record.RunRecord.state_dict`)
STACK_KEY = "digitlab_stack"  # a stack's checkpoint: its slots (`stack_section`)
STACKED_BEST_KEY = "digitlab_stacked_val_acc_best"  # each slot's BEST_KEY
TRAIN_ORDER = "train_order"  # a datamodule's training-order state (`DigitsDataModule.state_dict`)

# A stack's keys that `split` replaces with the slot's own.
_STACK_ONLY = {
    "state_dict",
    "optimizer_states",
    "lr_schedulers",
    "callbacks",
    "hparams_name",
    "hyper_parameters",
    "datamodule_hparams_name",
    "datamodule_hyper_parameters",
    STACK_KEY,
    STACKED_BEST_KEY,
}


def encoded(value: Any) -> str:
    """A slot's plain data (its config, its record) as one string in a stack's checkpoint: a stack of K holds
    K of each, and PyTorch's restricted unpickler reads one string far faster than a nested dict."""
    return json.dumps(value)


def decoded(value: str) -> Any:
    return json.loads(value)


_TENSOR = "__tensor__"


def encoded_checkpointer(state: dict[str, Any] | None) -> str | None:
    """A slot's ModelCheckpoint state as one string (`encoded`), its scores (one-element tensors) as numbers
    with their dtype: torch.save writes each tensor's storage as a record of its own, and the 4 K scores of a
    stack of K took 60 of each epoch's checkpoint's 80 ms at K = 256."""

    def plain(value: Any) -> Any:
        import torch

        if isinstance(value, torch.Tensor):
            return {_TENSOR: value.tolist(), "dtype": str(value.dtype).removeprefix("torch.")}
        raise TypeError(f"not in a ModelCheckpoint state: {type(value).__name__}")

    return None if state is None else json.dumps(state, default=plain)


def decoded_checkpointer(value: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """`encoded_checkpointer`'s inverse, tensors as ModelCheckpoint keeps them; a stack's checkpoint of an
    earlier release holds the state itself."""
    if value is None or isinstance(value, dict):
        return value

    def tensor(item: dict[str, Any]) -> Any:
        import torch

        return torch.tensor(item[_TENSOR], dtype=getattr(torch, item["dtype"])) if _TENSOR in item else item

    return json.loads(value, object_hook=tensor)


def stack_section(
    runs: list[str],
    trials: list[str],
    records_key: str,
    data_key: str,
    left_lr: dict[int, float],
    counts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`STACK_KEY`'s value: `runs[k]` slot k's run folder name; `trials[k]` what slot k's own checkpoint
    carries that the stack's does not (`encoded`: `hyper_parameters`, `datamodule_hparams`,
    `datamodule_key`, `checkpointer_key`, `config`); the stack's callback and datamodule state keys; the lr
    of each slot that left the stack (its param group's is 0); for slots of different batch sizes, `counts`
    (`stacked.steps.StepPlan.counts`: the loops count micro-batches, each slot's checkpoint its own steps).
    The stack's callback state holds each slot's ModelCheckpoint state (`checkpointers`,
    `encoded_checkpointer`) and record (`records`, `encoded`)."""
    return {
        "runs": runs,
        "trials": trials,
        "records_key": records_key,
        "data_key": data_key,
        "left_lr": left_lr,
        "counts": counts,
    }


def is_stack(checkpoint: Any) -> bool:
    return isinstance(checkpoint, dict) and STACK_KEY in checkpoint


def slot_of(stack: dict[str, Any], run_name: str) -> int | None:
    runs = stack[STACK_KEY]["runs"]
    return runs.index(run_name) if run_name in runs else None


def split(stack: dict[str, Any], k: int) -> dict[str, Any]:
    """Slot k of a stack's checkpoint as its single run's checkpoint: its weights, its optimizer's state
    (its param group, parameters numbered from 0 as its own optimizer numbers them), its scheduler's, its
    ModelCheckpoint's and record's state, its training order, its best val/acc and config; the loops and
    counters the stack's (shared by every slot)."""
    section = stack[STACK_KEY]
    trial = decoded(section["trials"][k])
    prefix = f"trials.{k}."
    callbacks = stack["callbacks"][section["records_key"]]
    own_callbacks = {RECORD_CALLBACK: decoded(callbacks["records"][k])}
    if callbacks["checkpointers"][k] is not None:
        own_callbacks[trial["checkpointer_key"]] = decoded_checkpointer(callbacks["checkpointers"][k])
    orders = stack[section["data_key"]]["orders"] if section["data_key"] in stack else None
    order = orders[k] if orders else None
    checkpoint = {key: value for key, value in stack.items() if key not in _STACK_ONLY}
    checkpoint.pop(section["data_key"], None)
    if order is not None:  # where a single run's loops keep its (stateful) training loader's state
        fit = checkpoint["loops"]["fit_loop"]
        state = {**fit["state_dict"], "combined_loader": [order]}
        checkpoint["loops"] = {**checkpoint["loops"], "fit_loop": {**fit, "state_dict": state}}
    counts = section.get("counts")
    if counts:  # the loops count the stack's micro-batches: slot k's single run counts its own steps
        joined = (counts.get("start_epochs") or [0] * len(section["runs"]))[k]  # a continuous stack's slot
        recount(
            checkpoint,
            Recount.in_steps(
                counts["micro_per_epoch"],
                counts["steps_per_epoch"][k],
                counts["per_step"][k],
                joined * counts["micro_per_epoch"],
            ),
            # The stack validates in the first slot's batches: slot k's count, in proportion.
            Recount.in_proportion(counts["val_batches"][0], counts["val_batches"][k]),
            epochs_before=joined,
        )
    (shared,) = stack["optimizer_states"]
    group = dict(shared["param_groups"][k])
    if k in section["left_lr"]:
        group["lr"] = section["left_lr"][k]
    numbered = group["params"]
    group["params"] = list(range(len(numbered)))
    schedulers = stack["lr_schedulers"][0]["schedulers"] if stack["lr_schedulers"] else []
    checkpoint |= {
        # Copies: a stack's trial tensors are views of its stacked leaves (`StackedNet`), and a view is saved
        # with the whole storage it views.
        "state_dict": {
            name[len(prefix) :]: _own(value)
            for name, value in stack["state_dict"].items()
            if name.startswith(prefix)
        },
        "callbacks": own_callbacks,
        "optimizer_states": [
            {
                "state": {
                    new: {key: _own(value) for key, value in shared["state"][old].items()}
                    for new, old in enumerate(numbered)
                    if old in shared["state"]
                },
                "param_groups": [group],
            }
        ],
        "lr_schedulers": [schedulers[k]] if schedulers else [],
        "hparams_name": None,
        "hyper_parameters": trial["hyper_parameters"],
        "datamodule_hparams_name": "kwargs",
        "datamodule_hyper_parameters": trial["datamodule_hparams"],
        trial["datamodule_key"]: {TRAIN_ORDER: order} if order is not None else {},
        BEST_KEY: stack[STACKED_BEST_KEY][k],
        CONFIG_KEY: trial["config"],
    }
    return checkpoint


def join(trials: list[dict[str, Any]], records_key: str, data_key: str) -> dict[str, Any]:
    """The trials' checkpoints (single runs' layout: `split` ones or a single run's own) as the one
    Lightning restores a `StackedClassifier` fit from, the inverse of `split`: their weights under
    `trials.<k>.`, their optimizer states as the param groups of one optimizer (trial k's parameters numbered
    after trial k-1's, as `Optimizer.state_dict` numbers them), their schedulers' states in
    `TrialSchedulers`' layout, the loops of the first (the same for all: trials resume together only from the
    same point), each trial's ModelCheckpoint state and record for the stack's callback (`records_key`), each
    trial's training order for its datamodule (`data_key`), and each trial's best val/acc."""
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
                "checkpointers": [encoded_checkpointer(_checkpointer_state(trial)) for trial in trials],
                "records": [encoded(trial.get("callbacks", {}).get(RECORD_CALLBACK)) for trial in trials],
            }
        },
        data_key: {"orders": [_order(trial) for trial in trials]},
        STACKED_BEST_KEY: [trial.get(BEST_KEY, float("-inf")) for trial in trials],
    }


@dataclass(frozen=True)
class Continued:
    """What a trial's own checkpoint of an epoch's end (`split` or a single run's) gives the slot of a running
    stack it continues in (`stacked.slots`): the epochs it has trained and its state, each part for the
    object that owns it in the stack."""

    epochs: int
    weights: dict[str, Any]  # its module's state dict
    optimizer: dict[str, Any]  # its own optimizer's state dict (one param group)
    scheduler: dict[str, Any] | None
    record: dict[str, Any] | None  # `record.RunRecord.state_dict`
    checkpointer: dict[str, Any] | None  # its ModelCheckpoint's
    order: dict[str, Any] | None  # its training order (`TRAIN_ORDER`)
    best: float  # its best val/acc so far

    @classmethod
    def of(cls, trial: dict[str, Any]) -> Continued:
        (optimizer,) = trial["optimizer_states"]
        return cls(
            epochs=int(trial["epoch"]) + 1,
            weights=trial["state_dict"],
            optimizer=optimizer,
            scheduler=trial["lr_schedulers"][0] if trial["lr_schedulers"] else None,
            record=trial.get("callbacks", {}).get(RECORD_CALLBACK),
            checkpointer=_checkpointer_state(trial),
            order=_order(trial),
            best=float(trial.get(BEST_KEY, float("-inf"))),
        )


@dataclass(frozen=True)
class Recount:
    """Batches counted over epochs of `per_epoch` each, as counted over epochs of `own_per_epoch`: whole
    epochs map to whole epochs, `into(n)` maps n batches into an epoch (stacks of trials of different batch
    sizes count micro-batches, their trials their own steps: `stacked/steps.py`). Totals count from
    `before` batches on (a continuous stack's trial that joined after `before` of the stack's batches; a
    whole number of epochs)."""

    per_epoch: int
    own_per_epoch: int
    into: Callable[[int], int]
    before: int = 0

    @classmethod
    def in_steps(cls, per_epoch: int, own_per_epoch: int, per_step: int, before: int = 0) -> Recount:
        """Micro-batches as steps of `per_step` micro-batches each (the last of an epoch may be short)."""
        return cls(per_epoch, own_per_epoch, lambda n: n // per_step, before)

    @classmethod
    def in_proportion(cls, per_epoch: int, own_per_epoch: int) -> Recount:
        return cls(per_epoch, own_per_epoch, lambda n: n * own_per_epoch // per_epoch)

    def total(self, count: int) -> int:
        # A counter that stood still (no scheduler: its steps stay 0) is 0 for the trial too.
        epochs, into = divmod(max(0, count - self.before), self.per_epoch)
        return epochs * self.own_per_epoch + self.into(into)

    def current(self, count: int) -> int:
        """A count within the epoch (a loop's `current`, which stays at the epoch's end until the next)."""
        return self.own_per_epoch if count >= self.per_epoch else self.into(count)


# Lightning's batch counters in a checkpoint's fit loop, each with `total` (over the fit) and `current`
# (within the epoch) counts: training's, then validation's.
TRAINING_PROGRESS = "epoch_loop.batch_progress"  # in a checkpoint's fit loop: the training batches' progress
_TRAINING_COUNTERS = (
    (TRAINING_PROGRESS,),
    ("epoch_loop.scheduler_progress",),
    ("epoch_loop.automatic_optimization.optim_progress", "optimizer", "step"),
    ("epoch_loop.automatic_optimization.optim_progress", "optimizer", "zero_grad"),
)
_VALIDATION_COUNTERS = (("epoch_loop.val_loop.batch_progress",),)


def recount(
    checkpoint: dict[str, Any], training: Recount, validation: Recount | None = None, epochs_before: int = 0
) -> None:
    """The batch counts in `checkpoint` (Lightning's loops, `global_step`) recounted in place; with
    `epochs_before`, the epochs too (a continuous stack's trial that joined after that many)."""
    loops = checkpoint["loops"] = dict(checkpoint["loops"])
    fit = loops["fit_loop"] = _copied(loops["fit_loop"])
    if epochs_before:
        checkpoint["epoch"] -= epochs_before
        for scope in ("total", "current"):
            counters = fit.get("epoch_progress", {}).get(scope, {})
            for key, value in counters.items():
                counters[key] = max(0, value - epochs_before)
    for paths, counting in ((_TRAINING_COUNTERS, training), (_VALIDATION_COUNTERS, validation)):
        for path in paths if counting is not None else ():
            node = fit
            for key in path:
                node = node.get(key) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                continue
            for scope, mapping in (("total", counting.total), ("current", counting.current)):
                for key, value in node.get(scope, {}).items():
                    node[scope][key] = mapping(value)
    from digitlab.compat.lightning import recount_logged_batches

    recount_logged_batches(fit, training.total)
    checkpoint["global_step"] = training.total(checkpoint["global_step"])


def _copied(node: Any) -> Any:
    """Nested dicts copied (their leaves shared), so a recount leaves the stack's own loops as they are."""
    return {key: _copied(value) for key, value in node.items()} if isinstance(node, dict) else node


def _without_loader_state(loops: dict[str, Any]) -> dict[str, Any]:
    """The loops, less the single run's loader state: the stack's loader is restored by its datamodule."""
    fit = loops["fit_loop"]
    state = {key: value for key, value in fit["state_dict"].items() if key != "combined_loader"}
    return {**loops, "fit_loop": {**fit, "state_dict": state}}


def _order(trial: dict[str, Any]) -> dict[str, Any] | None:
    """The trial's training-order state (its datamodule's)."""
    states = [value for value in trial.values() if isinstance(value, dict) and TRAIN_ORDER in value]
    return states[0][TRAIN_ORDER] if states else None


def _checkpointer_state(trial: dict[str, Any]) -> dict[str, Any] | None:
    """The trial's ModelCheckpoint state (its one callback state besides its record)."""
    states = [value for key, value in trial.get("callbacks", {}).items() if key.startswith("ModelCheckpoint")]
    return states[0] if states else None


def _own(value: Any) -> Any:
    """A tensor as a tensor of its own (not a view of a larger storage); anything else as it is."""
    import torch

    return value.clone() if isinstance(value, torch.Tensor) else value
