"""The batches of K stacked trials: at every step trial k's row holds the indices its own DataLoader would give,
in the order its own seed shuffles them (the same generator draws as `DigitsDataModule.train_dataloader`:
DataLoader's base-seed draw, then `IndexBatchSampler`'s permutations), so each trial sees exactly the batches
it would see alone. One gather serves all trials: `[K, B]` indices -> `[K, B, 1, 28, 28]` images."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Sampler

from digitlab.data.datamodules import TensorBatches


def shuffle_rows(
    seeds: Sequence[int], shuffle: bool = True, partial_last: Sequence[bool] | None = None
) -> list[int]:
    """Row k of a stacked batch for trial k: one row per distinct shuffle order (one row in all without
    shuffling). Trials share an order when they share the seed and whether their epoch ends with a short
    batch (`steps.StepPlan.partial_last`), since that decides when their sampler draws its next permutation."""
    if not shuffle:
        return [0] * len(seeds)
    keys = list(zip(seeds, partial_last or [False] * len(seeds), strict=True))
    distinct = list(dict.fromkeys(keys))
    return [distinct.index(key) for key in keys]


class StackedBatchSampler(Sampler[torch.Tensor]):
    """`[U, B]` index batches, one row per distinct shuffle order (`shuffle_rows`): trials with the same order
    draw it once, gathered once; without shuffling, one row. B is the stack's micro-batch (`steps.StepPlan`):
    each row is the permutation its trials' single runs draw, in micro-batches."""

    def __init__(
        self, size: int, batch_size: int, orders: Sequence[tuple[int, bool]], shuffle: bool = True
    ) -> None:
        """`orders[u]`: row u's seed, and whether its trials' epochs end with a short batch."""
        self.size, self.batch_size = size, batch_size
        self.epoch_starts: list[torch.Tensor] | None = None  # each generator's state when the epoch began
        self.skip = 0  # batches to pass over on the next epoch (a resume mid-epoch)
        self.generators = [torch.Generator().manual_seed(seed) for seed, _ in orders] if shuffle else []
        self.partial_last = [partial for _, partial in orders] if shuffle else []

    def restart(self, row: int, seed: int, partial_last: bool, order: dict[str, Any] | None = None) -> None:
        """Row `row` holds a new trial from the next epoch on (a continuous stack's slot refilled between
        epochs, `stacked.slots`): its order is drawn by a generator of its own seed, from the start, or from
        `order` (`order_state` between epochs: a trial that continues its run)."""
        if self.generators:
            self.generators[row] = torch.Generator().manual_seed(seed)
            if order is not None and order.get("generator") is not None:
                self.generators[row].set_state(order["generator"])
            self.partial_last[row] = partial_last

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        self.epoch_starts = [generator.get_state() for generator in self.generators]
        # What DataLoader(generator=g) draws from g whenever an iterator over it is made (its base seed), at
        # that moment: Lightning makes some it never reads from.
        for generator in self.generators:
            torch.empty((), dtype=torch.int64).random_(generator=generator)
        steps = self._steps()
        skip, self.skip = self.skip, 0
        for _ in range(skip):
            next(steps)
        return steps

    def order_state(self, row: int, batches_done: int, epoch_batches: int) -> dict[str, Any]:
        """Shuffle row `row`'s training-order state, in a single run's layout (`ResumableLoader.state_dict`)
        for a trial whose epoch has `epoch_batches` batches, `batches_done` of them trained, as
        `datamodules.batches_into_epoch` counts them (0 between epochs)."""
        if not self.generators:
            return {"generator": None, "batches_done": batches_done if batches_done < epoch_batches else 0}
        generator = self.generators[row]
        if self.epoch_starts is None or batches_done == 0 or batches_done >= epoch_batches:
            return {"generator": generator.get_state(), "batches_done": 0}
        return {"generator": self.epoch_starts[row], "batches_done": batches_done}

    def load_order(self, states: Sequence[dict[str, Any]], micro_batches_done: int) -> None:
        """One state per shuffle row (all at the same point, `micro_batches_done` into the epoch): the next
        epoch continues from it."""
        for generator, state in zip(self.generators, states, strict=False):
            if state.get("generator") is not None:
                generator.set_state(state["generator"])
        self.skip = micro_batches_done

    def _steps(self) -> Iterator[torch.Tensor]:
        # Each row's permutation is drawn at the first batch, as a single run's sampler draws it
        # (`IndexBatchSampler`); a row whose trials' epochs end with a short batch draws the next one while
        # that batch is filled, the others only if asked after their last batch (Lightning does not ask).
        if not self.generators:
            yield from (rows.unsqueeze(0) for rows in torch.arange(self.size).split(self.batch_size))
            return
        orders = [torch.randperm(self.size, generator=g) for g in self.generators]
        batches = torch.stack(orders).split(self.batch_size, dim=1)
        yield from batches[:-1]
        for generator, partial in zip(self.generators, self.partial_last, strict=True):
            if partial:
                torch.randperm(self.size, generator=generator)
        yield batches[-1]


class StackedTensorBatches(TensorBatches):
    """`TensorBatches` read with `[K, B]` index tensors: one `index_select`, then `[K, B, ...]`."""

    def __getitems__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(index)
        images, labels = super().__getitems__(index.flatten())
        return images.view(*index.shape, *images.shape[1:]), labels.view(index.shape)
