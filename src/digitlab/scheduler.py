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


def check_scheduler(factory: Callable, optimizer: Optimizer, settings: dict, name: str) -> None:
    """Build the scheduler for real on the stand-in optimizer (`optimizer.check_optimizer`) (not stepped):
    ConfigError naming `scheduler.<key>=<value>` when torch refuses a value."""
    from digitlab.errors import ConfigError

    shown = ", ".join(f"scheduler.{key}={value}" for key, value in settings.items()) or "its defaults"
    try:
        build_scheduler(factory, optimizer, total_steps=100)
    except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError, RuntimeError) as err:
        said = str(err) or type(err).__name__
        named = [key for key in settings if key in said]
        which = f"scheduler.{named[0]}={settings[named[0]]}" if named else shown
        raise ConfigError(
            f"{which} is refused by {name} (torch says: {said}). Every setting of {name}: {shown}."
        ) from None
