"""When each trial of a stack steps, for trials of different batch sizes (`data.batch_size`).

A stack reads micro-batches of m rows, m the greatest common divisor of its trials' batch sizes: trial k
(batch size b_k = r_k * m) accumulates r_k micro-batches, then steps. Its single run reads the same rows in
the same order (trials that share a seed share the shuffle order, whatever their batch size: the
permutation is drawn per epoch, not per batch), so its r_k micro-batches are exactly its single run's batch.
Its loss on a micro-batch is weighted by the micro-batch's share of that batch (n_micro / n_batch), so the
accumulated gradient is its single run's to float round-off, the short last batch of an epoch included.
Trials computed at their own widths (`StackedNet.own_grads`) do not accumulate: each is computed once per
step, on the micro-batch that completes its batch, over the whole batch (`StackedClassifier._own_batches_step`):
one matmul per layer at its own batch size, and nothing between its steps.

Lightning counts micro-batches (`trainer.global_step`, the loops); `to_trial` and `from_trial` map
between that count and trial k's own steps (what its single run counts, logs at and checkpoints). Both
are exact wherever every trial stands at a step boundary (`at_common_boundary`): an epoch's end, and every
lcm(r_k)-th micro-batch. A stack whose trials share the batch size has r_k = 1 and maps to itself.

A continuous stack (`stacked.slots`) refills a slot with a new trial at an epoch boundary: its micro-batch is
fixed (the batch sizes' class, `grouping.micro_batch_class`, whatever trials stand in the slots), each
slot's count starts at the epoch its trial joined (`start_epochs`), and every step is masked (`uniform` is
False), so a trial's first step starts its momentum as its single run's does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from digitlab.checkpoint_format import Recount


class StepPlan:
    def __init__(
        self,
        rows: int,
        batch_sizes: Sequence[int],
        val_rows: int = 0,
        eval_batch_sizes: Sequence[int] | None = None,
        micro: int | None = None,
        start_epochs: Sequence[int] | None = None,
    ) -> None:
        """`rows`: the training set's size; `batch_sizes[k]`: trial k's; `val_rows` and `eval_batch_sizes`:
        the validation set's, for its batch counts in the trials' checkpoints (the stack validates in the
        first trial's batches). A continuous stack's: `micro` (a divisor of every batch size) and
        `start_epochs[k]`, the stack's epoch at which slot k's trial joined."""
        self.rows, self.val_rows = rows, val_rows
        self.refills = start_epochs is not None
        self.start_epochs = list(start_epochs) if start_epochs is not None else [0] * len(batch_sizes)
        eval_sizes = list(eval_batch_sizes or batch_sizes)
        self.val_batches = [math.ceil(val_rows / b) for b in eval_sizes]
        self.batch_sizes = list(batch_sizes)
        self.micro = micro or math.gcd(*self.batch_sizes)
        self.per_step = [b // self.micro for b in self.batch_sizes]  # r_k
        self.micro_per_epoch = math.ceil(rows / self.micro)  # M
        self.steps_per_epoch = [math.ceil(rows / b) for b in self.batch_sizes]  # S_k
        self.uniform = all(r == 1 for r in self.per_step) and not self.refills
        j = torch.arange(self.micro_per_epoch)
        micro_rows = (rows - j * self.micro).clamp(max=self.micro)  # the last one may be short
        r = torch.tensor(self.per_step)
        step = j.unsqueeze(1) // r  # [M, K]: the trial's step (0-based, within the epoch) a micro-batch is in
        batch = torch.tensor(self.batch_sizes)
        batch_rows = (rows - step * batch).clamp(max=batch)  # that step's batch size: its last may be short
        # [M, K] in float64, cast to the loss's dtype where used: each micro-batch loss's share of its step's
        self.weights = micro_rows.unsqueeze(1).double() / batch_rows.double()
        # [M, K]: whether trial k steps after micro-batch j (its r_k-th, or the epoch's last)
        self.steps_after = ((j.unsqueeze(1) + 1) % r == 0) | (j == self.micro_per_epoch - 1).unsqueeze(1)
        self.step_number = step + 1  # [M, K]: the single run's step, counted within the epoch from 1

    def to_trial(self, k: int) -> Recount:
        """The stack's micro-batch counts as trial k's steps (from the epoch it joined)."""
        return Recount.in_steps(
            self.micro_per_epoch,
            self.steps_per_epoch[k],
            self.per_step[k],
            self.start_epochs[k] * self.micro_per_epoch,
        )

    def from_trial(self, k: int) -> Recount:
        """Trial k's step counts as the stack's micro-batches (the inverse, at trial k's step boundaries)."""
        r = self.per_step[k]
        return Recount(
            self.steps_per_epoch[k],
            self.micro_per_epoch,
            lambda n: n * r,
            -self.start_epochs[k] * self.steps_per_epoch[k],
        )

    def trial_steps(self, k: int, micro_batches: int) -> int:
        """Trial k's steps taken when `micro_batches` micro-batches have been trained."""
        return self.to_trial(k).total(micro_batches)

    def counts(self) -> dict[str, object]:
        """What `checkpoint_format.split` needs to recount a stack's loops in each trial's own batches."""
        return {
            "micro_per_epoch": self.micro_per_epoch,
            "steps_per_epoch": self.steps_per_epoch,
            "per_step": self.per_step,
            "val_batches": self.val_batches,
            "start_epochs": self.start_epochs,
        }

    def at_common_boundary(self, micro_batches: int) -> bool:
        """Whether every trial has just stepped (no gradient is half accumulated)."""
        into = micro_batches % self.micro_per_epoch
        return all(into % r == 0 for r in self.per_step)

    def partial_last(self, k: int) -> bool:
        """Whether trial k's epoch ends with a short batch (its single run's sampler then draws its next
        permutation within the epoch; see `batches.StackedBatchSampler`)."""
        return self.rows % self.batch_sizes[k] != 0
