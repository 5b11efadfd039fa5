"""A real Trainer on a tiny synthetic MNIST_SAMPLE: run dir contract, event files, hparams, the CLI."""

from __future__ import annotations

import json
import os

import pytest
import torch

from digitlab.api import run
from digitlab.rundir import Run
from tests.conftest import REPO, cli, cli_process, tiny_overrides
from tests.tb import hparams, scalars


@pytest.fixture(scope="module")
def linear_run(sample_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("linear")
    metrics, run_dir = run(tiny_overrides(sample_root, tmp, "trainer.max_epochs=3"), output_dir=tmp / "run")
    return metrics, run_dir


def test_run_dir_holds_config_checkpoints_events_and_metrics(linear_run):
    metrics, run_dir = linear_run
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert any(p.name.startswith("epoch") for p in (run_dir / "checkpoints").iterdir())
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics
    assert metrics["epochs"] == 3 and metrics["steps"] == 3 * 6
    # The synthetic classes are separable by one bar of pixels: the linear model must learn them.
    assert metrics["val/acc"] >= 0.9 and metrics["val/acc_best"] >= metrics["val/acc"]
    for key in ("val/loss", "val/acc_3", "val/acc_7", "val/acc_macro", "train/loss", "train/acc"):
        assert key in metrics


def test_event_files_hold_epoch_scalars(linear_run):
    metrics, run_dir = linear_run
    values = scalars(run_dir)
    # Each validation metric again against the epoch, so that runs of any batch size line up.
    from tests.tb import steps

    assert steps(run_dir)["by_epoch/val/acc"] == [1, 2, 3] and values["by_epoch/val/acc"] == values["val/acc"]
    for tag in ("train/loss", "val/loss", "val/acc", "val/acc_3", "val/acc_7", "val/acc_best"):
        assert len(values[tag]) == 3, tag  # one point per epoch
    assert values["val/acc"][-1] == pytest.approx(metrics["val/acc"])
    assert values["train/loss"][-1] < values["train/loss"][0]


def test_hparams_name_the_settings_and_real_metric_tags(linear_run):
    _, run_dir = linear_run
    values, experiment_metrics = hparams(run_dir)
    # No per-run experiment summary: TensorBoard builds it from the sessions, with the logged scalars as
    # metric columns (so they show real values) and the differing hparams first.
    assert experiment_metrics == []
    assert values["optimizer.lr"] == 1.0
    assert values["model.net._target_"] == "digitlab.model.nets.linear"
    assert values["loss._target_"] == "digitlab.loss.MnistLoss"
    assert values["data.batch_size"] == 16 and values["seed"] == 0
    # The groups' options by name, as a researcher reads a run (not only `digitlab.model.nets.linear`).
    assert (values["model"], values["optimizer"], values["loss"]) == ("linear", "sgd", "mnist_loss")
    assert {"val/acc", "val/acc_best", "val/loss"} <= set(scalars(run_dir))
    assert "hp_metric" not in scalars(run_dir)


def test_same_seed_same_numbers(sample_root, tmp_path):
    first, _ = run(tiny_overrides(sample_root, tmp_path, "seed=3"), output_dir=tmp_path / "a")
    second, _ = run(tiny_overrides(sample_root, tmp_path, "seed=3"), output_dir=tmp_path / "b")
    keys = [k for k in first if k.startswith(("val/", "train/"))]
    assert {k: first[k] for k in keys} == {k: second[k] for k in keys}


@pytest.mark.parametrize(
    "extra",
    [
        ["model=mlp", "model.net.hidden=8", "optimizer.lr=0.1"],
        ["loss=bce"],
        ["loss=cross_entropy"],
        ["optimizer=basic_optim"],
        ["optimizer=adam", "scheduler=one_cycle"],
        ["scheduler=cosine"],
    ],
)
def test_swappable_parts_train(sample_root, tmp_path, extra):
    metrics, _ = run(
        tiny_overrides(sample_root, tmp_path, "trainer.max_epochs=1", *extra), output_dir=tmp_path / "r"
    )
    assert metrics["steps"] == 6 and metrics["val/acc_best"] >= metrics["val/acc"]
    assert metrics["val/acc_macro"] == pytest.approx((metrics["val/acc_3"] + metrics["val/acc_7"]) / 2)


def test_cli_trains_and_reports(sample_root, tmp_path):
    """End to end, as a user types it: a process of its own."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = cli_process(*tiny_overrides(sample_root, tmp_path), cwd=tmp_path, check=False, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Final validation metrics:" in proc.stdout and "val/acc " in proc.stdout
    assert f"tensorboard --logdir {tmp_path / 'logs'}" in proc.stdout
    (run_dir,) = (tmp_path / "logs" / "runs").iterdir()
    assert run_dir.name.endswith("_linear")  # no experiment chosen: the run is named by its model
    assert (run_dir / ".hydra" / "overrides.yaml").is_file() and (run_dir / "metrics.json").is_file()
    assert (run_dir / "train.log").is_file()
    # config.json (what compare reads) is the same config as the one rebuilt from .hydra/ without it.
    resolved = json.loads((run_dir / "config.json").read_text())
    assert resolved["experiment_name"] == "linear" and resolved["paths"]["output_dir"] == str(run_dir)
    (run_dir / "config.json").unlink()
    assert Run(run_dir).config == resolved
    elsewhere = tmp_path / "elsewhere"  # a run put outside paths.log_dir: TensorBoard is shown that run
    verbose = "hydra.verbose=digitlab.job"  # each check of a job logged
    proc = cli(
        *tiny_overrides(sample_root, tmp_path), f"hydra.run.dir={elsewhere}", verbose, cwd=tmp_path, env=env
    )
    assert f"tensorboard --logdir {elsewhere}\n" in proc.stdout, proc.stdout
    # Checked once, before Hydra made its folder; its task checks only the folder again.
    assert (proc.stdout + proc.stderr).count(f"job checked: {elsewhere}") == 1, proc.stdout + proc.stderr


def test_cli_reports_a_bad_value_in_one_paragraph(tmp_path):
    proc = cli("optimizer.lr=-1", f"paths.log_dir={tmp_path}", cwd=REPO, check=False)
    assert proc.returncode == 1
    assert "optimizer.lr=-1 is invalid: it must be a number > 0." in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout


def test_cli_explains_a_config_group_set_to_null(tmp_path):
    proc = cli("logger=null", f"paths.log_dir={tmp_path}", cwd=REPO, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout
    assert "logger=null is not an option of the config group 'logger'" in proc.stderr
    assert (
        "Switch it off with ~logger" in proc.stderr
        and "csv, mlflow, tensorboard, tensorboard_csv" in proc.stderr
    )
    assert not list(tmp_path.iterdir()), "nothing is written for a command that cannot run"


@pytest.mark.parametrize(
    "compile_option",
    [
        "{backend:eager}",  # dynamo traces the net, no C++ compiler: quick
        pytest.param("true", marks=pytest.mark.slow),  # inductor: compiles C++ kernels, about 30 s
    ],
)
def test_compiled_net_gives_the_eager_numbers_and_checkpoints(sample_root, tmp_path, compile_option):
    eager, eager_dir = run(tiny_overrides(sample_root, tmp_path, "seed=5"), output_dir=tmp_path / "eager")
    compiled, compiled_dir = run(
        tiny_overrides(sample_root, tmp_path, "seed=5", f"model.compile={compile_option}"),
        output_dir=tmp_path / "compiled",
    )
    for key in ("val/acc", "val/acc_best", "train/acc"):
        assert compiled[key] == eager[key], key
    assert compiled["val/loss"] == pytest.approx(eager["val/loss"], rel=1e-5)
    weights = [
        torch.load(d / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        for d in (eager_dir, compiled_dir)
    ]
    assert weights[0].keys() == weights[1].keys()  # a compiled run's checkpoint loads as an eager one's


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["paths.log_dir=/proc/digitlab_logs"], "paths.log_dir='/proc/digitlab_logs' is not writable"),
        (["-m", "paths.log_dir=/proc/digitlab_logs", "seed=0,1"], "paths.log_dir='/proc/digitlab_logs'"),
        (["hydra.run.dir={file}/run"], "hydra.run.dir='{file}/run' is not writable"),
        (
            ["-m", "hydra.sweep.dir={file}/sweep", "seed=0,1"],
            "hydra.sweep.dir='{file}/sweep' is not writable",
        ),
    ],
    ids=["log_dir", "log_dir-multirun", "run.dir", "sweep.dir"],
)
def test_an_output_dir_that_cannot_be_made_is_one_paragraph(tmp_path, args, named):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    proc = cli(*[a.format(file=a_file) for a in args], cwd=tmp_path, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in output, output[-3000:]
    assert named.format(file=a_file) in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"], "nothing is written"


def test_the_api_records_its_run_as_the_cli_does(sample_root, tmp_path, monkeypatch):
    """`.hydra/` has one writer for the jobs digitlab sets up itself: an API run's holds what Hydra writes
    for the same command (its whole `hydra.yaml`, the overrides), and rebuilds the same config."""
    overrides = tiny_overrides(sample_root, tmp_path, "trainer.max_epochs=1")
    cli(*overrides, f"hydra.run.dir={tmp_path / 'cli'}", cwd=tmp_path)
    monkeypatch.chdir(tmp_path)  # where the command ran (`paths.root_dir`)
    run(overrides, output_dir=tmp_path / "api")
    (by_cli, by_api) = (Run(tmp_path / name) for name in ("cli", "api"))
    assert by_api.overrides == by_cli.overrides == overrides
    assert (
        set(by_api.hydra) == set(by_cli.hydra)
        and by_api.hydra["runtime"]["choices"] == by_cli.hydra["runtime"]["choices"]
    )
    assert by_api.hydra["runtime"]["output_dir"] == str(tmp_path / "api")
    for run_dir in (by_cli.path, by_api.path):
        (run_dir / "config.json").unlink()  # the config rebuilt from .hydra/ alone
    rebuilt = [
        json.dumps(Run(folder).config).replace(str(folder), "<run>") for folder in (by_cli.path, by_api.path)
    ]
    assert rebuilt[0] == rebuilt[1] and '"output_dir": "<run>"' in rebuilt[0]
