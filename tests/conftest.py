"""Shared fixtures: tiny synthetic datasets in fastai's real on-disk layout, and the real data when asked for."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitlab.data.layouts import MNIST, MNIST_SAMPLE, Layout

REPO = Path(__file__).resolve().parents[1]


def digit_image(digit: int, rng: np.random.Generator) -> np.ndarray:
    """A 28x28 uint8 image that a linear model can tell apart by class: a bright bar whose place is the digit."""
    img = rng.integers(0, 40, size=(28, 28), dtype=np.uint8)
    row = 2 + 2 * digit
    img[row : row + 3, 4:24] = 255
    return img


def write_layout(root: Path, layout: Layout, per_class: dict[str, int], seed: int = 0) -> Path:
    """Write `layout` with `per_class[split]` PNGs per class, named like fastai's (by a running index)."""
    rng = np.random.default_rng(seed)
    rows, index = [], 0
    for split, count in per_class.items():
        for name in sorted(layout.class_names):
            class_dir = root / layout.split_dir(split) / name
            class_dir.mkdir(parents=True)
            for _ in range(count):
                Image.fromarray(digit_image(int(name), rng)).save(class_dir / f"{index}.png")
                rows.append(
                    (f"{layout.split_dir(split)}/{name}/{index}.png", sorted(layout.class_names).index(name))
                )
                index += 1
    if layout.has_labels_csv:
        with open(root / "labels.csv", "w", newline="") as f:
            csv.writer(f).writerows([("name", "label"), *rows])
    return root


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> Path:
    """A tiny MNIST_SAMPLE: 48 train and 16 valid PNGs per class. Tests must not modify it."""
    return write_layout(
        tmp_path_factory.mktemp("data") / "mnist_sample", MNIST_SAMPLE, {"train": 48, "valid": 16}
    )


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory) -> Path:
    """A tiny 10-digit MNIST (mnist_png layout): 12 train and 4 valid PNGs per digit."""
    return write_layout(tmp_path_factory.mktemp("data") / "mnist_png", MNIST, {"train": 12, "valid": 4})


def tiny_overrides(root: Path, tmp_path: Path, *extra: str) -> list[str]:
    """Overrides that train on a synthetic folder, quietly, with everything written under tmp_path."""
    return [
        f"data.root={root}",
        "data.check_counts=false",
        f"paths.data_dir={tmp_path / 'data'}",
        f"paths.log_dir={tmp_path / 'logs'}",
        "data.batch_size=16",
        "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        *extra,
    ]


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The repository's data/ folder: the real MNIST_SAMPLE is fetched or built there once and reused."""
    return REPO / "data"


def cli(*args: str, cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m digitlab.cli.train <args>` as a user would; with `check`, fail the test on a non-zero exit."""
    proc = subprocess.run(
        [sys.executable, "-m", "digitlab.cli.train", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def run_until_killed(args: list[str], point: str, cwd: Path, sig: int = signal.SIGKILL) -> str:
    """Start `args`, wait until it reaches the pause point `point`, kill it there; its output."""
    marker = cwd / f"paused-{os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, "DIGITLAB_PAUSE_AT": point, "DIGITLAB_PAUSE_MARKER": str(marker)}
    proc = subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 300
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"never reached {point}: {proc.communicate()[0][-3000:]}")
        time.sleep(0.01)
    proc.send_signal(sig)
    if sig != signal.SIGKILL:
        marker.unlink()  # let it go on to handle the signal
    return proc.communicate(timeout=300)[0]


@pytest.fixture
def small_disk(tmp_path):
    """A real 600 KiB file system (tmpfs), unmounted afterwards; skipped where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def read_only(tmp_path):
    """`read_only(folder)`: a read-only view of `folder` (a bind mount remounted read-only, which root cannot
    write through either), unmounted afterwards; skipped where mounting is not allowed."""
    mounts: list[Path] = []

    def view(folder: Path) -> Path:
        target = tmp_path / f"read-only-{len(mounts)}"
        target.mkdir()
        for command in (["--bind", folder, target], ["-o", "remount,bind,ro", target]):
            done = subprocess.run(["mount", *map(str, command)], capture_output=True)
            if done.returncode != 0:
                pytest.skip(f"cannot mount a read-only view here: {done.stderr.decode().strip()}")
            if not mounts or mounts[-1] != target:
                mounts.append(target)
        return target

    yield view
    for mount in mounts:
        subprocess.run(["umount", "-l", str(mount)], check=False)
