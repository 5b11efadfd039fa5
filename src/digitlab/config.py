"""The composed config: where it lives, checks that turn bad values into one clear message before any work
starts, and its flat form for TensorBoard's HParams table.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from digitlab.errors import ConfigError


def _register_resolvers() -> None:
    # `${cwd:}`: the folder digitlab was started from. `${hydra:runtime.cwd}` says the same but cannot be
    # used in hydra.sweep.dir, which Hydra resolves before its runtime config exists.
    if not OmegaConf.has_resolver("cwd"):
        OmegaConf.register_new_resolver("cwd", os.getcwd, use_cache=True)


_register_resolvers()


def config_dir() -> Path:
    """`conf/`: inside the package in a wheel, at the repository root in an editable install."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "conf", package.parents[1] / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"digitlab's conf/ folder is missing (looked in {package / 'conf'} and {package.parents[1] / 'conf'})"
    )


def check_group_overrides(overrides: list[str]) -> None:
    """`logger=null` (any config group set to null) stops Hydra with a traceback; say what works instead."""
    root = config_dir()
    for override in overrides:
        key, sep, value = override.partition("=")
        group = key.lstrip("+")
        if sep and value == "null" and group and (root / group).is_dir():
            options = sorted(p.stem for p in (root / group).glob("*.yaml"))
            raise ConfigError(
                f"{override} is not an option of the config group {group!r}: a group cannot be set to null "
                f"on the command line. Switch it off with ~{group} (Hydra's delete syntax), or pick one of: "
                f"{', '.join(options)}."
            )


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _whole_at_least_one(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


# key -> (check, what is allowed). Keys absent from a config (e.g. a model without `hidden`) are skipped.
CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "optimizer.lr": (_positive, "a number > 0"),
    "data.batch_size": (_whole_at_least_one, "a whole number >= 1"),
    "data.eval_batch_size": (lambda v: v is None or _whole_at_least_one(v), "null or a whole number >= 1"),
    "trainer.max_epochs": (_whole_at_least_one, "a whole number >= 1"),
    "model.net.hidden": (_whole_at_least_one, "a whole number >= 1"),
    "model.net.depth": (_whole_at_least_one, "a whole number >= 1"),
    "model.distance": (lambda v: v in ("l1", "l2"), "l1 or l2"),
    "model.net.stem": (lambda v: v in ("rgb", "gray"), "rgb or gray"),
    "trainer.accelerator": (
        lambda v: v in ("cpu", "gpu", "cuda", "mps", "auto"),
        "cpu, gpu, cuda, mps or auto",
    ),
}


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first bad key, its value and what is allowed."""
    for key, (check, allowed) in CHECKS.items():
        value = OmegaConf.select(cfg, key, default="<absent>")
        if value == "<absent>":
            continue
        if not check(value):
            raise ConfigError(f"{key}={value!r} is invalid: it must be {allowed}.")
    if OmegaConf.select(cfg, "ckpt_path"):
        from digitlab.checkpoints import check_checkpoint_path

        check_checkpoint_path(cfg.ckpt_path)
    output_dir = OmegaConf.select(cfg, "paths.output_dir")
    if output_dir:
        _check_writable(Path(output_dir))
    accelerator = OmegaConf.select(cfg, "trainer.accelerator")
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"trainer.accelerator={accelerator!r} was asked for (accelerator=gpu), but this machine has no "
                "CUDA GPU that torch can use. Run on the CPU with accelerator=cpu."
            )


def _check_writable(path: Path) -> None:
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK | os.X_OK) or not existing.is_dir():
        raise ConfigError(
            f"paths.output_dir={str(path)!r} is not writable (checked {str(existing)!r}). Choose a folder you can "
            "write to, e.g. paths.log_dir=<folder> or hydra.run.dir=<folder>."
        )


HPARAM_GROUPS = ("data", "model", "loss", "optimizer", "scheduler", "trainer")


def hparams_from_config(cfg: DictConfig) -> dict[str, Any]:
    """The run's settings as flat `group.key -> scalar` pairs: the columns of TensorBoard's HParams table."""
    flat: dict[str, Any] = {
        "seed": cfg.get("seed"),
        "experiment": cfg.get("experiment_name"),
        "tags": ",".join(str(tag) for tag in cfg.get("tags") or []),
        "notes": cfg.get("notes") or "",
    }
    container = OmegaConf.to_container(cfg, resolve=True)

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key not in ("_partial_", "_recursive_", "_convert_"):
                    walk(f"{prefix}.{key}", value)
        elif isinstance(node, bool | int | float | str):
            flat[prefix] = node
        else:
            flat[prefix] = str(node)

    for group in HPARAM_GROUPS:
        if group in container:
            walk(group, container[group])
    return {key: value for key, value in flat.items() if not key.startswith(NOT_HPARAMS)}


# Keys that say where things live or how a run reports, not what was trained: left out of the HParams
# table and of digitlab-compare's columns (conf/hydra/default.yaml leaves them out of job folder names).
PLUMBING_KEYS = (
    "paths.",
    "data.root",
    "data.data_dir",
    "data.url",
    "data.offline",
    "data.download_timeout",
    "data.check_counts",
    "trainer.default_root_dir",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "trainer.check_val_every_n_epoch",
    "resume",
    "hparams_search",
    "torch_threads",
    "print_config",
)
# Interpolated copies (model.loss is ${loss}) would repeat columns; data.seed is the run's seed.
NOT_HPARAMS = ("model.loss", "model.optimizer", "model.scheduler", "data.seed", *PLUMBING_KEYS)
