"""A run's settings as flat `group.key -> scalar` pairs: the columns of TensorBoard's HParams table, and
what digitlab-compare tells runs apart by. Plumbing keys (where things live, how a run reports) are left
out; their one list is `plumbing_keys` in `conf/config.yaml`, which also keeps them out of job folder names.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from omegaconf import OmegaConf

from digitlab.config.location import config_dir

HPARAM_GROUPS = ("data", "model", "loss", "optimizer", "scheduler", "trainer")
# Interpolated copies (model.loss is ${loss}) would repeat columns; data.seed is the run's seed.
COPIES = ("model.loss", "model.optimizer", "model.scheduler", "data.seed")
HYDRA_KEYS = ("_partial_", "_recursive_", "_convert_")
# The groups a trained model takes (its node holds `loss: ${loss}`, ...); one that is not trained by gradient
# descent (the pixel-similarity baseline) takes none of them.
MODEL_PARTS = ("loss", "optimizer", "scheduler")


@cache
def plumbing_keys() -> tuple[str, ...]:
    """`plumbing_keys` of `conf/config.yaml`."""
    return tuple(OmegaConf.load(config_dir() / "config.yaml").plumbing_keys)


def is_plumbing(key: str) -> bool:
    """Whether a dotted key (or an override's key) is plumbing: listed, or inside a listed node."""
    return any(key == p or key.startswith(f"{p}.") for p in plumbing_keys())


def hparams_from_config(config: dict[str, Any], choices: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The HParams table's columns from a run's resolved config (`config.json`, a plain dict): seed,
    experiment, tags, notes, the groups' options (`model` -> `mlp`, from Hydra's `runtime.choices`), then
    every setting of the trained groups."""
    flat: dict[str, Any] = {
        "seed": config.get("seed"),
        "experiment": config.get("experiment_name"),
        "tags": ",".join(str(tag) for tag in config.get("tags") or []),
        "notes": config.get("notes") or "",
    }
    return flat | group_choices(choices) | trained_settings(config)


def group_choices(choices: Mapping[str, Any] | None) -> dict[str, str]:
    """The trained groups' options by group (`model` -> `mlp`), from Hydra's `runtime.choices`: what a
    researcher reads a run by, where `model.net._target_` would say `digitlab.model.nets.mlp`."""
    choices = choices or {}
    return {group: str(choices[group]) for group in HPARAM_GROUPS if choices.get(group) is not None}


def trained_settings(config: dict[str, Any]) -> dict[str, Any]:
    """Every setting of the trained groups of a resolved config (`config.json`), as `group.key -> scalar`:
    what tells two runs apart, whatever was typed to choose it."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if prefix in COPIES or is_plumbing(prefix):
            return
        if isinstance(node, dict):
            for key, value in node.items():
                if key not in HYDRA_KEYS:
                    walk(f"{prefix}.{key}", value)
        elif isinstance(node, bool | int | float | str):
            flat[prefix] = node
        else:
            flat[prefix] = str(node)

    model = config.get("model")
    for group in HPARAM_GROUPS:
        # A group the model does not take (the baseline's optimizer) is not one of its settings: left out,
        # so that tables and HParams show it blank rather than a default it never used.
        if group in MODEL_PARTS and isinstance(model, dict) and "_target_" in model and group not in model:
            continue
        if group in config:
            walk(group, config[group])
    return flat
