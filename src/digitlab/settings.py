"""What each setting may be, declared beside what takes it, and found from a config's `_target_`s.

A class or function that a config instantiates declares its settings' rules with `@takes(hidden=whole(1))`;
a call with a bad value raises a `ConfigError` naming it (`hidden=-1 is invalid: it must be a whole number
>= 1.`). Before any work, `config.checks.validate` reads the same rules from each `_target_` of the composed
config and names the value as the user typed it (`model.net.hidden=-1`). Targets digitlab does not own
(Lightning's Trainer and callbacks) have their rules in `FOREIGN`, keyed by the target, not by a key path.
Kept rather than Hydra's structured configs, which check a value's type but not its range (lr > 0,
momentum < 1) and whose errors do not name the override as typed; these rules travel with any `_target_`.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digitlab.errors import ConfigError

RULES = "__digitlab_settings__"


@dataclass(frozen=True)
class Rule:
    test: Callable[[Any], bool]
    allowed: str  # completes "it must be ..."

    def check(self, name: str, value: Any) -> None:
        if not self.test(value):
            raise ConfigError(f"{name}={_shown(value)} is invalid: it must be {self.allowed}.")


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def whole(at_least: int = 1, at_most: int | None = None) -> Rule:
    top = f" and <= {at_most}" if at_most is not None else ""
    return Rule(
        lambda v: (
            isinstance(v, int)
            and not isinstance(v, bool)
            and v >= at_least
            and (at_most is None or v <= at_most)
        ),
        f"a whole number >= {at_least}{top}",
    )


def number(
    above: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
    below: float | None = None,
) -> Rule:
    bounds = [
        f"> {above}" if above is not None else "",
        f">= {at_least}" if at_least is not None else "",
        f"<= {at_most}" if at_most is not None else "",
        f"< {below}" if below is not None else "",
    ]
    said = " and ".join(b for b in bounds if b)
    return Rule(
        lambda v: (
            _is_number(v)
            and (above is None or v > above)
            and (at_least is None or v >= at_least)
            and (at_most is None or v <= at_most)
            and (below is None or v < below)
        ),
        f"a finite number{' ' + said if said else ''}",
    )


def one_of(*values: Any) -> Rule:
    return Rule(lambda v: v in values and not isinstance(v, bool), f"one of {', '.join(map(str, values))}")


BOOLEAN = Rule(lambda v: isinstance(v, bool), "true or false")
FOLDER = Rule(
    lambda v: isinstance(v, str) and v != "" and Path(v).expanduser().is_dir(), "an existing folder"
)


def optional(rule: Rule) -> Rule:
    return Rule(lambda v: v is None or rule.test(v), f"null or {rule.allowed}")


def takes(**rules: Rule) -> Callable:
    """Declare the rules of a function's or a class's settings; every call is checked against them."""

    def decorate(target: Any) -> Any:
        wrapped = target.__init__ if inspect.isclass(target) else target
        signature = inspect.signature(wrapped)

        @functools.wraps(wrapped)
        def checked(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            check(rules, bound.arguments)
            return wrapped(*args, **kwargs)

        if inspect.isclass(target):
            target.__init__ = checked
            setattr(target, RULES, {**rules_of(target.__mro__[1]), **rules})
            return target
        setattr(checked, RULES, rules)
        return checked

    return decorate


def check(rules: Mapping[str, Rule], values: Mapping[str, Any], prefix: str = "") -> None:
    """ConfigError naming `<prefix><name>=<value>` for the first value its rule refuses."""
    for name, rule in rules.items():
        if name in values:
            rule.check(f"{prefix}{name}", values[name])


def rules_of(target: Any) -> dict[str, Rule]:
    """The rules `target` declared with `@takes`, or those `FOREIGN` holds for it."""
    own = getattr(target, RULES, None)
    if own is not None:
        return dict(own)
    name = f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', '')}"
    for cls in inspect.getmro(target) if inspect.isclass(target) else ():
        name = f"{cls.__module__}.{cls.__qualname__}"
        if name in FOREIGN:
            return dict(FOREIGN[name])
    return dict(FOREIGN.get(name, {}))


BETAS = Rule(
    lambda v: isinstance(v, list | tuple) and len(v) == 2 and all(_is_number(b) and 0 <= b < 1 for b in v),
    "two numbers in [0, 1), e.g. [0.9,0.999]",
)

# Lightning's and torch's classes, by where they are defined; a subclass has its base's rules. (Torch also
# refuses bad optimizer and scheduler values itself when `config.checks` builds them on a stand-in.)
FOREIGN: dict[str, dict[str, Rule]] = {
    # torch refuses a negative momentum but trains with 1.5 (each step grows the last): the fraction of the
    # last step kept is in [0, 1), and so is how much of the gradient dampening removes.
    "torch.optim.sgd.SGD": {
        "momentum": number(at_least=0, below=1),
        "dampening": number(at_least=0, at_most=1),
        "weight_decay": number(at_least=0),
    },
    "torch.optim.adam.Adam": {"betas": BETAS, "eps": number(at_least=0), "weight_decay": number(at_least=0)},
    "torch.optim.adamw.AdamW": {
        "betas": BETAS,
        "eps": number(at_least=0),
        "weight_decay": number(at_least=0),
    },
    "torch.optim.lr_scheduler.CosineAnnealingLR": {"eta_min": number(at_least=0)},
    # div_factor 0 is a division by zero inside torch, a negative one a negative lr.
    "torch.optim.lr_scheduler.OneCycleLR": {
        "pct_start": number(above=0, below=1),
        "div_factor": number(above=0),
        "final_div_factor": number(above=0),
    },
    # Launchers' settings (`hydra.launcher.*`), checked before the launcher is made (`check_plugin`).
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher": {
        "n_jobs": Rule(
            lambda v: isinstance(v, int) and not isinstance(v, bool) and v != 0,
            "a whole number other than 0 (-1: one job per core)",
        ),
    },
    "lightning.pytorch.trainer.trainer.Trainer": {
        "max_epochs": whole(1),
        "accelerator": one_of("cpu", "gpu", "cuda", "mps", "auto"),
        "check_val_every_n_epoch": optional(whole(1)),
        "log_every_n_steps": optional(whole(1)),
        "gradient_clip_val": optional(number(at_least=0)),
        "accumulate_grad_batches": whole(1),
        "enable_progress_bar": optional(BOOLEAN),
        "enable_model_summary": optional(BOOLEAN),
        "deterministic": optional(Rule(lambda v: isinstance(v, bool) or v == "warn", "true, false or warn")),
    },
    "lightning.pytorch.callbacks.early_stopping.EarlyStopping": {
        "patience": whole(0),
        "min_delta": number(at_least=0),
        "mode": one_of("min", "max"),
    },
    "lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint": {
        "save_top_k": whole(-1),
        "mode": one_of("min", "max"),
    },
}
