"""The README cannot rot: every `digitlab-train ...` line in its code blocks composes and passes the checks,
and its config table is the one generated from conf/."""

from __future__ import annotations

import re
import shlex

import pytest
import torch

from digitlab.api import compose_config
from digitlab.cli.config_table import END, START, table
from digitlab.config.checks import validate
from digitlab.errors import ConfigError
from tests.conftest import REPO

README = (REPO / "README.md").read_text()
FLAGS = {"-m", "--multirun", "--cfg", "job", "hydra", "all"}


def recipes() -> list[str]:
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", README, flags=re.DOTALL)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("digitlab-train")]


def first_of_each_sweep(args: list[str]) -> list[str]:
    """A sweep (`a=1,2`, or an interval of an Optuna search) composes as its first value: the keys and
    options are what can rot."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = OverridesParser.create().parse_overrides(args)
    chosen = []
    for override in overrides:
        if override.is_interval_sweep():  # an Optuna search space: its low end
            value = str(override.value().start)
        else:
            value = next(iter(override.sweep_string_iterator())) if override.is_sweep_override() else None
        chosen.append(f"{override.get_key_element()}={value}" if value is not None else override.input_line)
    return chosen


def test_the_readme_recipes_cover_each_way_of_training():
    """The check below runs on what `recipes` finds: a single run, a grid sweep, a stacked sweep and an
    Optuna search are among them (a README that lost one, or a reader that stopped finding them, fails)."""
    found = [line.split() for line in recipes()]
    assert any("-m" not in args and not any(a.startswith("hparams_search=") for a in args) for args in found)
    assert any("-m" in args and "hydra/launcher=stacked" not in args for args in found)
    assert any("-m" in args and "hydra/launcher=stacked" in args for args in found)
    assert any(a.startswith("hparams_search=") for args in found for a in args)


@pytest.mark.parametrize("line", recipes())
def test_readme_recipe_composes(line, tmp_path):
    args = [a for a in shlex.split(line, comments=True)[1:] if a not in FLAGS]
    overrides = first_of_each_sweep(args)
    cfg, choices = compose_config([*overrides, f"paths.log_dir={tmp_path}"], tmp_path / "run", True)
    try:
        validate(cfg, choices, overrides)
    except ConfigError as err:
        # A GPU recipe is right on a GPU machine; here it must be refused for that reason only.
        assert not torch.cuda.is_available() and "accelerator=cpu" in str(err), line


def test_readme_config_table_is_current():
    generated = README[README.index(START) + len(START) : README.index(END)].strip()
    assert generated == table().strip(), "run: python -m digitlab.cli.config_table --write"
