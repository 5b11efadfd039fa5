"""digitlab-compare groups runs by what really differs (their resolved configs), on real sweeps: a mixed-model
sweep is one line per model, never a mean across them; typed spellings of one value are one row; a loss is
ranked within each loss function. Read back from the written CSV and from the plots' own data."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import pytest

from digitlab.analysis.plots import curves_figure, metric_vs_param_figures
from digitlab.analysis.table import compare
from digitlab.cli.compare import main as compare_main
from tests.conftest import cli, tiny_overrides


@pytest.fixture(scope="module")
def mixed(sample_root, tmp_path_factory) -> Path:
    """`model=linear,mlp` x 2 lrs x 2 seeds (stacked: one fit per model), and 2 runs with another loss."""
    tmp = tmp_path_factory.mktemp("mixed")
    cli(
        "-m",
        "hydra/launcher=stacked",
        "model=linear,mlp",
        *tiny_overrides(
            sample_root, tmp, "optimizer.lr=0.05,0.5", "seed=0,1", f"hydra.sweep.dir={tmp / 'grid'}"
        ),
        cwd=tmp,
    )
    # lr 0.5 again, typed "0.50", with the grid's loss and with another one.
    cli(
        "-m",
        "loss=bce,mnist_loss",
        *tiny_overrides(sample_root, tmp, "optimizer.lr=0.50", "seed=0,1", f"hydra.sweep.dir={tmp / 'bce'}"),
        cwd=tmp,
    )
    return tmp


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_mixed_model_sweep_is_one_row_per_model_and_lr(mixed):
    table = rows(mixed / "grid" / "compare" / "compare.csv")
    assert list(table[0])[:5] == ["rank", "model", "optimizer.lr", "runs", "seeds"]
    assert sorted((r["model"], r["optimizer.lr"], r["runs"]) for r in table) == [
        ("linear", "0.05", "2/2"),
        ("linear", "0.5", "2/2"),
        ("mlp", "0.05", "2/2"),
        ("mlp", "0.5", "2/2"),
    ]
    # model._target_, model.net.* follow the model choice: no column of their own.
    assert not [column for column in table[0] if column.startswith("model.")]
    means = [float(r["val/acc_best"]) for r in table]
    assert means == sorted(means, reverse=True)


def test_the_lr_plot_draws_one_line_per_model_through_that_models_means(mixed):
    comparison = compare(mixed / "grid")
    figure = metric_vs_param_figures(comparison)["optimizer.lr"]
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    assert sorted(lines) == ["model=linear", "model=mlp"]
    for model, line in lines.items():
        for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True):
            (group,) = [
                g
                for g in comparison.groups
                if f"model={g.settings['model']}" == model and float(g.settings["optimizer.lr"]) == x
            ]
            assert y == pytest.approx(statistics.fmean(group.values["val/acc_best"]))
    assert figure.axes[0].get_xscale() == "linear"  # 0.05 .. 0.5: one decade exactly


def test_curves_are_by_epoch_one_mean_line_per_group(mixed):
    comparison = compare(mixed / "grid")
    figure = curves_figure(comparison)
    ax = figure.axes[0]
    assert ax.get_xlabel() == "epoch"
    lines = ax.get_lines()
    assert len(lines) == 4 and all(list(line.get_xdata()) == [1, 2] for line in lines)
    assert all(label.get_text().endswith("(n=2)") for label in ax.get_legend().get_texts())


def test_a_loss_is_ranked_within_each_loss_function(mixed, capsys):
    assert compare_main([str(mixed), "--metric", "val/loss", "--out", str(mixed / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "val/loss is on a different scale for each loss: the runs are ranked within each" in out
    # Importance never pools two losses' scales: one view per loss function with enough runs to tell.
    assert "among loss=mnist_loss" in out and "among loss=bce" not in out  # bce: 2 runs, one setting
    assert (mixed / "cmp" / "importance.png").exists() or (
        mixed / "cmp" / "importance_loss-mnist_loss.png"
    ).exists()
    table = rows(mixed / "cmp" / "compare.csv")
    by_loss = {}
    for row in table:
        by_loss.setdefault(row["loss"], []).append(row)
    assert sorted(by_loss) == ["bce", "mnist_loss"]
    for block in by_loss.values():  # ranks restart, and each block is ranked by its own losses
        assert [int(r["rank"]) for r in block] == list(range(1, len(block) + 1))
        losses = [float(r["val/loss"]) for r in block]
        assert losses == sorted(losses)
    (bce,) = by_loss["bce"]
    assert (bce["model"], bce["optimizer.lr"], bce["runs"]) == ("linear", "0.5", "2/2")
    # "0.50" typed in one sweep and "0.5" in the other are one setting, and each (setting, seed) was reached
    # by both sweeps: shown once per sweep (the `runs in` column), never a mean and std over duplicates.
    same = [r for r in by_loss["mnist_loss"] if (r["model"], r["optimizer.lr"]) == ("linear", "0.5")]
    assert sorted(r["runs in"] for r in same) == ["bce", "grid"]
    assert all(r["runs"] == "2/2" and sorted(r["seeds"].split(",")) == ["0", "1"] for r in same)
    assert {r["runs in"] for r in table if r not in same} == {"-"}
    # Ranked by an accuracy, all runs share one ranking again.
    assert compare_main([str(mixed), "--out", str(mixed / "cmp")]) == 0
    assert [int(r["rank"]) for r in rows(mixed / "cmp" / "compare.csv")] == list(range(1, 7))


def test_the_sweep_view_draws_each_row_and_ranks_what_matters(mixed):
    from digitlab.analysis.sweep_view import importances, parallel_coordinates_figure

    comparison = compare(mixed / "grid")
    figure = parallel_coordinates_figure(comparison)
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["model", "optimizer.lr", "val/acc_best"]
    rows = [line for line in ax.get_lines() if len(line.get_xdata()) == 3]
    assert len(rows) == len(comparison.groups) == 4
    assert len(figure.axes) == 2  # the colour bar
    view = importances(comparison)
    assert set(view.found) == {"model", "optimizer.lr"} and sum(view.found.values()) == pytest.approx(1.0)
    assert view.runs == 8 and "over 8 completed runs; only 8 runs: a rough estimate" in view.said
    written = sorted(p.name for p in (mixed / "grid" / "compare").iterdir())
    assert "parallel_coordinates.png" in written and "importance.png" in written
    assert "Importance for val/acc_best" in (mixed / "grid" / "compare" / "compare.md").read_text()


def test_the_notebook_api_gives_the_tables_numbers_and_the_trained_model(mixed, tmp_path):
    """`digitlab.api.compare`: a DataFrame of the table's rows (mean, std, n), writing nothing unless asked;
    `load_model`: a run's trained model in one call."""
    from digitlab.api import compare as compare_frame
    from digitlab.api import load_model

    before = sorted(p.name for p in (mixed / "grid" / "compare").iterdir())
    frame = compare_frame(mixed / "grid")
    assert sorted(p.name for p in (mixed / "grid" / "compare").iterdir()) == before  # nothing written
    table = rows(mixed / "grid" / "compare" / "compare.csv")
    assert list(frame["rank"]) == [int(r["rank"]) for r in table] and list(frame["n"]) == [2] * 4
    for (_, ours), theirs in zip(frame.iterrows(), table, strict=True):
        assert (ours["model"], str(ours["optimizer.lr"])) == (theirs["model"], theirs["optimizer.lr"])
        assert ours["val/acc_best"] == pytest.approx(float(theirs["val/acc_best"]))
        assert ours["val/acc_best std"] == pytest.approx(float(theirs["val/acc_best std"]))
    compare_frame(mixed / "grid", out=tmp_path / "written")
    assert (tmp_path / "written" / "compare.csv").is_file()
    run_dir = next((mixed / "grid").glob("0_*"))
    model = load_model(run_dir)
    assert not model.training and sorted(model.class_names) == ["3", "7"]


def test_the_sweeps_hparams_show_the_options_and_the_seed_first(mixed):
    """A group's option by name (`model`, not `model.net._target_`) and the seed come first; the experiment
    column only where it is more than the model's name (runs without one are named by their model)."""
    from digitlab.analysis.hparams_experiment import columns

    assert columns(compare(mixed / "grid")) == ["model", "seed", "optimizer.lr"]
