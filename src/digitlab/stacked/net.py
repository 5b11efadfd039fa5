"""K trials' nets of one architecture run as one: the chapter's linear and MLP nets (`Flatten, Linear, ...`).

The first Linear of all K trials is one batched matmul. On a training batch (`[U, B, ...]`, one row per
distinct shuffle order, `batches.py`), when every order is shared by the same number m of trials, each
order's rows are read once for its m trials (`[U, m * out, pixels] @ [U, pixels, B]`); otherwise each trial
gets a copy of its rows (U = K, m = 1). A validation batch (`[B, ...]`) is read once for all K (U = 1). The
weights come first in the product so that their gradient is `[out, B] @ [B, pixels]`, the orientation CPU
BLAS is fast at: the other one, which `einsum` and a vmapped `Linear` pick, took 6 x longer on the chapter's
shapes. The rest of the net (ReLU, Linear) is batched matmuls over the trials too (`[K, B, in] @ [K, in, out]`).

Each step stacks the trials' own parameters (`torch.stack`, through which gradients flow back to each
trial's tensors), so every trial keeps its own leaves, and its own param group in the optimizer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def stackable(net: nn.Module) -> bool:
    """`Flatten, Linear`, then Linears and ReLUs: the chapter's linear and MLP nets."""
    layers = list(net.children()) if isinstance(net, nn.Sequential) else []
    return (
        len(layers) >= 2
        and isinstance(layers[0], nn.Flatten)
        and isinstance(layers[1], nn.Linear)
        and all(isinstance(layer, nn.Linear | nn.ReLU) for layer in layers[2:])
    )


class StackedNet(nn.Module):
    def __init__(self, nets: Sequence[nn.Sequential], shuffle_of: Sequence[int]) -> None:
        """`nets`: the trials' own nets (registered by their trials' modules, not here); `shuffle_of[k]`: which
        row of a training batch is trial k's."""
        super().__init__()
        if not stackable(nets[0]):
            raise ValueError(f"only Flatten, Linear, then Linear and ReLU layers stack, not {nets[0]}")
        self._nets = tuple(nets)
        groups = max(shuffle_of) + 1
        even = len({list(shuffle_of).count(u) for u in range(groups)}) == 1
        # Trials in the order of their shuffle rows, and where trial k sits in that order.
        order = sorted(range(len(nets)), key=lambda k: shuffle_of[k]) if even else list(range(len(nets)))
        self.groups = groups if even else len(nets)
        self.register_buffer("shuffle_of", torch.tensor(list(shuffle_of)), persistent=False)
        self.register_buffer(
            "position", torch.tensor([order.index(k) for k in range(len(order))]), persistent=False
        )
        self._grouped = order != list(range(len(nets)))  # scores come out grouped: put them back
        self._share_rows = even
        self._rest = [isinstance(layer, nn.Linear) for layer in list(nets[0].children())[2:]]  # else ReLU
        self._order = order

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Scores `[K, B, outputs]` from a training batch `[U, B, ...]` or one batch `[B, ...]` for all trials."""
        if images.dim() == 4:  # one batch: every trial reads the same rows
            return self._scores(images.unsqueeze(0), self._nets, groups=1)
        if not self._share_rows:
            return self._scores(images.index_select(0, self.shuffle_of), self._nets, groups=self.groups)
        nets = [self._nets[k] for k in self._order]
        scores = self._scores(images, nets, groups=self.groups)
        return scores.index_select(0, self.position) if self._grouped else scores

    def _scores(self, images: torch.Tensor, nets: Sequence[nn.Sequential], groups: int) -> torch.Tensor:
        weight = torch.stack([net[1].weight for net in nets])  # [K, out, pixels]
        bias = torch.stack([net[1].bias for net in nets])  # [K, out]
        k, out, pixels = weight.shape
        batch = images.shape[1]
        x = images.flatten(2)  # [U, B, pixels]
        hidden = torch.baddbmm(bias.view(groups, -1, 1), weight.view(groups, -1, pixels), x.transpose(1, 2))
        hidden = hidden.view(k, out, batch).transpose(1, 2)  # [K, B, out]
        for index, linear in enumerate(self._rest, start=2):
            if linear:
                weight = torch.stack([net[index].weight for net in nets])  # [K, out, in]
                bias = torch.stack([net[index].bias for net in nets])  # [K, out]
                hidden = torch.baddbmm(bias.unsqueeze(1), hidden, weight.transpose(1, 2))  # [K, B, out]
            else:
                hidden = torch.relu(hidden)
        return hidden
