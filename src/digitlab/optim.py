"""Optimizers beyond torch's own (selected by `conf/optimizer/`), and how schedulers learn the run's length."""

from __future__ import annotations

import inspect
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


# Schedulers that need the run's length in optimizer steps, and the argument that carries it.
_LENGTH_ARGUMENTS = ("total_steps", "T_max")


def build_scheduler(factory: Callable, optimizer: Optimizer, total_steps: int):
    """Call a scheduler factory (a `_partial_` config), passing the run length to those that take one."""
    target = getattr(factory, "func", factory)
    parameters = inspect.signature(target).parameters
    lengths = {name: int(total_steps) for name in _LENGTH_ARGUMENTS if name in parameters}
    return factory(optimizer=optimizer, **lengths)
