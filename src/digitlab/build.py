"""A composed config -> the objects of a run: datamodule, model, loggers, callbacks, trainer. The one place
that calls `hydra.utils.instantiate`; training, eval, predict, the checkpoint loader and the tests use it.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from digitlab.errors import DigitlabError


def instantiate(node: Any, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, but a DigitlabError raised by the target reaches the user as itself."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    try:
        return hydra_instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, DigitlabError):
            raise err.__cause__ from None
        raise


def datamodule(cfg: DictConfig) -> Any:
    """The LightningDataModule of `cfg.data` (nothing is read from disk until `prepare_data`/`setup`)."""
    return instantiate(cfg.data)


def model(cfg: DictConfig, class_names: Any) -> Any:
    """The LightningModule of `cfg.model`, for the datamodule's classes."""
    # _convert_="all": plain lists and dicts reach torch (and its checkpoints), not OmegaConf containers.
    return instantiate(cfg.model, class_names=list(class_names), _convert_="all")


def loggers(cfg: DictConfig) -> list[Any]:
    return [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]


def callbacks(cfg: DictConfig) -> list[Any]:
    return [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]


def trainer(cfg: DictConfig, **kwargs: Any) -> Any:
    """The Lightning Trainer of `cfg.trainer`; `kwargs` (logger, callbacks, ...) are added to it. Its
    checkpoints are written atomically and read as data (`checkpoints.CheckpointFiles`)."""
    from digitlab.checkpoints import CheckpointFiles

    plugins = [*(kwargs.pop("plugins", None) or []), CheckpointFiles()]
    return instantiate(cfg.trainer, plugins=plugins, **kwargs)
