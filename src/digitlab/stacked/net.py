"""K trials' nets of one architecture run as one: the chapter's linear and MLP nets (`Flatten, Linear, ...`).

The first Linear of all K trials is one batched matmul. On a training batch (`[U, B, ...]`, one row per
distinct shuffle order, `batches.py`), when every order is shared by the same number m of trials, each
order's rows are read once for its m trials (`[U, m * out, pixels] @ [U, pixels, B]`); otherwise each trial
gets a copy of its rows (U = K, m = 1). A validation batch (`[B, ...]`) is read once for all K (U = 1). The
weights come first in the product so that their gradient is `[out, B] @ [B, pixels]`, the orientation CPU
BLAS is fast at: the other one, which `einsum` and a vmapped `Linear` pick, took 6 x longer on the chapter's
shapes. The rest of the net is `torch.func.vmap(functional_call)` over the trials.

Each step stacks the trials' own parameters (`torch.stack`, through which gradients flow back to each
trial's tensors), so every trial keeps its own leaves, and its own param group in the optimizer.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap


def stackable(net: nn.Module) -> bool:
    layers = list(net.children()) if isinstance(net, nn.Sequential) else []
    return len(layers) >= 2 and isinstance(layers[0], nn.Flatten) and isinstance(layers[1], nn.Linear)


class StackedNet(nn.Module):
    def __init__(self, nets: Sequence[nn.Sequential], shuffle_of: Sequence[int]) -> None:
        """`nets`: the trials' own nets (registered by their trials' modules, not here); `shuffle_of[k]`: which
        row of a training batch is trial k's."""
        super().__init__()
        if not stackable(nets[0]):
            raise ValueError(
                f"only nets that start Flatten, Linear can be stacked, not {type(nets[0]).__name__}"
            )
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
        layers = list(nets[0].children())
        # The net after its first Linear: its code and shapes only (meta, not registered).
        self._rest = (copy.deepcopy(nn.Sequential(*layers[2:])).to("meta"),)
        self._rest_names = {
            f"{int(i) - 2}.{name}": f"{i}.{name}" for i, name in _indexed(nets[0]) if int(i) >= 2
        }
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
        rest = self._rest[0]
        if len(rest):
            per_trial = [dict(net.named_parameters()) for net in nets]
            params = {
                name: torch.stack([own[full] for own in per_trial]) for name, full in self._rest_names.items()
            }
            hidden = vmap(lambda p, h: functional_call(rest, p, (h,)))(params, hidden)
        return hidden


def _indexed(net: nn.Module) -> list[tuple[str, str]]:
    """`(layer index, parameter name)` of each parameter of a Sequential, e.g. ("3", "weight")."""
    return [tuple(name.split(".", 1)) for name, _ in net.named_parameters()]
