"""A checkpoint alone is enough to rebuild its run: it carries the composed config (see RunResults)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from digitlab.errors import ConfigError
from digitlab.rundir import CONFIG_KEY


def check_checkpoint_path(ckpt_path: Any) -> Path:
    """The path, or a ConfigError naming it and what is expected."""
    path = Path(str(ckpt_path)).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"ckpt_path={str(ckpt_path)!r} is not a file. Pass a checkpoint of a digitlab run, e.g. "
            "ckpt_path=logs/runs/<run>/checkpoints/last.ckpt."
        )
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise ConfigError(f"ckpt_path={str(ckpt_path)!r} cannot be read ({err.strerror}).") from None
    return path


def load_checkpoint(ckpt_path: Any) -> tuple[dict[str, Any], DictConfig]:
    """The checkpoint dict and the run's config it carries."""
    import torch

    path = check_checkpoint_path(ckpt_path)
    try:
        # weights_only=False: Lightning checkpoints hold optimizer and loop state beyond tensors. Only load
        # checkpoints you trust (your own runs').
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ConfigError(
            f"ckpt_path={str(ckpt_path)!r} is not a readable checkpoint ({type(err).__name__}: {err})."
        ) from None
    if CONFIG_KEY not in checkpoint:
        raise ConfigError(
            f"ckpt_path={str(ckpt_path)!r} holds no digitlab config: it was not written by digitlab-train."
        )
    return checkpoint, OmegaConf.create(checkpoint[CONFIG_KEY])


def build_from_checkpoint(ckpt_path: Any, overrides: list[str] = ()) -> tuple[DictConfig, Any, Any]:
    """`(config, datamodule, model with the checkpoint's weights)`; `overrides` (dotted `key=value`) adjust the
    stored config, e.g. `data.root=...` to evaluate on a copy of the data elsewhere."""
    import digitlab.build as build

    checkpoint, cfg = load_checkpoint(ckpt_path)
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    datamodule = build.datamodule(cfg)
    model = build.model(cfg, datamodule.class_names)
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    return cfg, datamodule, model
