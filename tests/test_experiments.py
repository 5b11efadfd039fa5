"""The experiment scripts under experiments/ run and write what they promise."""

from __future__ import annotations

import importlib.util

from PIL import Image

from tests.conftest import REPO
from tests.tb import scalars


def load_script(relative: str):
    spec = importlib.util.spec_from_file_location("script", REPO / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sgd_quadratic_writes_plot_and_loss(tmp_path):
    script = load_script("experiments/sgd_quadratic/sgd_quadratic.py")
    result = script.main(["--steps", "20", "--out", str(tmp_path), "--logdir", str(tmp_path / "tb")])
    assert result["losses"][-1] < result["losses"][0]
    with Image.open(tmp_path / "before_after.png") as png:
        assert png.size == (900, 350)
    losses = scalars(tmp_path / "tb")["loss"]
    assert len(losses) == 20 and losses == sorted(losses, reverse=True)
