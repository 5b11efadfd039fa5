"""The chapter's nets as plain `nn.Module`s. Each takes `num_outputs` first: `ClassifierModule` passes 1 for a
binary loss (one logit, "probability of a 3") or the number of classes for cross entropy.
"""

from __future__ import annotations

from torch import nn

from digitlab.settings import takes, whole

PIXELS = 28 * 28


@takes(num_outputs=whole(1), in_features=whole(1))
def linear(num_outputs: int, in_features: int = PIXELS) -> nn.Sequential:
    """The chapter's linear model `xb @ weights + bias`: 784 -> num_outputs."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, num_outputs))


@takes(num_outputs=whole(1), hidden=whole(1), depth=whole(1), in_features=whole(1))
def mlp(num_outputs: int, hidden: int = 30, depth: int = 1, in_features: int = PIXELS) -> nn.Sequential:
    """The chapter's `simple_net` (784 -> 30 -> ReLU -> 1) with `depth` hidden layers of width `hidden`."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, num_outputs))
    return nn.Sequential(*layers)
