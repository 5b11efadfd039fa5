"""A composed config -> the objects of a run: datamodule, model, loggers, callbacks, trainer; or a checkpoint
-> its config, datamodule and model (`build_from_checkpoint`, for eval and predict). The one place that calls
`hydra.utils.instantiate`; training, eval, predict and the tests use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from digitlab.errors import ConfigError, DigitlabError


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
    return [instantiate(c) for c in logger_configs(cfg)]


def logger_configs(cfg: DictConfig) -> list[DictConfig]:
    """The nodes `loggers` builds, in its order."""
    return [c for c in (cfg.get("logger") or {}).values() if c is not None]


def callbacks(cfg: DictConfig) -> list[Any]:
    return [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]


def trainer(cfg: DictConfig, **kwargs: Any) -> Any:
    """The Lightning Trainer of `cfg.trainer`; `kwargs` (logger, callbacks, ...) are added to it. Its
    checkpoints are written atomically and read as data (`checkpoints.CheckpointFiles`)."""
    from digitlab.checkpoints import CheckpointFiles  # here: it imports Lightning, which checks need not

    plugins = [*(kwargs.pop("plugins", None) or []), CheckpointFiles()]
    return instantiate(cfg.trainer, plugins=plugins, **kwargs)


def check_checkpoint_fits(ckpt_path: Any, cfg: DictConfig) -> None:
    """Before training from `ckpt_path`: it is a digitlab checkpoint, and its weights fit the model `cfg`
    builds (ConfigError otherwise, naming both models' settings)."""
    import digitlab.checkpoints as checkpoints

    checkpoint, _ = checkpoints.load_checkpoint(ckpt_path)
    checkpoints.check_fits(checkpoint, model(cfg, datamodule(cfg).class_names), ckpt_path)


def build_from_checkpoint(
    ckpt_path: Any, overrides: list[str] = (), check: Callable[[DictConfig], None] | None = None
) -> tuple[DictConfig, Any, Any]:
    """`(config, datamodule, model with the checkpoint's weights)`; `overrides` (dotted `key=value`) adjust the
    stored config, e.g. `data.root=...` to evaluate on a copy of the data elsewhere."""
    import digitlab.checkpoints as checkpoints

    checkpoint, cfg = checkpoints.load_checkpoint(ckpt_path)
    for override in overrides:  # a group choice would replace a whole stored node by its name
        key = override.partition("=")[0]
        if "." not in key and OmegaConf.is_dict(cfg.get(key)):
            raise ConfigError(
                f"{override} chooses another {key} than the checkpoint's, and a checkpoint holds the one it "
                f"was trained with (its config is stored in it, without Hydra's groups). Change one of its "
                f"settings with a dotted key ({key}.<setting>=<value>), or evaluate a checkpoint of a run trained "
                f"with {override}."
            )
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    if check:  # the run's own folder is not written to: it need not exist here
        check(OmegaConf.merge(cfg, {"paths": {"output_dir": None}}))
    data = datamodule(cfg)
    net = model(cfg, data.class_names)
    typed = [o for o in overrides if o.startswith("model.")]
    try:
        checkpoints.check_fits(checkpoint, net, ckpt_path)
    except ConfigError as err:
        if not typed:
            raise
        raise ConfigError(
            f"{' '.join(typed)} changes the model the checkpoint was trained as, so its weights no longer fit "
            f"({err}) Leave the model's settings as they were trained."
        ) from None
    net.load_state_dict(checkpoint["state_dict"])
    net.eval()
    return cfg, data, net
