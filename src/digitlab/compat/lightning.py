"""Lightning (bounded to 2.6.x): what a stack of trials needs from Lightning's loop and ModelCheckpoint that
Lightning does not make public. All of them serve `stacked.records.TrialRecords`, which makes each trial of a
stack a run of its own; they go when a single run and a stack share one engine (issue 46).

- `hold_sigterm` / `release_sigterm`: trials of different batch sizes must stop where each has just stepped.
  Lightning's SIGTERM handler sets a flag that its loop reads after `on_train_batch_end`; it offers no way to
  defer it (`trainer.received_sigterm` only reads it), so the flag on its signal connector is cleared and
  set again a few micro-batches later. Upstream: none filed that this project found.
- `logged_step`: the step Lightning's logger connector logs a single run's epoch metrics at (validation runs
  before the epoch's last batch is counted), so a stacked trial's curves overlay its single run's; Lightning
  keeps that count in the epoch loop's private `_batches_that_stepped`. Upstream: none filed that this project
  found.
- `recount_logged_batches`: a trial's checkpoint split from its stack's (`checkpoint_format.recount`) counts
  its own batches; the count the logger connector logs at is kept in the epoch loop's state under the
  private key `_batches_that_stepped`. Upstream: none filed that this project found.
- `keep_best`: a trial's best checkpoints kept by its own ModelCheckpoint's rule, Lightning's code as a single
  run runs it (mode, NaN, the file's name and the one it replaces, its state), with the file writes noted
  instead of done: the stack writes one checkpoint of all its trials and links it under each kept name.
  ModelCheckpoint's update (`_update_best_and_save`) and its writes (`_save_checkpoint`,
  `_remove_checkpoint`) are private. Upstream: none filed that this project found.
"""

from __future__ import annotations

from typing import Any

import torch


def sigterm_received(trainer: Any) -> bool:
    return trainer._signal_connector.received_sigterm


def set_sigterm_received(trainer: Any, received: bool) -> None:
    trainer._signal_connector.received_sigterm = received


def logged_step(trainer: Any) -> int:
    return trainer.fit_loop.epoch_loop._batches_that_stepped


def keep_best(
    checkpointer: Any, current: torch.Tensor, trainer: Any, candidates: dict[str, Any]
) -> tuple[list[str], list[str]]:
    """`(files checkpointer would save, files it would remove)` as it takes `current` (its monitor's value,
    already found to be among its top k) with the `candidates` its file names are formatted from."""
    saved: list[str] = []
    removed: list[str] = []
    checkpointer._save_checkpoint = lambda trainer, path: saved.append(str(path))
    checkpointer._remove_checkpoint = lambda trainer, path: removed.append(str(path))
    try:
        checkpointer._update_best_and_save(current, trainer, candidates)
    finally:
        del checkpointer._save_checkpoint, checkpointer._remove_checkpoint  # the class's own again
    return saved, removed


def recount_logged_batches(fit: dict[str, Any], total: Any) -> None:
    """In a checkpoint's fit-loop state `fit`, the epoch loop's logged-batch count mapped through `total`."""
    state = fit.get("epoch_loop.state_dict", {})
    if "_batches_that_stepped" in state:
        state["_batches_that_stepped"] = total(state["_batches_that_stepped"])
