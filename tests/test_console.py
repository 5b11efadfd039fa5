"""What a sweep prints: one line per job as it ends and the comparison, the model summary once; `-v` brings
every job's own output back. Real `digitlab-train -m` commands on the synthetic MNIST_SAMPLE."""

from __future__ import annotations

import re

import pytest

from digitlab.console import job_line, job_numbers
from tests.conftest import cli, tiny_overrides

DATA_NOTE = re.compile(r"\]\[HYDRA\] (mnist_sample: using|decoding \d+ PNGs)")


def sweep(sample_root, tmp_path, lrs: str, *extra: str) -> list[str]:
    tmp_path.mkdir(exist_ok=True)
    output = cli(
        "-m",
        *tiny_overrides(sample_root, tmp_path, f"optimizer.lr={lrs}", "seed=0,1", *extra),
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
    )
    return (output.stdout + output.stderr).splitlines()


@pytest.mark.parametrize("launcher", ["basic", "stacked"])
def test_a_sweep_prints_a_line_per_job_and_the_table(launcher, sample_root, tmp_path):
    small = sweep(sample_root, tmp_path / "small", "0.1,0.2", f"hydra/launcher={launcher}")
    large = sweep(sample_root, tmp_path / "large", "0.1,0.2,0.3,0.4", f"hydra/launcher={launcher}")
    for lines, jobs in ((small, 4), (large, 8)):
        ends = [line for line in lines if re.match(r"#\d+  .*optimizer\.lr=", line)]
        assert len(ends) == jobs and all("val/acc_best " in line and " epochs " in line for line in ends)
        assert not [line for line in lines if "GPU available" in line or "Final validation metrics" in line]
        assert sum("Trainable params" in line for line in lines) <= 1  # the sweep's first job only
        assert any(line.startswith("| rank | optimizer.lr |") for line in lines)
    # O(jobs): 4 more jobs, 4 more lines and 2 more table rows. (The data's notes are said once a process.)
    small, large = ([line for line in lines if not DATA_NOTE.search(line)] for lines in (small, large))
    assert len(large) - len(small) == 4 + 2, "\n".join(large)


def test_verbose_brings_back_every_jobs_output(sample_root, tmp_path):
    lines = sweep(sample_root, tmp_path, "0.1", "-v")
    assert sum("Final validation metrics" in line for line in lines) == 2
    assert any("GPU available" in line for line in lines)


def test_the_job_line_shows_numbers_at_4_significant_digits():
    metrics = {"val/acc_best": 0.991666, "epochs": 4, "wall_time_s": 12.345, "status": "pruned"}
    line = job_line(3, ["optimizer.lr=0.44303752452182665", "model=mlp", "paths.log_dir=/x"], metrics, None)
    assert line == "#3  optimizer.lr=0.443 model=mlp  val/acc_best 0.9917  4 epochs  12.3 s  [pruned]"


def test_help_teaches_with_examples_before_the_config(tmp_path):
    import subprocess
    import sys

    def helped(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", *args, "--help"], capture_output=True, text=True, cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    train = helped("digitlab.cli.train")
    examples = train[: train.index("== Groups")]
    for shown in (
        "experiment=",
        " -m ",
        "hydra/launcher=stacked",
        "hparams_search=mlp",
        "resume=true",
        "lr_find=true",
    ):
        assert shown in examples, shown
    assert (
        train.index("== Groups") < train.index("model: linear, mlp") < train.index("== The composed config")
    )
    for module in ("evaluate", "predict"):
        text = helped(f"digitlab.cli.{module}")
        assert (
            text.startswith("usage: digitlab-") and "ckpt_path=<file>" in text and "Output (stdout)" in text
        )
    assert "Output: the ranked table" in helped("digitlab.cli.compare")


def test_job_numbers_are_named_as_runs_of_consecutive_ones():
    assert job_numbers(range(256)) == "#0-255"
    assert job_numbers([3, 0, 1, 2, 8, 10, 11]) == "#0-3,8,10-11"
    assert job_numbers([5]) == "#5"
