"""Optimizers beyond torch's own, selected by `conf/optimizer/` (torch's own are named there directly)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

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


def check_optimizer(factory: Callable, settings: dict[str, Any], name: str) -> Optimizer:
    """Build the optimizer for real, on a stand-in parameter, before any data work: ConfigError naming
    `optimizer.<key>=<value>` when torch refuses a value (torch's own words quoted), or when one is not a
    finite number where torch would take it (an infinite lr trains a step, then fails)."""
    from digitlab.errors import ConfigError

    shown = ", ".join(f"optimizer.{key}={value}" for key, value in settings.items())
    for key, value in settings.items():
        numbers = value if isinstance(value, list | tuple) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
            raise ConfigError(f"optimizer.{key}={value} is invalid: it must be a finite number.")
    if "lr" in settings and not (_is_real(settings["lr"]) and settings["lr"] > 0):
        raise ConfigError(f"optimizer.lr={settings['lr']!r} is invalid: it must be a number > 0.")
    try:
        return factory([torch.nn.Parameter(torch.zeros(2))])
    except (ValueError, TypeError, IndexError, KeyError, RuntimeError) as err:
        said = str(err) or type(err).__name__
        named = [key for key in settings if key in said]
        which = f"optimizer.{named[0]}={settings[named[0]]}" if named else shown
        raise ConfigError(
            f"{which} is refused by {name} (torch says: {said}). Every setting of {name}: {shown}."
        ) from None


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
