"""digitlab-compare's plots, read as a researcher reads them: swept numbers spanning decades on a log axis,
and a legend that stays readable for a 24-run sweep (a mean and band per setting, as the table groups them)."""

from __future__ import annotations

import json

from omegaconf import OmegaConf
from torch.utils.tensorboard import SummaryWriter

from digitlab.analysis.plots import curves_figure, metric_vs_param_figures
from digitlab.analysis.table import compare
from digitlab.rundir import Run

LRS = ["0.03", "0.1", "0.3", "1.0", "3.0", "10.0"]


def fake_sweep(root, lrs, seeds=range(4)):
    """Run dirs in the real layout (.hydra/, event files, metrics.json), without training; the first keeps
    its event files in tensorboard/, as runs before 2026-12 did, which compare still reads."""
    for number, (lr, seed) in enumerate((lr, seed) for lr in lrs for seed in seeds):
        run = root / f"{number}_optimizer.lr={lr},seed={seed}"
        (run / ".hydra").mkdir(parents=True)
        OmegaConf.save(
            OmegaConf.create({"seed": seed, "optimizer": {"lr": float(lr)}}), run / ".hydra/config.yaml"
        )
        OmegaConf.save(
            OmegaConf.create([f"optimizer.lr={lr}", f"seed={seed}"]), run / ".hydra/overrides.yaml"
        )
        accuracy = 0.9 + 0.01 * LRS.index(lr) + 0.001 * seed
        with SummaryWriter(run / "tensorboard" if number == 0 else run) as writer:
            for step in range(3):
                writer.add_scalar("val/acc", accuracy - 0.01 * (2 - step), step)
                writer.add_scalar("epoch", step, step)  # as Lightning logs it
        (run / "metrics.json").write_text(json.dumps({"val/acc": accuracy, "val/acc_best": accuracy}))
    return root


def test_a_sweep_over_decades_is_drawn_on_a_log_axis(tmp_path):
    comparison = compare(fake_sweep(tmp_path / "wide", LRS))
    (figure,) = metric_vs_param_figures(comparison).values()
    assert figure.axes[0].get_xscale() == "log"
    narrow = compare(fake_sweep(tmp_path / "narrow", ["1.0", "3.0", "10.0"], seeds=[0]))
    (figure,) = metric_vs_param_figures(narrow).values()
    assert figure.axes[0].get_xscale() == "linear"  # a factor of 10 exactly: linear is readable


def test_the_curves_legend_groups_seeds_for_24_runs(tmp_path):
    comparison = compare(fake_sweep(tmp_path / "sweep", LRS))
    assert len(comparison.runs) == 24 and len(comparison.groups) == 6
    first = Run(next((tmp_path / "sweep").glob("0_*")))
    assert len(first.scalars["val/acc"]) == 3 and first.tensorboard.name == "tensorboard"  # an older run
    figure = curves_figure(comparison)
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert len(labels) == 6 and all(label.endswith("(n=4)") for label in labels)
    lines = figure.axes[0].get_lines()
    assert len(lines) == 6 and all(list(line.get_xdata()) == [1, 2, 3] for line in lines)
    assert len(figure.axes[0].collections) == 6  # each mean in its band over the 4 seeds


def test_a_search_whose_runs_share_no_other_setting_is_one_cloud_of_dots(tmp_path):
    """An Optuna study's trials each have their own lr and width: no line can join two runs of the same other
    settings, so each plot is one colour of dots, one per run, and nothing is averaged across settings."""
    trials = [(0.01, 16), (0.1, 30), (1.0, 64), (0.03, 128), (0.3, 256)]
    for number, (lr, hidden) in enumerate(trials):
        run = tmp_path / "study" / f"{number}_optimizer.lr={lr},model.net.hidden={hidden}"
        (run / ".hydra").mkdir(parents=True)
        OmegaConf.save(
            OmegaConf.create({"seed": 0, "optimizer": {"lr": lr}, "model": {"net": {"hidden": hidden}}}),
            run / ".hydra/config.yaml",
        )
        OmegaConf.save(
            OmegaConf.create([f"optimizer.lr={lr}", f"model.net.hidden={hidden}"]),
            run / ".hydra/overrides.yaml",
        )
        (run / "metrics.json").write_text(json.dumps({"val/acc_best": 0.9 + number / 100}))
    figures = metric_vs_param_figures(compare(tmp_path / "study", metric="val/acc_best"))
    assert sorted(figures) == ["model.net.hidden", "optimizer.lr"]
    for figure in figures.values():
        ax = figure.axes[0]
        assert ax.get_legend() is None and not ax.get_lines()  # no line, no mean
        dots = [tuple(point) for collection in ax.collections for point in collection.get_offsets()]
        assert len(dots) == 5 and "each dot a run (5)" in ax.get_title()
