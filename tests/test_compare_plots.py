"""digitlab-compare's plots, read as a researcher reads them: swept numbers spanning decades on a log axis,
and a legend that stays readable for a 24-run sweep (a mean and band per setting, as the table groups them)."""

from __future__ import annotations

import json

from omegaconf import OmegaConf
from pytest import approx
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


def logs_of_mixed_runs(root):
    """A logs/ folder as a researcher's becomes: two loss functions (their val/loss 50x apart), MLP widths
    and a linear model (no width), lrs spanning decades with most between 0.02 and 0.3, 2 seeds, settings
    every run shares, and one diverging outlier."""
    import numpy as np

    rng = np.random.default_rng(0)
    lrs = [0.011, 0.021, 0.034, 0.055, 0.089, 0.14, 0.23, 0.3, 2.188]
    number = 0
    for loss, scale in (("mnist_loss", 0.02), ("cross_entropy", 1.0)):
        for model, hidden in (("linear", None), ("mlp", 16), ("mlp", 30), ("mlp", 64), ("mlp", 128)):
            for lr in lrs:
                for seed in (0, 1):
                    run = root / f"sweep_{loss}" / f"{number}_lr={lr},seed={seed}"
                    number += 1
                    (run / ".hydra").mkdir(parents=True)
                    net = {"_target_": f"digitlab.model.nets.{model}"} | (
                        {"hidden": hidden} if hidden else {}
                    )
                    optimizer = {"_target_": "torch.optim.SGD", "lr": lr, "momentum": 0.9}
                    module = "digitlab.model.module.ClassifierModule"
                    config = {
                        "seed": seed,
                        "model": {"_target_": module, "net": net, "loss": {}, "optimizer": optimizer},
                        "loss": {"_target_": f"digitlab.loss.{loss}"},
                        "optimizer": optimizer,
                        "data": {"batch_size": 64},
                        "trainer": {"max_epochs": 3},
                    }
                    OmegaConf.save(OmegaConf.create(config), run / ".hydra/config.yaml")
                    choices = {"loss": loss, "model": model, "optimizer": "sgd"}
                    OmegaConf.save(
                        OmegaConf.create({"hydra": {"runtime": {"choices": choices}}}),
                        run / ".hydra/hydra.yaml",
                    )
                    diverged = lr > 2 and model == "linear"  # one outlier row per loss
                    value = scale * (1 + rng.uniform(0, 0.5)) * (50 if diverged else 1)
                    with SummaryWriter(run) as writer:
                        for step in range(3):
                            writer.add_scalar("val/acc", 0.9 + 0.02 * step - value / 100, step)
                            writer.add_scalar("epoch", step, step)
                    metrics = {"val/loss": value, "val/acc": 0.95, "val/acc_best": 0.96, "epochs": 3}
                    (run / "metrics.json").write_text(json.dumps({**metrics, "status": "completed"}))
    return root


def test_plots_stay_readable_on_a_real_logs_folder(tmp_path, recwarn):
    """Read from the figures' own artists: titles and legends inside the figure and no wider than the plot,
    one panel or figure per loss function, widths in numeric order, decade ticks on a log lr axis, a colour
    scale that one outlier does not wash out, and no library warning."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from digitlab.analysis.summary import write_summary
    from digitlab.analysis.sweep_view import parallel_coordinates_figures

    root = logs_of_mixed_runs(tmp_path / "logs")
    comparison, _, written = write_summary(root, "val/loss", tmp_path / "out")
    assert not [w for w in recwarn if "matplotlib" in str(w.filename) or "layout" in str(w.message)]

    def drawn(figure):
        FigureCanvasAgg(figure).draw()
        return figure.get_window_extent()

    curves = curves_figure(comparison)
    box = drawn(curves)
    ax = curves.axes[0]
    assert box.contains(*ax.title.get_window_extent().p0) and box.contains(*ax.title.get_window_extent().p1)
    legend = ax.get_legend().get_window_extent()
    assert legend.width <= ax.get_window_extent().width and legend.x1 <= box.x1
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert all(label.startswith("#") for label in labels if "more settings" not in label)
    assert labels[0].startswith("#1 model=mlp, hidden="), labels  # what differs among them, short names
    assert not [label for label in labels if "optimizer.momentum" in label or "batch_size" in label]
    # Two losses never share an axis: one panel per loss in the metric-vs-setting plot, one figure each for
    # the parallel coordinates.
    lr_figure = metric_vs_param_figures(comparison)["optimizer.lr"]
    panels = [a for a in lr_figure.axes if a.get_xlabel() == "optimizer.lr"]
    assert len(panels) == 2 and {"loss=cross_entropy" in a.get_title() for a in panels} == {True, False}
    assert all(a.get_xscale() == "log" for a in panels)
    parallel = parallel_coordinates_figures(comparison)
    assert sorted(parallel) == ["loss=cross_entropy", "loss=mnist_loss"]
    figure = parallel["loss=mnist_loss"]
    drawn(figure)
    ax = figure.axes[0]
    keys = [t.get_text() for t in ax.get_xticklabels()]
    column = keys.index("model.net.hidden")
    on_axis = [t for t in ax.texts if abs(t.get_position()[0] - (column + 0.04)) < 1e-9]
    by_height = [t.get_text() for t in sorted(on_axis, key=lambda t: t.get_position()[1])]
    assert by_height == ["16", "30", "64", "128", "-"], by_height  # numbers in numeric order
    lr_column = keys.index("optimizer.lr")
    lr_ticks = [t.get_text() for t in ax.texts if abs(t.get_position()[0] - (lr_column + 0.04)) < 1e-9]
    assert lr_ticks == ["0.1", "1"] or set(lr_ticks) <= {
        "0.01",
        "0.1",
        "1",
        "0.02",
        "0.05",
        "0.2",
        "0.5",
        "2",
    }
    bar = figure.axes[1]
    assert bar.get_ylim()[1] < 0.1, "the diverged run's 50x loss does not set the top of the colour scale"
    assert any(p.name.startswith("parallel_coordinates_loss-") for p in written)


def test_a_grids_importance_is_its_main_effects(tmp_path):
    """On a 2x2 grid (x 2 seeds) where the MLP beats the linear model at both lrs, the model matters: each
    setting's importance is its main effect's share, computed here by hand from the cells' means. (PED-ANOVA,
    which asks where the top 10 % of trials lie, gave the model 0.01 on this grid.)"""
    from digitlab.analysis.sweep_view import importance_views

    accuracy = {("linear", 0.01): 0.93, ("linear", 0.1): 0.96, ("mlp", 0.01): 0.95, ("mlp", 0.1): 0.985}
    for number, ((model, lr), value) in enumerate((cell, v) for cell, v in accuracy.items() for _ in (0, 1)):
        seed = number % 2
        run = tmp_path / "grid" / f"{number}_model={model},lr={lr},seed={seed}"
        (run / ".hydra").mkdir(parents=True)
        config = {"seed": seed, "model": {"net": {"_target_": model}}, "optimizer": {"lr": lr}}
        OmegaConf.save(OmegaConf.create(config), run / ".hydra/config.yaml")
        choices = {"hydra": {"runtime": {"choices": {"model": model}}}}
        OmegaConf.save(OmegaConf.create(choices), run / ".hydra/hydra.yaml")
        metrics = {"val/acc_best": value + 0.001 * seed, "status": "completed"}
        (run / "metrics.json").write_text(json.dumps(metrics))
    (view,) = importance_views(compare(tmp_path / "grid"))
    grand = sum(accuracy.values()) / 4 + 0.0005
    model = ((0.93 + 0.96) / 2 + 0.0005 - grand) ** 2
    lr = ((0.93 + 0.95) / 2 + 0.0005 - grand) ** 2
    assert view.grid == "2x2" and view.runs == 8
    assert view.found == {"optimizer.lr": approx(lr / (lr + model)), "model": approx(model / (lr + model))}
    assert view.found["model"] > 0.3
    assert view.said.startswith("optimizer.lr 0.68, model 0.32 (main effects over the full 2x2 grid, over 8")


def test_tensorboard_ticks_the_options_and_the_seed_of_a_six_setting_sweep(tmp_path):
    """TensorBoard ticks five hparams by default, after sorting those marked `differs` first and each part by
    name (its own `_sort_and_reduce_to_hparams_limit`, run here on the experiment summary read back): with six
    swept settings, `model` and `seed` are among them, though `seed` sorts after four of the others."""
    from tensorboard.plugins.hparams import backend_context, plugin_data_pb2

    from digitlab.analysis.hparams_experiment import write_hparams_experiment
    from tests import tb

    number = 0
    for model in ("linear", "mlp"):
        for lr, batch, momentum, decay in ((0.1, 64, 0.0, 0.0), (1.0, 512, 0.9, 1e-4)):
            for seed in (0, 1):
                run = tmp_path / "sweep" / str(number)
                number += 1
                (run / ".hydra").mkdir(parents=True)
                config = {
                    "seed": seed,
                    "experiment_name": model,
                    "model": {"net": {"_target_": model}},
                    "optimizer": {"lr": lr, "momentum": momentum, "weight_decay": decay},
                    "data": {"batch_size": batch},
                }
                OmegaConf.save(OmegaConf.create(config), run / ".hydra/config.yaml")
                choices = {"hydra": {"runtime": {"choices": {"model": model}}}}
                OmegaConf.save(OmegaConf.create(choices), run / ".hydra/hydra.yaml")
                metrics = {"val/acc_best": 0.9 + 0.01 * number, "status": "completed"}
                (run / "metrics.json").write_text(json.dumps(metrics))
    folder = write_hparams_experiment(compare(tmp_path / "sweep"), tmp_path / "out")
    (content,) = tb.load(folder).PluginTagToContent("hparams").values()
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content).experiment
    assert len(experiment.hparam_infos) == 6
    backend_context._sort_and_reduce_to_hparams_limit(experiment)
    ticked = [info.name for info in experiment.hparam_infos][:5]
    assert "model" in ticked and "seed" in ticked, ticked
