"""Optimizers beyond torch's own, selected by `conf/optimizer/` (torch's own are named there directly)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.optim import Optimizer


class BasicOptim(Optimizer):
    """The chapter's optimizer: `p -= lr * p.grad` for every parameter, nothing else."""

    def __init__(self, params, lr: float) -> None:
        if not lr > 0:
            raise ValueError(f"BasicOptim lr={lr!r} is invalid: it must be > 0.")
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"])
        return loss
