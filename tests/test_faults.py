"""Nothing is lost, whatever cuts a run short: real `digitlab-train` processes killed with SIGKILL at chosen
points (`digitlab.faults` pause points, not sleeps), a real full disk (a small tmpfs), a folder made
read-only during a run, and damaged files; then `resume=true` must end with the uninterrupted run's
`metrics.json`."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from digitlab.atomic import PARTIAL
from digitlab.build import build_from_checkpoint
from digitlab.errors import ConfigError
from digitlab.rundir import Run
from tests.conftest import cli, run_until_killed, tiny_overrides

# The numbers a resumed run must reproduce; the rest (timings, the error of an earlier attempt) may differ.
SAME = ("status", "epochs", "steps", "parameters", "val/acc", "val/acc_best", "val/acc_3", "val/acc_7")
CLOSE = ("val/loss", "train/loss", "train/acc", "val/acc_macro")


def train_args(sample_root: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "digitlab.cli.train", *tiny_overrides(sample_root, tmp_path, *extra)]


def assert_same_run(resumed: dict, reference: dict) -> None:
    for key in SAME:
        assert resumed.get(key) == reference.get(key), (key, resumed, reference)
    for key in CLOSE:
        assert resumed[key] == pytest.approx(reference[key], rel=1e-5, abs=1e-7), key


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def reference(sample_root, tmp_path_factory):
    """The uninterrupted single run that every killed one must reproduce."""
    tmp = tmp_path_factory.mktemp("reference")
    cli(*train_args(sample_root, tmp, *RUN)[3:], f"hydra.run.dir={tmp / 'run'}", cwd=tmp)
    return metrics(tmp / "run")


# momentum: the optimizer's state must travel too; 3 epochs of 6 batches.
RUN = ("model=mlp", "optimizer.momentum=0.9", "optimizer.lr=0.05", "trainer.max_epochs=3")


@pytest.mark.parametrize(
    "point",
    ["mid_epoch:1", "mid_validation:1", "epoch_end:1", "checkpoint_write:last.ckpt@1", "before_metrics"],
)
def test_a_single_run_killed_anywhere_resumes_to_the_uninterrupted_metrics(
    point, reference, sample_root, tmp_path
):
    args = [*train_args(sample_root, tmp_path, *RUN), f"hydra.run.dir={tmp_path / 'run'}"]
    run_until_killed(args, point, tmp_path)
    assert not (tmp_path / "run" / "metrics.json").exists()
    for ckpt in (tmp_path / "run" / "checkpoints").glob("*.ckpt"):
        torch.load(ckpt, weights_only=True)  # nothing truncated in place, even killed mid-write
    if point.startswith("checkpoint_write"):
        assert list((tmp_path / "run").rglob(f"*{PARTIAL}"))  # the killed write's temporary file
    cli(*args[3:], "resume=true", cwd=tmp_path)
    assert_same_run(metrics(tmp_path / "run"), reference)
    assert not list((tmp_path / "run").rglob(f"*{PARTIAL}"))  # removed by the run that held the folder next


@pytest.mark.parametrize("point", ["mid_epoch:1", "mid_validation:1", "epoch_end:1"])
def test_sigterm_anywhere_resumes_to_the_uninterrupted_metrics_and_steps(
    point, reference, sample_root, tmp_path
):
    args = [*train_args(sample_root, tmp_path, *RUN), f"hydra.run.dir={tmp_path / 'run'}"]
    output = run_until_killed(args, point, tmp_path, signal.SIGTERM)
    assert "Traceback" not in output and "resume=true" in output
    assert metrics(tmp_path / "run")["status"] == "interrupted"
    interrupted = tmp_path / "run" / "checkpoints" / "interrupted.ckpt"
    if point == "mid_epoch:1":
        # Lightning stops at the end of the batch that follows the signal: in epoch 1 (steps 7-12).
        assert 6 < torch.load(interrupted, weights_only=True)["global_step"] < 12
    if point == "mid_validation:1":
        # Lightning would resume a half-validated epoch without validating it (see CheckpointOnInterrupt).
        assert not interrupted.exists() and "repeats that epoch from last.ckpt" in output
    resumed = cli(*args[3:], "resume=true", cwd=tmp_path)
    if point != "mid_validation:1":
        assert "interrupted.ckpt" in resumed.stdout + resumed.stderr
    assert_same_run(metrics(tmp_path / "run"), reference)
    from tests.tb import load

    steps = [event.step for event in load(tmp_path / "run").Scalars("val/acc")]
    assert steps == [5, 11, 17], "every epoch validated once, at its single run's step"


def test_a_damaged_last_checkpoint_is_passed_over(reference, sample_root, tmp_path):
    args = [*train_args(sample_root, tmp_path, *RUN), f"hydra.run.dir={tmp_path / 'run'}"]
    run_until_killed(args, "epoch_end:1", tmp_path)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # cut short
    resumed = cli(*args[3:], "resume=true", cwd=tmp_path)
    assert "last.ckpt is damaged and skipped" in resumed.stdout + resumed.stderr
    assert_same_run(metrics(tmp_path / "run"), reference)


def test_a_finished_run_is_never_overwritten(reference, sample_root, tmp_path):
    args = [*train_args(sample_root, tmp_path, *RUN), f"hydra.run.dir={tmp_path / 'run'}"]
    cli(*args[3:], cwd=tmp_path)
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    again = cli(*args[3:], cwd=tmp_path, check=False)
    assert again.returncode == 1 and "Traceback" not in again.stdout + again.stderr
    assert "already holds a run" in again.stderr and "resume=true" in again.stderr
    assert "leave hydra.run.dir unset" in again.stderr
    assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == before


def test_a_finished_sweep_is_never_overwritten_and_the_advice_names_its_folder(sample_root, tmp_path):
    args = ["-m", *tiny_overrides(sample_root, tmp_path, "seed=0,1"), f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    cli(*args, cwd=tmp_path)
    before = {p: p.read_bytes() for p in (tmp_path / "sweep").rglob("*") if p.is_file()}
    again = cli(*args, cwd=tmp_path, check=False)
    said = again.stdout + again.stderr
    assert again.returncode == 1 and "Traceback" not in said
    assert "already holds a run" in said and "hydra.sweep.dir=<another folder>" in said
    assert "hydra.run.dir" not in said  # a sweep's folder is not the run folder's key
    assert {p: p.read_bytes() for p in (tmp_path / "sweep").rglob("*") if p.is_file()} == before


def test_a_second_sweep_into_a_live_sweeps_folder_is_refused_before_any_work(sample_root, tmp_path):
    """The same `-m` command started while the first still runs: refused at once, naming the folder and the
    process holding it; the first then finishes every job, once."""
    sweep = tmp_path / "sweep"
    args = ["-m", *tiny_overrides(sample_root, tmp_path, "seed=0,1"), f"hydra.sweep.dir={sweep}"]
    marker = tmp_path / "marker"
    env = {**os.environ, "DIGITLAB_PAUSE_AT": "mid_epoch:0", "DIGITLAB_PAUSE_MARKER": str(marker)}
    first = subprocess.Popen(
        [sys.executable, "-m", "digitlab.cli.train", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    while not marker.exists():
        assert first.poll() is None, first.communicate()[0][-3000:]
        time.sleep(0.01)
    second = cli(*args, cwd=tmp_path, check=False)
    said = second.stdout + second.stderr
    assert second.returncode == 1 and "Traceback" not in said, said[-3000:]
    assert f"{sweep} is in use" in said and f"pid {first.pid} " in said
    assert "checked" not in said and not list(sweep.glob("1_*")), "refused before it checked or trained"
    marker.unlink()
    assert first.wait(timeout=600) == 0, first.communicate()[0][-3000:]
    runs = sorted(sweep.glob("[0-9]_*"))
    assert [metrics(run)["status"] for run in runs] == ["completed", "completed"]


def test_a_refused_command_leaves_no_folder(sample_root, tmp_path):
    proc = cli(*train_args(sample_root, tmp_path, "optimizer.lr=-1")[3:], cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "optimizer.lr=-1" in proc.stderr
    assert not (tmp_path / "logs").exists()


def test_a_full_disk_is_one_paragraph_and_resume_finishes_the_run(sample_root, tmp_path, small_disk):
    run_dir = small_disk / "run"
    args = [*train_args(sample_root, tmp_path, *RUN, "model.net.hidden=64"), f"hydra.run.dir={run_dir}"]
    full = cli(*args[3:], cwd=tmp_path, check=False)
    output = full.stdout + full.stderr
    assert full.returncode == 1 and "Traceback" not in output, output[-3000:]
    assert "No space left on device (ENOSPC)" in output and "resume=true" in output
    assert output.count("could not write") == 1, output[-3000:]  # the first error, not a later one
    for ckpt in (run_dir / "checkpoints").glob("*.ckpt"):
        torch.load(ckpt, weights_only=True)  # whatever is there is whole
    assert not list(run_dir.rglob("*.partial"))
    # Space is freed: the same command with resume=true ends as the uninterrupted run.
    subprocess.run(["mount", "-o", "remount,size=20m", str(small_disk)], check=True)
    cli(*args[3:], "resume=true", cwd=tmp_path)
    uninterrupted = tmp_path / "uninterrupted"
    cli(*args[3:-1], f"hydra.run.dir={uninterrupted}", cwd=tmp_path)
    assert_same_run(metrics(run_dir), metrics(uninterrupted))


def test_a_folder_made_read_only_during_the_run(reference, sample_root, tmp_path):
    """At the end of epoch 0 a read-only file system is mounted over the run's checkpoints/ (hiding it):
    the next checkpoint write fails with EROFS. Unmounted, the run resumes from the checkpoint underneath."""
    run_dir = tmp_path / "run"
    args = [*train_args(sample_root, tmp_path, *RUN), f"hydra.run.dir={run_dir}"]
    marker = tmp_path / "marker"
    env = {**os.environ, "DIGITLAB_PAUSE_AT": "epoch_end:0", "DIGITLAB_PAUSE_MARKER": str(marker)}
    proc = subprocess.Popen(
        args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        time.sleep(0.01)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(run_dir / "checkpoints")]
    )
    if mounted.returncode != 0:
        proc.kill()
        pytest.skip("cannot mount a tmpfs here")
    try:
        marker.unlink()
        output = proc.communicate(timeout=300)[0]
    finally:
        subprocess.run(["umount", "-l", str(run_dir / "checkpoints")], check=False)
    assert proc.returncode == 1 and "Traceback" not in output, output[-3000:]
    assert "Read-only file system (EROFS)" in output and "resume=true" in output
    cli(*args[3:], "resume=true", cwd=tmp_path)
    assert_same_run(metrics(run_dir), reference)


STACK = ("optimizer.lr=0.05,0.1", "seed=0,1", "optimizer.momentum=0.9", "trainer.max_epochs=3")


@pytest.mark.slow  # 6 x three 4-job sweeps: minutes on 2 cores (make test-slow)
@pytest.mark.parametrize("launcher", ["basic", "stacked"])
@pytest.mark.parametrize(
    "point",
    ["mid_epoch:1", "mid_validation:1", "checkpoint_write:last.ckpt@1", "epoch_end:1", "before_metrics"],
)
def test_a_killed_sweep_resumes_to_the_uninterrupted_metrics(launcher, point, sample_root, tmp_path):
    def sweep_args(folder: Path) -> list[str]:
        return [
            "-m",
            *train_args(sample_root, tmp_path, *STACK)[3:],
            f"hydra/launcher={launcher}",
            f"hydra.sweep.dir={folder}",
        ]

    cli(*sweep_args(tmp_path / "uninterrupted"), cwd=tmp_path)
    killed = tmp_path / "killed"
    run_until_killed([sys.executable, "-m", "digitlab.cli.train", *sweep_args(killed)], point, tmp_path)
    cli(*sweep_args(killed), "resume=true", cwd=tmp_path)
    jobs = sorted(p.name for p in (tmp_path / "uninterrupted").glob("[0-9]_*"))
    assert len(jobs) == 4 and jobs == sorted(p.name for p in killed.glob("[0-9]_*"))
    for job in jobs:
        assert_same_run(metrics(killed / job), metrics(tmp_path / "uninterrupted" / job))


def test_a_stack_killed_before_its_trials_files_are_renamed_resumes_to_its_numbers(sample_root, tmp_path):
    """Killed at a stack's end with every trial's pictures and own checkpoints written under temporary
    names, none renamed into place (`atomic.together`): the trials' folders hold the stack's checkpoints as
    before, `resume=true` ends each trial with the uninterrupted sweep's numbers, and removes the temporary
    files the kill left."""

    def sweep_args(folder: Path) -> list[str]:
        return ["-m", *train_args(sample_root, tmp_path, *STACK)[3:], f"hydra.sweep.dir={folder}"]

    cli(*sweep_args(tmp_path / "uninterrupted"), "hydra/launcher=stacked", cwd=tmp_path)
    killed = tmp_path / "killed"
    args = [sys.executable, "-m", "digitlab.cli.train", *sweep_args(killed), "hydra/launcher=stacked"]
    run_until_killed(args, "trial_files_held", tmp_path)
    assert list(killed.rglob(f"*{PARTIAL}")) and not list(killed.rglob("pictures/*.png"))
    cli(*sweep_args(killed), "hydra/launcher=stacked", "resume=true", cwd=tmp_path)
    jobs = sorted(p.name for p in (tmp_path / "uninterrupted").glob("[0-9]_*"))
    assert len(jobs) == 4 and jobs == sorted(p.name for p in killed.glob("[0-9]_*"))
    runs = (killed, tmp_path / "uninterrupted")
    for job in jobs:
        assert_same_run(metrics(killed / job), metrics(tmp_path / "uninterrupted" / job))
        pictures = [sorted(p.name for p in (run / job / "pictures").glob("*.png")) for run in runs]
        assert pictures[0] and pictures[0] == pictures[1]
    assert not list(killed.rglob(f"*{PARTIAL}"))


@pytest.mark.parametrize(
    ("point", "standing"),
    [("checkpoint_write:last.ckpt@2", {"1/end"}), ("checkpoint_link:last.ckpt@2", {"2/end", "1/end"})],
)
def test_a_stack_killed_between_its_trials_checkpoints_resumes_each_to_its_numbers(
    point, standing, sample_root, tmp_path
):
    """Killed while the stack's checkpoint of epoch 2 is written: every trial stands at epoch 1. Killed as it
    is linked into the trials' folders, the first trial's last.ckpt is epoch 2's, the others' epoch 1's: they
    resume apart, each from its own point. Every trial ends with the uninterrupted sweep's numbers.
    `limit_train_batches` ends each epoch before the loader's end: the next epoch must start a new order, not
    the rest of this one."""
    overrides = (
        "model=mlp",
        "optimizer.lr=0.001,0.01,0.1,1",
        "data.batch_size=8",
        "+trainer.limit_train_batches=5",
        "trainer.max_epochs=4",
    )

    def sweep_args(folder: Path) -> list[str]:
        return [
            "-m",
            *train_args(sample_root, tmp_path, *overrides)[3:],
            "hydra/launcher=stacked",
            f"hydra.sweep.dir={folder}",
        ]

    cli(*sweep_args(tmp_path / "uninterrupted"), cwd=tmp_path)
    killed = tmp_path / "killed"
    run_until_killed(
        [sys.executable, "-m", "digitlab.cli.train", *sweep_args(killed)],
        point,
        tmp_path,
    )
    from digitlab.checkpoints import resume_checkpoint
    from digitlab.stacked.resume import resume_point

    jobs = sorted(p.name for p in killed.glob("[0-9]_*"))
    points = {resume_point(resume_checkpoint(killed / job)) for job in jobs}
    assert points == standing
    # One file per point, shared by the trials standing there; each trial's folder reads it as its own.
    lasts = [killed / job / "checkpoints" / "last.ckpt" for job in jobs]
    assert len({last.stat().st_ino for last in lasts}) == len(standing)
    for job, last in zip(jobs, lasts, strict=True):
        cfg, _, _ = build_from_checkpoint(last)
        assert cfg.optimizer.lr == Run(killed / job).setting("optimizer.lr")
    renamed = tmp_path / "copied" / "renamed"
    shutil.copytree(killed / jobs[-1], renamed)
    with pytest.raises(
        ConfigError,
        match=re.escape(f"({jobs[0]} ... {jobs[-1]}), shared by their run folders, and renamed is none"),
    ):
        build_from_checkpoint(renamed / "checkpoints" / "last.ckpt")
    cli(*sweep_args(killed), "resume=true", cwd=tmp_path)
    for job in jobs:
        resumed, reference = metrics(killed / job), metrics(tmp_path / "uninterrupted" / job)
        assert_same_run(resumed, reference)
        assert resumed["val/loss"] == pytest.approx(reference["val/loss"], abs=1e-6)


def test_resuming_keeps_the_interrupted_record_until_it_finishes(sample_root, tmp_path):
    """`metrics.json` of an interrupted run says so; a later copy of the folder resumes from it."""
    args = [*train_args(sample_root, tmp_path, *RUN), f"hydra.run.dir={tmp_path / 'run'}"]
    run_until_killed(args, "epoch_end:0", tmp_path, signal.SIGTERM)
    record = metrics(tmp_path / "run")
    assert record["status"] == "interrupted" and "SIGTERM" in record["error"] and record["epochs"] >= 1
    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    cli(*args[3:-1], f"hydra.run.dir={tmp_path / 'copy'}", "resume=true", cwd=tmp_path)
    assert metrics(tmp_path / "copy")["status"] == "completed"


def test_compare_lists_a_damaged_run_and_ranks_the_rest(sample_root, tmp_path, capsys):
    from digitlab.cli.compare import main as compare_main

    sweep = tmp_path / "sweep"
    cli(
        "-m",
        *tiny_overrides(sample_root, tmp_path, "optimizer.lr=0.05,0.1,0.2,0.4"),
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    jobs = sorted(sweep.glob("[0-9]_*"))
    (jobs[0] / "metrics.json").write_text('{"val/acc": 0.9, "sta')  # cut short
    (jobs[1] / "config.json").write_text("{")
    # Valid JSON, wrong types: a reader checks them against the record's schema, not only the syntax.
    record = json.loads((jobs[3] / "metrics.json").read_text())
    (jobs[3] / "metrics.json").write_text(json.dumps({**record, "val/acc_best": "0.97", "epochs": 2.5}))
    (events,) = jobs[2].glob("events.out.tfevents.*")
    events.write_bytes(events.read_bytes()[: events.stat().st_size // 2])  # an event file cut mid-record
    mine = tmp_path / "paper"
    mine.mkdir()
    (mine / "compare.md").write_text("my own table\n")
    code, proc = compare_main([str(sweep)]), capsys.readouterr()
    assert code == 0 and "Traceback" not in proc.out + proc.err, proc.err
    assert f"unreadable: {jobs[0]} (metrics.json: not valid JSON" in proc.out
    assert f"unreadable: {jobs[1]} (config: not valid JSON" in proc.out
    assert f"unreadable: {jobs[3]} (metrics.json: val/acc_best='0.97' is not a number)" in proc.out
    # The one readable run is ranked, and its row says which run it is (nothing else varies).
    assert f"| 1 | {jobs[2].name} | 1/1 | 0 | completed |" in proc.out, proc.out
    assert (sweep / "compare" / "val_acc_curves.png").stat().st_size > 0
    assert compare_main([str(sweep), "--metric", "val/accc"]) == 1
    # Compare never replaces a file it did not write; its own it may write again.
    assert compare_main([str(sweep), "--out", str(mine)]) == 1
    assert (mine / "compare.md").read_text() == "my own table\n" and not (mine / "compare.csv").exists()
    assert compare_main([str(sweep)]) == 0


def test_every_run_records_what_produced_it(reference, sample_root, tmp_path):
    cli(
        *train_args(sample_root, tmp_path, "trainer.max_epochs=1")[3:],
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    provenance = json.loads((tmp_path / "run" / "provenance.json").read_text())
    from importlib import metadata

    assert provenance["versions"]["torch"] == metadata.version("torch")
    assert provenance["host"] and "digitlab.cli.train" not in provenance["command"][0]
    assert any(arg.startswith("hydra.run.dir=") for arg in provenance["command"])
    code = provenance["code"]
    git = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
    )
    if git.returncode == 0:
        assert code["commit"] == git.stdout.strip()
        assert code["dirty"] == (tmp_path / "run" / "code.diff").exists()


def test_a_journal_cut_by_a_killed_worker_is_repaired_and_a_foreign_file_refused(sample_root, tmp_path):
    from tests.test_optuna import load, search

    cli(*search(sample_root, tmp_path, "hydra.sweeper.n_trials=2"), cwd=tmp_path)
    journal = tmp_path / "s" / "study.journal"
    journal.write_bytes(journal.read_bytes() + b'{"op_code": 5, "worker_id": "x", "trial_id"')  # cut short
    again = cli(*search(sample_root, tmp_path, "hydra.sweeper.n_trials=3"), cwd=tmp_path)
    assert "ended in a record cut short" in again.stdout + again.stderr
    (backup,) = (tmp_path / "s").glob("study.journal.damaged-*")
    assert backup.read_bytes().endswith(b'"trial_id"')
    assert len(load(tmp_path / "s").trials) == 3

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "study.journal").write_text("my notes, not a journal\n")
    proc = cli(*search(sample_root, tmp_path, study="mine"), cwd=tmp_path, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in output, output[-3000:]
    assert "is not an Optuna journal" in output
    dashboard = subprocess.run(
        [sys.executable, "-m", "digitlab.cli.dashboard", str(foreign), "--port", "1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert dashboard.returncode == 1 and "Traceback" not in dashboard.stderr, dashboard.stderr
    assert "is not an Optuna journal" in dashboard.stderr
    assert (foreign / "study.journal").read_text() == "my notes, not a journal\n"


def test_two_commands_on_one_run_folder_the_second_is_refused(reference, sample_root, tmp_path):
    """One writer per run folder: while a run trains, a second command on its folder is refused in one
    paragraph naming the folder and the process holding it, and writes nothing; the first ends as if alone.
    A killed run's lock dies with it: its resume=true is not refused."""
    run_dir = tmp_path / "run"
    args = [*train_args(sample_root, tmp_path, *RUN), f"hydra.run.dir={run_dir}"]
    marker = tmp_path / "paused"
    env = {**os.environ, "DIGITLAB_PAUSE_AT": "epoch_end:0", "DIGITLAB_PAUSE_MARKER": str(marker)}
    first = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()[0][-3000:]
        time.sleep(0.01)
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    second = cli(*args[3:], cwd=tmp_path, check=False)
    said = second.stdout + second.stderr
    assert second.returncode == 1 and "Traceback" not in said, said
    assert f"{run_dir} is in use" in said and f"pid {first.pid} on" in said, said
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before  # nothing written
    marker.unlink()
    assert first.wait(timeout=300) == 0
    assert_same_run(metrics(run_dir), reference)
    # A killed run's lock is gone with it.
    killed = tmp_path / "killed"
    killed_args = [*args[:-1], f"hydra.run.dir={killed}"]
    run_until_killed(killed_args, "epoch_end:1", tmp_path)
    cli(*killed_args[3:], "resume=true", cwd=tmp_path)
    assert_same_run(metrics(killed), reference)
