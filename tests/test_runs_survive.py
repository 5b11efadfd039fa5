"""Checkpoints, resume, eval, predict, interruption and divergence, on a tiny synthetic MNIST_SAMPLE."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from digitlab.api import run
from digitlab.callbacks.guards import TrainingDiverged
from digitlab.cli.evaluate import evaluate
from digitlab.cli.evaluate import main as eval_main
from digitlab.cli.predict import main as predict_main
from digitlab.errors import ConfigError
from tests.conftest import cli, digit_image, tiny_overrides
from tests.tb import scalars


@pytest.fixture(scope="module")
def trained(sample_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trained")
    metrics, run_dir = run(
        tiny_overrides(sample_root, tmp, "trainer.max_epochs=3", "optimizer.lr=0.05"), output_dir=tmp / "run"
    )
    return metrics, run_dir


def test_eval_reproduces_the_runs_metrics_from_the_checkpoint_alone(trained, capsys):
    metrics, run_dir = trained
    last = evaluate(str(run_dir / "checkpoints" / "last.ckpt"))
    assert last["val/acc"] == pytest.approx(metrics["val/acc"])
    assert last["val/loss"] == pytest.approx(metrics["val/loss"], rel=1e-5)
    (best,) = [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("epoch")]
    assert evaluate(str(best))["val/acc"] == pytest.approx(metrics["val/acc_best"])
    assert eval_main([f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"]) == 0
    assert json.loads(capsys.readouterr().out)["val/acc"] == pytest.approx(metrics["val/acc"])


def test_ckpt_path_continues_training(trained, sample_root, tmp_path):
    _, run_dir = trained
    metrics, resumed = run(
        tiny_overrides(
            sample_root,
            tmp_path,
            "trainer.max_epochs=5",
            "optimizer.lr=0.05",
            f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        ),
        output_dir=tmp_path / "resumed",
    )
    assert metrics["epochs"] == 5 and metrics["steps"] == 5 * 6  # optimizer, epoch and step counters continue
    assert len(scalars(resumed)["val/acc"]) == 2  # only epochs 4 and 5 were trained here


def test_divergence_stops_the_run_naming_the_step(sample_root, tmp_path):
    overrides = tiny_overrides(sample_root, tmp_path, "model=mlp", "loss=cross_entropy", "optimizer.lr=1e30")
    with pytest.raises(
        TrainingDiverged, match=r"the training loss became (nan|inf) at step \d+ \(epoch 0\).*optimizer.lr"
    ):
        run(overrides, output_dir=tmp_path / "run")
    assert (tmp_path / "run" / "checkpoints" / "interrupted.ckpt").is_file()


def test_a_diverging_job_fails_and_the_sweep_goes_on(sample_root, tmp_path):
    sweep = tmp_path / "sweep"
    proc = cli(
        "-m",
        f"hydra.sweep.dir={sweep}",
        *tiny_overrides(sample_root, tmp_path, "model=mlp", "loss=cross_entropy", "optimizer.lr=1e30,0.5"),
        cwd=tmp_path,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert "training diverged" in output and "Traceback" not in output, output[-3000:]
    # Reported after the rest, with the others' compare table, and the exit code says it.
    assert proc.returncode == 1 and "1 of the 2 jobs of this sweep failed, the first: #0" in proc.stderr
    assert "| 0.5 |" in proc.stdout and (sweep / "compare" / "compare.md").is_file()
    jobs = sorted(sweep.glob("[0-9]_*"))
    statuses = [json.loads((job / "metrics.json").read_text())["status"] for job in jobs]
    assert statuses == ["failed", "completed"]
    assert "diverged" in json.loads((jobs[0] / "metrics.json").read_text())["error"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("ckpt_path=/nonexistent/last.ckpt", "ckpt_path='/nonexistent/last.ckpt' is not a file"),
        (
            "model=pixel_similarity model.distance=cosine",
            "model.distance='cosine' is invalid: it must be one of l1, l2.",
        ),
        ("model=mlp model.net.depth=0", "model.net.depth=0 is invalid: it must be a whole number >= 1."),
    ],
)
def test_bad_values_stop_before_any_work(override, message, sample_root, tmp_path):
    with pytest.raises(ConfigError) as info:
        run(tiny_overrides(sample_root, tmp_path, *override.split()), output_dir=tmp_path / "run")
    assert message in str(info.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unreadable_checkpoint_and_unwritable_output_dir(sample_root, tmp_path):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="is not a readable checkpoint"):
        evaluate(str(garbage))
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(ConfigError, match=r"paths.output_dir=.*is not writable"):
        run(tiny_overrides(sample_root, tmp_path), output_dir=a_file / "run")


def test_cli_error_has_no_traceback(tmp_path):
    proc = cli("ckpt_path=/nonexistent.ckpt", f"paths.log_dir={tmp_path}", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert "ckpt_path='/nonexistent.ckpt' is not a file" in proc.stdout + proc.stderr


def test_predict_any_image_format(trained, tmp_path, capsys):
    _, run_dir = trained
    three = digit_image(3, np.random.default_rng(5))
    Image.fromarray(three).resize((56, 56)).convert("RGB").save(tmp_path / "rgb.png")
    Image.fromarray(three).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(255 - three).resize((100, 80)).save(tmp_path / "paper.jpg")  # dark digit on light paper
    (tmp_path / "broken.png").write_bytes(b"\x89PNG nonsense")
    Image.fromarray(three).save(tmp_path / "digit=3.png")  # a path that exists is a path, whatever its name
    code = predict_main(
        [
            f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
            str(tmp_path / "*.png"),
            str(tmp_path / "paper.jpg"),
            str(tmp_path / "missing.png"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1
    lines = dict((line.split("\t")[0], line.split("\t")[1:]) for line in out.strip().splitlines())
    assert {name.rsplit("/", 1)[1] for name in lines} == {"rgb.png", "rgba.png", "digit=3.png", "paper.jpg"}
    assert all(digit == "3" and 0.5 < float(prob) <= 1 for digit, prob in lines.values()), out
    assert "broken.png" in err and "missing.png" in err and "skipped" in err
