"""Every combination a user can type composes and either trains one real step or is refused, before any data
work, with the one-paragraph error: every experiment (and none) with every option of optimizer, scheduler,
loss and model, switched one group at a time and all four at once."""

from __future__ import annotations

import itertools
import json

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from digitlab import build
from digitlab.api import compose_config
from digitlab.config.checks import options, validate
from digitlab.errors import ConfigError

EXPERIMENTS = [None, *options("experiment")]
SWITCHED = ("optimizer", "scheduler", "loss", "model")
ONE_GROUP = [(group, option) for group in SWITCHED for option in options(group)]
ALL_GROUPS = list(itertools.product(*(options(group) for group in SWITCHED)))


def commands(all_groups_on: list[str | None]) -> list[list[str]]:
    """Every experiment (and none) with each option of each group; and, on the experiments in
    `all_groups_on`, every combination of options of the four groups at once."""
    one = [[f"{g}={o}"] for g, o in ONE_GROUP]
    four = [[f"{g}={o}" for g, o in zip(SWITCHED, combo, strict=True)] for combo in ALL_GROUPS]
    return [
        ([f"experiment={e}"] if e else []) + t
        for e in EXPERIMENTS
        for t in one + (four if e in all_groups_on else [])
    ]


def refusal(choices: dict, typed: list[str]) -> str | None:
    """The message a combination must be refused with, or None if it must train."""
    typed_groups = {t.split("=")[0] for t in typed}
    if choices["model"] == "pixel_similarity":
        # scheduler=none is no scheduler: harmless beside the baseline.
        part = next(
            (g for g in ("loss", "optimizer", "scheduler") if g in typed_groups and choices[g] != "none"),
            None,
        )
        if part:
            return f"{part}={choices[part]} does not apply to model=pixel_similarity"
        return None
    if choices["data"] == "mnist" and choices["loss"] in ("mnist_loss", "bce"):
        return f"loss={choices['loss']} reads one logit per image, so it tells 2 classes apart; data=mnist has 10"
    return None


def structure(node) -> object:
    """A config's shape: targets and keys, not numbers (one training step per shape is enough)."""
    if isinstance(node, dict):
        return {k: structure(v) for k, v in node.items()}
    return node if isinstance(node, str) or node is None else type(node).__name__


def one_step(cfg, root, data_dir) -> None:
    overrides = OmegaConf.from_dotlist(
        [f"data.root={root}", f"data.data_dir={data_dir}", "data.check_counts=false", "data.batch_size=8"]
    )
    cfg = OmegaConf.merge(cfg, overrides)
    datamodule = build.datamodule(cfg)
    model = build.model(cfg, datamodule.class_names)
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=1,  # one step (the baseline takes no optimizer step, so max_steps would not stop it)
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
    )
    before = [p.detach().clone() for p in model.parameters()]
    trainer.fit(model, datamodule=datamodule)  # configure_optimizers runs with the trainer attached
    assert trainer.global_step == (1 if before else 0)
    if before:  # a trained model: its optimizer took a real step
        assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize(
    "all_groups_on",
    [
        [],  # every experiment (and none) x each option of each group: about 2 minutes here
        pytest.param(EXPERIMENTS, marks=pytest.mark.slow),  # and x all four groups at once: about 15 minutes
    ],
    ids=["one-group-switched", "all-four-switched"],
)
def test_every_typed_combination_trains_or_is_refused(sample_root, mnist_root, tmp_path, all_groups_on):
    seen_shapes: set[str] = set()
    refused = trained = 0
    for typed in commands(all_groups_on):
        cfg, choices = compose_config([*typed, f"paths.data_dir={tmp_path / 'data'}"], tmp_path / "run", True)
        expected = refusal(choices, typed[-len(SWITCHED) :] if len(typed) > 2 else typed[-1:])
        if expected:
            with pytest.raises(ConfigError) as info:
                validate(cfg, choices, typed)
            assert expected in str(info.value), (typed, str(info.value))
            refused += 1
            continue
        try:
            validate(cfg, choices, typed)
        except ConfigError as err:
            pytest.fail(f"{' '.join(typed)} was refused: {err}")
        for group in SWITCHED:  # what was typed is what runs
            chosen = next((t.split("=")[1] for t in typed if t.startswith(f"{group}=")), None)
            assert chosen is None or choices[group] == chosen
        container = OmegaConf.to_container(cfg, resolve=True)
        shape = json.dumps(
            structure({k: container.get(k) for k in ("data", "model", "loss", "optimizer", "scheduler")})
        )
        if shape in seen_shapes:
            continue
        seen_shapes.add(shape)
        one_step(cfg, mnist_root if choices["data"] == "mnist" else sample_root, tmp_path / "trained")
        trained += 1
    assert not (tmp_path / "data").exists(), "composing and checking never touch the data dir"
    assert refused > 0 and trained > 0


def test_a_group_switched_on_an_experiment_brings_its_own_values(tmp_path):
    # No experiment: optimizer=adam runs Adam with conf/optimizer/adam.yaml's lr.
    cfg = compose_config(["optimizer=adam"], tmp_path)
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == 0.001
    # On fastbook_resnet18 (fastai's Adam), SGD keeps the experiment's lr and none of Adam's keys.
    cfg = compose_config(["experiment=fastbook_resnet18", "optimizer=sgd"], tmp_path)
    assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer.lr == 0.1
    assert "betas" not in cfg.optimizer and "eps" not in cfg.optimizer
    # The default command is the chapter's linear model, as experiment=fastbook_linear trains it.
    default = OmegaConf.to_container(compose_config([], tmp_path), resolve=True)
    linear = OmegaConf.to_container(compose_config(["experiment=fastbook_linear"], tmp_path), resolve=True)
    for key in ("data", "model", "loss", "optimizer", "scheduler", "trainer"):
        assert default.get(key) == linear.get(key), key


def test_a_key_an_option_does_not_take_is_named(tmp_path):
    cfg, choices = compose_config(["optimizer=sgd", "+optimizer.betas=[0.9,0.99]"], tmp_path, True)
    with pytest.raises(ConfigError) as info:
        validate(cfg, choices)
    assert "optimizer.betas is not a setting of torch.optim.SGD (optimizer=sgd)" in str(info.value)
