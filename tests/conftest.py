"""Shared fixtures: tiny synthetic datasets in fastai's real on-disk layout, and the real data when asked for."""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import signal
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
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


@dataclass
class Ran:
    """What a `digitlab-train` command gave: its exit code and what it printed (as subprocess.run's result)."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def cli(*args: str, cwd: Path, check: bool = True, env: dict | None = None) -> Ran:
    """`digitlab-train <args>` in this process, through the command's own entry point (`cli.train.cli`: its
    argument checks, Hydra's main, the launchers and sweepers), in `cwd` with the environment `env`; with
    `check`, fail the test on a non-zero exit. The process-wide state a command changes is put back
    afterwards (`process_state_kept`). Use `cli_process` where the process itself is what a test tests."""
    from digitlab.cli.train import cli as train_cli

    stdout, stderr = io.StringIO(), io.StringIO()
    with (
        process_state_kept(cwd, env),
        console_streams(stdout, stderr),
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        sys.argv = ["digitlab-train", *args]
        try:
            train_cli()
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
            if isinstance(done.code, str):
                print(done.code, file=sys.stderr)
        except BaseException:  # as the interpreter reports an uncaught exception, and exits 1
            traceback.print_exc()
            code = 1
    ran = Ran(["digitlab-train", *args], code, stdout.getvalue(), stderr.getvalue())
    if check:
        assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-4000:]
    return ran


@contextlib.contextmanager
def process_state_kept(cwd: Path, env: dict | None) -> Iterator[None]:
    """Run a block in `cwd` (and the environment `env`), then restore what an entry point may change for the
    whole process: the working directory, argv, the environment, warning filters, the handlers, filters and
    level of every logger that existed before (loggers a first import creates keep their import's setup, as
    in a new process), the signal handlers, and Hydra's global state."""
    from hydra.core.global_hydra import GlobalHydra

    saved_cwd, saved_argv, saved_env = os.getcwd(), list(sys.argv), dict(os.environ)
    loggers = [
        logging.getLogger(),
        *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict)),
    ]
    saved_loggers = [
        (logger, list(logger.handlers), list(logger.filters), logger.level, logger.propagate, logger.disabled)
        for logger in loggers
    ]
    saved_signals = {sig: signal.getsignal(sig) for sig in KEPT_SIGNALS}
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    os.chdir(cwd)
    GlobalHydra.instance().clear()
    try:
        with warnings.catch_warnings():
            yield
    finally:
        GlobalHydra.instance().clear()
        os.chdir(saved_cwd)
        sys.argv[:] = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
        for sig, handler in saved_signals.items():
            signal.signal(sig, handler)
        for logger, handlers, filters, level, propagate, disabled in saved_loggers:
            _close_added(logger, handlers)
            logger.handlers, logger.filters = handlers, filters
            logger.setLevel(level)
            logger.propagate, logger.disabled = propagate, disabled


@contextlib.contextmanager
def console_streams(stdout: io.StringIO, stderr: io.StringIO) -> Iterator[None]:
    """Log handlers made before the block (Lightning's, made at its import) write to `stdout` / `stderr` in it,
    as a process's console handlers write to its console."""
    moved = []
    for logger in [
        logging.getLogger(),
        *(logging.getLogger(n) for n in list(logging.root.manager.loggerDict)),
    ]:
        for handler in logger.handlers:
            if (
                type(handler) is logging.StreamHandler
            ):  # not setStream: it flushes, and a stream may be closed
                moved.append((handler, handler.stream))
                handler.stream = stderr if handler.stream is sys.stderr else stdout
    try:
        yield
    finally:
        for handler, stream in moved:
            handler.stream = stream


KEPT_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)


def _close_added(logger: logging.Logger, kept: list[logging.Handler]) -> None:
    """Close the handlers a command added to `logger` (a run's train.log stays open otherwise)."""
    for handler in logger.handlers:
        if handler not in kept:
            handler.close()


def cli_process(
    *args: str, cwd: Path, check: bool = True, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run `python -m digitlab.cli.train <args>` as a process of its own, as a user would; with `check`, fail
    the test on a non-zero exit. For tests of the process itself: its exit, its imports, its children."""
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


HOLDER = "import sys; from digitlab.run_lock import hold; hold(sys.argv[1]); print('held', flush=True); sys.stdin.read()"


@contextlib.contextmanager
def held_elsewhere(folder: Path) -> Iterator[int]:
    """`folder` held (`run_lock`) by another process while the block runs, as a running command holds its
    run's folder; yields that process's pid."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.communicate("", timeout=60)


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
