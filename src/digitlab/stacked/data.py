"""A stack's data: the trials' shared datamodule, whose training batches hold every trial's rows at once.

Each trial's rows come in its own shuffle order (`batches.py`), in micro-batches of the trials' batch sizes'
common divisor (`steps.StepPlan`); its state is each trial's order as its single run's datamodule keeps it,
so a stack's checkpoint splits into trial checkpoints that resume alone (`checkpoint_format`).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from digitlab.data.datamodules import batches_into_epoch, keep_batch
from digitlab.stacked.batches import StackedBatchSampler, StackedTensorBatches, shuffle_rows
from digitlab.stacked.steps import StepPlan


class StackedData(L.LightningDataModule):
    """The trials' shared datamodule, with training batches for every trial at once: micro-batches of the
    trials' batch sizes' common divisor (`steps.StepPlan`), one row per distinct shuffle order."""

    def __init__(
        self,
        inner: L.LightningDataModule,
        seeds: list[int],
        plan: StepPlan,
        continued: dict[int, dict[str, Any] | None] | None = None,
    ) -> None:
        """`inner`: the first trial's datamodule, set up (its training set's size made `plan`). A
        continuous stack's (`plan.refills`) slots each have a row: a refilled slot's trial draws its own;
        `continued`: the training orders of its first trials that continue a run, by slot."""
        super().__init__()
        self.inner = inner
        self.plan = plan
        self.seeds = seeds
        self.continued = dict(continued or {})
        partial = [plan.partial_last(k) for k in range(len(seeds))]
        self.rows = list(range(len(seeds))) if plan.refills else shuffle_rows(seeds, inner.shuffle, partial)
        # Row u's (seed, short last batch): one per distinct one, or one per slot of a continuous stack.
        orders = list(zip(seeds, partial, strict=True))
        self.orders = orders if plan.refills else list(dict.fromkeys(orders))
        self.sampler: StackedBatchSampler | None = None
        self._resume_from: tuple[list[dict[str, Any]], int] | None = None

    def prepare_data(self) -> None:
        self.inner.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        self.inner.trainer = self.trainer  # where the splits live (device_resident)
        self.inner.setup(stage)
        train = self.inner.train_set
        self.train_set = StackedTensorBatches(train.images, train.labels)

    def train_dataloader(self) -> DataLoader:
        self.sampler = StackedBatchSampler(
            len(self.train_set), self.plan.micro, self.orders, self.inner.shuffle
        )
        if self._resume_from is not None:
            self.sampler.load_order(*self._resume_from)
        for k, order in self.continued.items():
            self.sampler.restart(k, self.seeds[k], self.plan.partial_last(k), order)
        self.continued = {}  # once: a loader made again later must not rewind those trials' orders
        return DataLoader(self.train_set, batch_sampler=self.sampler, collate_fn=keep_batch)

    def val_dataloader(self) -> DataLoader:
        return self.inner.val_dataloader()

    def state_dict(self) -> dict[str, Any]:
        """Each trial's training-order state, as its single run's datamodule keeps it (its own batches)."""
        if self.sampler is None:
            return {}
        done, plan = batches_into_epoch(self.trainer), self.plan
        orders = [
            self.sampler.order_state(row, plan.to_trial(k).current(done), plan.steps_per_epoch[k])
            for k, row in enumerate(self.rows)
        ]
        # Trials of one shuffle row hold equal generator states: one tensor for them all is stored once
        # (torch.save writes a storage once), which made a 256-trial stack's checkpoint a quarter faster to
        # read back than 256 copies.
        shared: dict[bytes, torch.Tensor] = {}
        for order in orders:
            if order["generator"] is not None:
                order["generator"] = shared.setdefault(
                    order["generator"].numpy().tobytes(), order["generator"]
                )
        return {"orders": orders}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """A resumed stack (`checkpoint_format.join`): each trial's order; one per shuffle row is used, and
        how far into the epoch they stand (all trials at the same point) in micro-batches."""
        first_of_row = {row: k for k, row in reversed(list(enumerate(self.rows)))}
        orders = state["orders"]
        if not orders or None in orders:  # checkpoints from before the order was kept: none
            self._resume_from = None
            return
        done = int(orders[0]["batches_done"]) * self.plan.per_step[0]
        self._resume_from = ([orders[first_of_row[row]] for row in sorted(first_of_row)], done)
