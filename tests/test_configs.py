"""Every shipped YAML composes, and what it names instantiates: configs cannot drift from the code."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from digitlab.api import compose_config
from digitlab.build import instantiate
from digitlab.config.checks import validate
from digitlab.config.location import config_dir
from digitlab.errors import ConfigError

GROUPS = [
    "data",
    "model",
    "loss",
    "optimizer",
    "scheduler",
    "trainer",
    "accelerator",
    "logger",
    "callbacks",
    "experiment",
]
GPU_ONLY = {"gpu", "ddp"}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


CASES = [(group, option) for group in GROUPS for option in options(group)]


def test_every_group_is_covered():
    assert {g for g, _ in CASES} == set(GROUPS)
    assert {p.name for p in config_dir().iterdir() if p.is_dir()} >= set(GROUPS) | {"paths", "hydra"}


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_config_composes_and_instantiates(group, option, tmp_path):
    overrides = [f"{group}={option}", f"paths.data_dir={tmp_path}", f"paths.log_dir={tmp_path / 'logs'}"]
    if group == "data" and option == "mnist":
        overrides.append("loss=cross_entropy")  # the binary losses need 2 classes
    cfg = compose_config(overrides, output_dir=tmp_path / "run")
    if group == "accelerator" and option in GPU_ONLY and not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="accelerator=cpu"):
            validate(cfg)
        return
    validate(cfg)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model, class_names=list(datamodule.class_names))
    logits = model(torch.rand(3, 1, 28, 28))
    assert logits.shape[0] == 3
    model.configure_optimizers  # noqa: B018 (an attribute every model has)
    trainer = instantiate(
        cfg.trainer,
        logger=[instantiate(c) for c in cfg.logger.values()],
        callbacks=[instantiate(c) for c in cfg.callbacks.values()],
    )
    assert trainer.max_epochs >= 1


def test_mnist_loss_with_ten_classes_is_refused(tmp_path):
    cfg = compose_config(["data=mnist", "loss=mnist_loss", f"paths.data_dir={tmp_path}"], output_dir=tmp_path)
    datamodule = instantiate(cfg.data)
    with pytest.raises(ConfigError, match=r"MnistLoss reads one logit per image.*has 10.*loss=cross_entropy"):
        instantiate(cfg.model, class_names=list(datamodule.class_names))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=0", "optimizer.lr=0 is invalid: it must be a number > 0."),
        ("data.batch_size=0", "data.batch_size=0 is invalid: it must be a whole number >= 1."),
        ("trainer.max_epochs=0", "trainer.max_epochs=0 is invalid: it must be a whole number >= 1."),
        ("model=mlp model.net.hidden=0", "model.net.hidden=0 is invalid: it must be a whole number >= 1."),
        ("trainer.accelerator=tpu9", "trainer.accelerator='tpu9' is invalid"),
    ],
)
def test_bad_values_are_named(override, message, tmp_path):
    cfg = compose_config(override.split(), output_dir=tmp_path)
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    assert message in str(info.value)


def test_the_run_folder_names_in_conf_are_rundirs(tmp_path):
    """conf/ spells the folders Lightning's own classes write; rundir.py owns the names: they must agree."""
    from digitlab import rundir

    cfg = compose_config([], output_dir=tmp_path)
    assert cfg.callbacks.model_checkpoint.dirpath == str(tmp_path / rundir.CHECKPOINTS_DIR)
    from hydra.utils import instantiate

    assert Path(instantiate(cfg.logger.tensorboard).log_dir) == rundir.Run(tmp_path).tensorboard


def test_each_interpolation_string_is_parsed_once(tmp_path):
    """`compat.omegaconf.install_parse_cache`: once configs are composed, reading an interpolation again reuses its parse tree,
    values come out as before, and a string that does not parse is refused every time."""
    import omegaconf.base
    from omegaconf import OmegaConf
    from omegaconf.errors import GrammarParseError

    cfg = compose_config([], output_dir=tmp_path)  # installs the cache, as every composing entry point does
    parse = omegaconf.base.parse
    assert hasattr(parse, "cache_info"), "OmegaConf's parse is not cached"
    node = OmegaConf.create({"run": str(tmp_path), "ckpt": "${run}/checkpoints"})
    first = node.ckpt
    hits = parse.cache_info().hits
    assert node.ckpt == first == f"{tmp_path}/checkpoints"
    assert parse.cache_info().hits == hits + 1
    for _ in range(2):
        with pytest.raises(GrammarParseError):
            OmegaConf.create({"bad": "${run"})
    assert cfg.callbacks.model_checkpoint.dirpath == str(tmp_path / "checkpoints")


def test_a_setting_the_model_does_not_take_is_no_setting_of_its_run(tmp_path):
    """The baseline takes no optimizer, scheduler or loss: its settings (compare's columns, HParams) leave
    them out, so they show blank beside a trained model's, never the defaults it did not use."""
    from omegaconf import OmegaConf

    from digitlab.config.hparams import trained_settings

    def settings(*overrides: str) -> dict:
        cfg = compose_config(list(overrides), output_dir=tmp_path / "run")
        return trained_settings(OmegaConf.to_container(cfg, resolve=True))

    baseline, linear = settings("experiment=fastbook_baseline"), settings("experiment=fastbook_linear")
    assert not [key for key in baseline if key.split(".")[0] in ("optimizer", "scheduler", "loss")]
    assert baseline["model.distance"] == "l1" and linear["optimizer.lr"] == 1.0 and "loss._target_" in linear
