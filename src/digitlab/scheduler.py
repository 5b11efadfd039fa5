"""Learning-rate schedulers (selected by `conf/scheduler/`): torch's own, told the run's length when they need it."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch.optim import Optimizer

# Schedulers that need the run's length in optimizer steps, and the argument that carries it.
_LENGTH_ARGUMENTS = ("total_steps", "T_max")


def build_scheduler(factory: Callable, optimizer: Optimizer, total_steps: int):
    """Call a scheduler factory (a `_partial_` config), passing the run length to those that take one."""
    target = getattr(factory, "func", factory)
    parameters = inspect.signature(target).parameters
    kwargs: dict = {name: int(total_steps) for name in _LENGTH_ARGUMENTS if name in parameters}
    if "cycle_momentum" in parameters and not {"momentum", "betas"} & set(optimizer.defaults):
        # OneCycleLR cycles momentum too (fastai's moms), and refuses an optimizer that has none (the
        # chapter's BasicOptim): then only the learning rate cycles.
        kwargs["cycle_momentum"] = False
    return factory(optimizer=optimizer, **kwargs)
