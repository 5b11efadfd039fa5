"""The batches of K stacked trials: at every step trial k's row holds the indices its own DataLoader would give,
in the order its own seed shuffles them (the same generator draws as `DigitsDataModule.train_dataloader`:
DataLoader's base-seed draw, then `IndexBatchSampler`'s permutations), so each trial sees exactly the batches
it would see alone. One gather serves all trials: `[K, B]` indices -> `[K, B, 1, 28, 28]` images."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import RandomSampler, Sampler, SequentialSampler

from digitlab.data.datamodules import IndexBatchSampler, TensorBatches


def shuffle_rows(seeds: Sequence[int], shuffle: bool = True) -> list[int]:
    """Row k of a stacked batch for trial k: one row per distinct seed (one row in all without shuffling)."""
    distinct = list(dict.fromkeys(seeds)) if shuffle else []
    return [distinct.index(seed) for seed in seeds] if shuffle else [0] * len(seeds)


class StackedBatchSampler(Sampler[torch.Tensor]):
    """`[U, B]` index batches, one row per distinct shuffle order: trials with the same seed draw the same
    order, so it is drawn and gathered once (`shuffle_rows` says which row is whose); without shuffling,
    one row."""

    def __init__(self, size: int, batch_size: int, seeds: Sequence[int], shuffle: bool = True) -> None:
        distinct = list(dict.fromkeys(seeds))
        self.epoch_starts: list[torch.Tensor] | None = None  # each generator's state when the epoch began
        self.skip = 0  # batches to pass over on the next epoch (a resume mid-epoch)
        self.generators = [torch.Generator().manual_seed(seed) for seed in distinct] if shuffle else []
        items = range(size)
        self.samplers = (
            [
                IndexBatchSampler(RandomSampler(items, generator=g), batch_size, drop_last=False)
                for g in self.generators
            ]
            if shuffle
            else [IndexBatchSampler(SequentialSampler(items), batch_size, drop_last=False)]
        )

    def __len__(self) -> int:
        return len(self.samplers[0])

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

    def order_state(self, row: int, batches_done: int) -> dict[str, Any]:
        """Shuffle row `row`'s training-order state, in a single run's layout (`ResumableLoader.state_dict`);
        `batches_done` as `datamodules.batches_into_epoch` counts them (0 between epochs)."""
        if not self.generators:
            return {"generator": None, "batches_done": batches_done if batches_done < len(self) else 0}
        generator = self.generators[row]
        if self.epoch_starts is None or batches_done == 0 or batches_done >= len(self):
            return {"generator": generator.get_state(), "batches_done": 0}
        return {"generator": self.epoch_starts[row], "batches_done": batches_done}

    def load_order(self, states: Sequence[dict[str, Any]]) -> None:
        """One state per shuffle row (all at the same point): the next epoch continues from it."""
        for generator, state in zip(self.generators, states, strict=False):
            if state.get("generator") is not None:
                generator.set_state(state["generator"])
        self.skip = int(states[0]["batches_done"]) if states else 0

    def _steps(self) -> Iterator[torch.Tensor]:
        # The trials' samplers in lockstep, each resumed exactly when a single run's would be: its permutation
        # is drawn at the first batch, and the extra one after its last batch only if that is asked for
        # (Lightning does not ask; a plain `for` over the DataLoader does).
        yield from (torch.stack(step) for step in zip(*self.samplers, strict=True))


class StackedTensorBatches(TensorBatches):
    """`TensorBatches` read with `[K, B]` index tensors: one `index_select`, then `[K, B, ...]`."""

    def __getitems__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(index)
        images, labels = super().__getitems__(index.flatten())
        return images.view(*index.shape, *images.shape[1:]), labels.view(index.shape)
