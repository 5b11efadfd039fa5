"""What researchers expect from their tools: debug configs, switchable callbacks and loggers, tags and notes,
the config tree, the learning-rate finder, the Python API."""

from __future__ import annotations

import csv
import json
import sys

import pytest

import digitlab
from digitlab.analysis.table import compare, markdown
from digitlab.api import run
from digitlab.errors import ConfigError
from tests.conftest import cli, cli_process, tiny_overrides
from tests.tb import hparams, scalars


def test_debug_runs_stay_out_of_the_normal_logs(sample_root, tmp_path):
    proc = cli("debug=fast_dev_run", *tiny_overrides(sample_root, tmp_path), cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "logs" / "debug").iterdir()
    assert run_dir.name.endswith("_fast_dev_run")
    assert not (tmp_path / "logs" / "runs").exists()


def test_overfit_learns_two_batches_by_heart(sample_root, tmp_path):
    metrics, _ = run(
        tiny_overrides(sample_root, tmp_path, "debug=overfit", "trainer.max_epochs=30"),
        output_dir=tmp_path / "run",
    )
    assert metrics["train/acc"] >= 0.99 and metrics["steps"] == 30 * 2


def test_limit_and_profiler(sample_root, tmp_path):
    metrics, _ = run(tiny_overrides(sample_root, tmp_path, "debug=limit"), output_dir=tmp_path / "limit")
    assert (
        metrics["epochs"] == 2 and metrics["steps"] == 2 * 5
    )  # the command line beats debug=limit's 3 epochs
    _, run_dir = run(tiny_overrides(sample_root, tmp_path, "debug=profiler"), output_dir=tmp_path / "prof")
    report = next(run_dir.glob("*profile*")).read_text()
    assert "run_training_epoch" in report


def test_anomaly_detection_runs(sample_root, tmp_path):
    metrics, _ = run(tiny_overrides(sample_root, tmp_path, "debug=anomaly"), output_dir=tmp_path / "run")
    assert metrics["epochs"] == 2  # the command line's max_epochs beats the debug config's


def test_early_stopping_on_val_loss(sample_root, tmp_path):
    overrides = tiny_overrides(
        sample_root,
        tmp_path,
        "callbacks/early_stopping=val_loss",
        "trainer.max_epochs=50",
        "callbacks.early_stopping.min_delta=10",
        "callbacks.early_stopping.patience=2",
    )
    metrics, _ = run(overrides, output_dir=tmp_path / "run")
    assert metrics["epochs"] == 3  # no epoch improves val/loss by 10: stopped after patience + 1 epochs


@pytest.mark.parametrize(
    "choice",
    [
        "callbacks/progress_bar=rich",
        "callbacks/progress_bar=tqdm",
        "callbacks/model_summary=rich",
        "callbacks/model_summary=default",
    ],
)
def test_progress_bars_and_summaries(sample_root, tmp_path, choice):
    overrides = [
        o
        for o in tiny_overrides(sample_root, tmp_path, choice, "trainer.max_epochs=1")
        if not o.startswith(("trainer.enable_progress_bar", "trainer.enable_model_summary"))
    ]
    metrics, _ = run(overrides, output_dir=tmp_path / "run")
    assert metrics["epochs"] == 1


def test_csv_logger_beside_tensorboard(sample_root, tmp_path):
    _, run_dir = run(
        tiny_overrides(sample_root, tmp_path, "logger=tensorboard_csv"), output_dir=tmp_path / "run"
    )
    with open(run_dir / "csv" / "metrics.csv") as f:
        rows = [row for row in csv.DictReader(f) if row.get("val/acc")]
    assert len(rows) == 2
    assert len(scalars(run_dir)["val/acc"]) == 2
    _, csv_only = run(tiny_overrides(sample_root, tmp_path, "logger=csv"), output_dir=tmp_path / "csv_only")
    assert (csv_only / "csv" / "metrics.csv").is_file() and not list(csv_only.glob("events.out.tfevents.*"))


def mlflow_runs(log_dir):
    """{run name: MLflow run} of every experiment in the store logger=mlflow writes, read back by MLflow."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{log_dir}/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client, {r.info.run_name: r for r in client.search_runs(experiments)}


def test_mlflow_logger_records_each_run_named_by_its_folder(sample_root, tmp_path):
    """Two jobs side by side (joblib) start on a store that does not exist yet: one makes it, both log."""
    sweep = tmp_path / "sweep"
    cli(
        "-m",
        "hydra/launcher=joblib",
        f"hydra.sweep.dir={sweep}",
        *tiny_overrides(sample_root, tmp_path, "logger=tensorboard_mlflow", "optimizer.lr=0.05,0.1"),
        cwd=tmp_path,
    )
    client, runs = mlflow_runs(tmp_path / "logs")
    jobs = sorted(p.name for p in sweep.glob("[0-9]_*"))
    # One MLflow experiment for the sweep, named like its folder; a parent run holding its compare table,
    # each job a child run of it.
    (experiment,) = client.search_experiments(filter_string=f"name = '{sweep.name}'")
    parent = runs.pop(sweep.name)
    assert parent.info.experiment_id == experiment.experiment_id
    compared = {a.path for a in client.list_artifacts(parent.info.run_id, "compare")}
    assert {"compare/compare.md", "compare/compare.csv"} <= compared, compared
    assert sorted(runs) == jobs and len(jobs) == 2 and not any("logger=" in job for job in jobs)  # plumbing
    for name, found in runs.items():
        assert found.info.status == "FINISHED" and found.data.tags["run_dir"] == str(sweep / name)
        assert found.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert found.info.experiment_id == experiment.experiment_id
        assert (
            found.data.params["optimizer.lr"] in ("0.05", "0.1")
            and found.data.params["experiment"] == "linear"
            and found.data.params["model"] == "linear"  # the group's option by name
        )
        artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
        assert {"pictures", "checkpoints", "metrics.json"} <= artifacts, artifacts
        record = json.loads((sweep / name / "metrics.json").read_text())
        history = client.get_metric_history(found.info.run_id, "val/acc")
        assert len(history) == 2 and history[-1].value == pytest.approx(record["val/acc"])
        assert len(scalars(sweep / name)["val/acc"]) == 2  # TensorBoard beside it


def test_mlflow_missing_is_one_paragraph_naming_the_extra(sample_root, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what Python does for a package that is not there
    with pytest.raises(ConfigError, match=r"logger=mlflow needs the mlflow package.*digitlab\[mlflow\]"):
        run(tiny_overrides(sample_root, tmp_path, "logger=mlflow"), output_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists() and not (tmp_path / "logs").exists()


def test_tags_and_notes_reach_hparams_and_compare(sample_root, tmp_path):
    _, run_dir = run(
        tiny_overrides(sample_root, tmp_path, "tags=[baseline,paper]", "notes='first try'"),
        output_dir=tmp_path / "runs" / "a",
    )
    run(tiny_overrides(sample_root, tmp_path, "optimizer.lr=0.1"), output_dir=tmp_path / "runs" / "b")
    values, _ = hparams(run_dir)
    assert values["tags"] == "baseline,paper" and values["notes"] == "first try"
    table = markdown(compare(tmp_path / "runs"))
    assert "| tags | notes |" in table and "baseline,paper | first try" in table


def test_print_config_shows_the_tree(sample_root, tmp_path, capsys):
    run(
        tiny_overrides(sample_root, tmp_path, "print_config=true", "trainer.max_epochs=1"),
        output_dir=tmp_path / "r",
    )
    out = capsys.readouterr().out
    assert "config" in out and "optimizer" in out and "torch.optim.SGD" in out


def test_lr_find_suggests_a_learning_rate(sample_root, tmp_path, capsys):
    # 6 batches per epoch here: 20 epochs give the finder its 100 steps.
    proc = cli(
        "lr_find=true",
        f"hydra.run.dir={tmp_path / 'run'}",
        *tiny_overrides(sample_root, tmp_path, "trainer.max_epochs=20"),
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "run" / "lr_find.json").read_text())
    assert 1e-5 <= result["suggested_lr"] <= 10
    # The user's own command, runnable as printed: lr_find dropped, the suggested lr added.
    (command,) = [
        line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("digitlab-train ")
    ]
    assert command.endswith(f"optimizer.lr={result['suggested_lr']:.3g}") and "lr_find=" not in command
    assert "trainer.max_epochs=20" in command and f"data.root={sample_root}" in command
    assert (tmp_path / "run" / "lr_find.png").is_file() and not (tmp_path / "run" / "metrics.json").exists()
    from tests.tb import load

    assert "lr_find" in load(tmp_path / "run").Tags()["images"]
    # One line, the plot and the command: no progress bar, no Lightning chatter.
    said = proc.stdout + proc.stderr
    assert said.count("Suggested learning rate") == 1 and "plot: " in said
    assert (
        "Finding best initial lr" not in said and "weights_only" not in said and "GPU available" not in said
    )
    # The finder's folder holds no trained run: compare does not count it.
    from digitlab.rundir import find_runs

    assert find_runs(tmp_path) == [] and find_runs(tmp_path / "run") == []


def test_the_lr_find_plot_leaves_out_the_warm_up_and_the_divergence():
    from digitlab.lr_find import SKIP_BEGIN, trimmed

    lrs = [10 ** (-5 + i / 10) for i in range(60)]
    losses = [0.1] * SKIP_BEGIN + [1.0 - 0.015 * i for i in range(30)] + [0.55 + 0.5 * i for i in range(20)]
    shown_lrs, shown_losses = trimmed(lrs, losses)
    assert shown_lrs[0] == lrs[SKIP_BEGIN] and min(shown_losses) == pytest.approx(0.55)
    assert max(shown_losses) <= 4 * 0.55  # cut where the loss passed 4x its lowest


def test_lr_find_without_enough_steps_says_so(sample_root, tmp_path):
    from digitlab.errors import DigitlabError

    with pytest.raises(
        DigitlabError, match=r"lr_find ran 12 of 100 steps and could not suggest.*trainer.max_epochs"
    ):
        run(tiny_overrides(sample_root, tmp_path, "lr_find=true"), output_dir=tmp_path / "run")
    assert (tmp_path / "run" / "lr_find.png").is_file()


def test_lr_find_needs_an_optimizer(sample_root, tmp_path):
    with pytest.raises(ConfigError, match="lr_find=true needs a model trained by an optimizer"):
        run(
            tiny_overrides(sample_root, tmp_path, "experiment=fastbook_baseline", "lr_find=true"),
            output_dir=tmp_path / "run",
        )


def test_python_api(sample_root, tmp_path):
    metrics, run_dir = digitlab.run(
        tiny_overrides(sample_root, tmp_path, "trainer.max_epochs=1"), output_dir=tmp_path / "api"
    )
    assert run_dir == tmp_path / "api" and metrics["epochs"] == 1
    assert (run_dir / ".hydra" / "config.yaml").is_file()


def test_ddp_with_two_cpu_processes(sample_root, tmp_path):
    """accelerator=ddp_cpu: the multi-process path of accelerator=ddp, exercised without GPUs."""
    run_dir = tmp_path / "run"
    proc = cli_process(  # DDP starts its other process by running this command again
        "accelerator=ddp_cpu",
        f"hydra.run.dir={run_dir}",
        *tiny_overrides(sample_root, tmp_path),
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # 96 training images, batch 16, split over 2 processes: 3 steps per epoch in each.
    assert metrics["epochs"] == 2 and metrics["steps"] == 2 * 3
    # Validation gathered over both processes: the per-class accuracies still make up the macro one.
    assert metrics["val/acc_macro"] == pytest.approx((metrics["val/acc_3"] + metrics["val/acc_7"]) / 2)
    assert "distributed_backend=gloo" in proc.stdout + proc.stderr


def test_event_checksums_in_c_are_tensorboards():
    """`fast_event_checksums` swaps TensorBoard's pure-Python CRC32C for the `crc32c` package's: the same
    checksums, so TensorBoard reads the events back (the Pictures tests read images written with it)."""
    import os

    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as pure_python
    from tensorboard.summary.writer import record_writer

    from digitlab.process import fast_event_checksums

    fast_event_checksums()
    assert record_writer.masked_crc32c is not pure_python
    for data in (b"", b"a", os.urandom(12), os.urandom(80_000)):
        assert record_writer.masked_crc32c(data) == pure_python(data)


def test_the_lr_finder_knows_when_its_range_went_far_enough():
    from digitlab.lr_find import SKIP_BEGIN, diverged

    falling = [1.0] * SKIP_BEGIN + [1.0 - 0.01 * i for i in range(90)]
    assert not diverged(falling)  # still falling at the top: the range grows (`find_lr`)
    assert diverged([*falling, 0.2, 0.9, 5.0])  # past 4x its lowest
