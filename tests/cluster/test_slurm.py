"""digitlab on a real SLURM cluster (`make test-cluster`): a single-node cluster with accounting started on
this machine by `slurm_up.sh` (slurmctld, slurmd, munge, slurmdbd with MariaDB), never a mock of it.

Kill and signal points are deterministic: a job waits at a `digitlab.faults` pause point (its marker file)
until the test has cancelled or signalled it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from tests.conftest import REPO, tiny_overrides

pytestmark = pytest.mark.cluster

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def slurm():
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("starting a SLURM cluster needs root and apt")
    subprocess.run(["bash", str(HERE / "slurm_up.sh")], check=True, capture_output=True, timeout=900)
    yield
    subprocess.run(["scancel", "--user", "root"], check=False)
    subprocess.run(["bash", str(HERE / "slurm_down.sh")], check=False, timeout=120)


def train(*args: str, cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "digitlab.cli.train", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=900,
    )
    if check and proc.returncode != 0:
        raise AssertionError(proc.stdout[-3000:] + proc.stderr[-3000:])
    return proc


def wait_for(path: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def jobs_of(sweep: Path) -> list[str]:
    """The SLURM job ids of a sweep (running or pending), from squeue (its submission script lives in the
    sweep folder)."""
    out = subprocess.run(["squeue", "-h", "-o", "%i %o"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if str(sweep) in line]


def start_requeued(job: str) -> None:
    """Once the job has requeued itself and its first run has ended (PENDING again), start it 2 s from now
    rather than after SLURM's requeue delay. Not at once: slurmd refuses a launch in the same second as the
    revocation of the job's previous credential ("Killing non-startable batch JobId=99: Job credential
    revoked", the job then FAILED), which is what that delay guards against."""
    deadline = time.monotonic() + 120
    while True:
        shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
        if "Restarts=1" in shown and "JobState=PENDING" in shown:
            break
        assert time.monotonic() < deadline, f"the job was not requeued: {shown}"
        time.sleep(0.5)
    subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now+2"], check=True)


def job_logs(sweep: Path) -> str:
    """The tails of a sweep's SLURM job logs (submitit's), for a failure's message: the job side's story."""
    return "".join(
        f"\n--- {log.relative_to(sweep)}\n{log.read_text(errors='replace')[-2000:]}"
        for log in sorted(sweep.glob(".submitit/*/*_log.*"))
    )


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_a_grid_runs_through_slurm_with_the_default_config(slurm, sample_root, tmp_path):
    sweep = tmp_path / "grid"
    proc = train(
        "-m",
        "hydra/launcher=slurm",
        *tiny_overrides(sample_root, tmp_path, "optimizer.lr=0.1,0.5"),
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    runs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    assert len(runs) == 2 and all(metrics(r)["status"] == "completed" for r in runs)
    assert (sweep / "compare" / "compare.md").is_file()
    script = next(sweep.glob(".submitit/*/*_submission.sh")).read_text()
    assert "--gpus-per-node=0" in script or "gpus" not in script  # no GPU asked for a CPU job
    assert "--cpus-per-task=2" in script and "--mem=4GB" in script
    assert "srun` command is available" not in proc.stdout + proc.stderr


def test_a_local_run_on_a_machine_with_srun_says_nothing_about_srun(slurm, sample_root, tmp_path):
    assert shutil.which("srun")
    proc = train(*tiny_overrides(sample_root, tmp_path, "trainer.max_epochs=1"), cwd=tmp_path)
    assert "srun" not in proc.stdout + proc.stderr


def test_a_request_the_cluster_refuses_is_one_paragraph(slurm, sample_root, tmp_path):
    proc = train(
        "-m",
        "hydra/launcher=slurm",
        "hydra.launcher.partition=no_such_partition",
        *tiny_overrides(sample_root, tmp_path, "optimizer.lr=0.1,0.5"),
        f"hydra.sweep.dir={tmp_path / 'refused'}",
        cwd=tmp_path,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in output, output[-3000:]
    assert "sbatch refused" in output and "invalid partition" in output.lower()


def test_a_job_signalled_before_its_time_limit_requeues_and_ends_as_one_uninterrupted_run(
    slurm, sample_root, tmp_path
):
    overrides = tiny_overrides(
        sample_root, tmp_path, "model=mlp", "optimizer.momentum=0.9", "trainer.max_epochs=3"
    )
    train(*overrides, f"hydra.run.dir={tmp_path / 'reference'}", cwd=tmp_path)
    marker = tmp_path / "paused"
    sweep = tmp_path / "requeued"
    env = {"DIGITLAB_PAUSE_AT": "mid_epoch:1", "DIGITLAB_PAUSE_MARKER": str(marker)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "digitlab.cli.train",
            "-m",
            "hydra/launcher=slurm",
            *overrides,
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(marker)
    (job,) = jobs_of(sweep)
    # What SLURM sends `signal_delay_s` ahead of the time limit (--signal=USR2@...), sent now.
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    marker.unlink()
    start_requeued(job)
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, output[-3000:] + job_logs(sweep)
    (run,) = [p.parent for p in sweep.glob("*/metrics.json")]
    resumed, reference = metrics(run), metrics(tmp_path / "reference")
    for key in ("status", "epochs", "steps", "val/acc", "val/acc_best"):
        assert resumed[key] == reference[key], key
    assert resumed["val/loss"] == pytest.approx(reference["val/loss"], rel=1e-5, abs=1e-7)


def test_a_cancelled_job_is_one_failed_trial_asked_again_and_the_search_goes_on(slurm, sample_root, tmp_path):
    marker = tmp_path / "paused"
    study_dir = tmp_path / "study"
    args = [
        "hparams_search=linear_lr",
        "hydra/launcher=slurm",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.study_name=cancel",
        *tiny_overrides(sample_root, tmp_path),
        f"hydra.sweep.dir={study_dir}",
    ]
    env = {"DIGITLAB_PAUSE_AT": "epoch_end:0", "DIGITLAB_PAUSE_MARKER": str(marker)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "digitlab.cli.train", *args],
        cwd=tmp_path,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(marker)
    jobs = sorted(jobs_of(study_dir))
    first = next(j for j in jobs if j.endswith("_0"))
    subprocess.run(["scancel", first], check=True)
    time.sleep(1)
    marker.unlink()
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0 and "Traceback" not in output, output[-3000:]
    study = optuna.load_study(
        study_name="cancel",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(study_dir / "study.journal"))
        ),
    )
    states = [t.state.name for t in study.trials]
    # The cancelled trial is FAIL and its parameters asked again, once: the study still ends with n_trials.
    assert states.count("FAIL") == 1 and states.count("COMPLETE") + states.count("PRUNED") == 3, states
    (cancelled,) = [t for t in study.trials if t.state.name == "FAIL"]
    assert (
        cancelled.user_attrs["stale"]
        and f"SLURM job {first} ended CANCELLED" in cancelled.user_attrs["stopped"]
    )
    assert [t.user_attrs.get("retry_of") for t in study.trials].count(cancelled.number) == 1
    assert f"SLURM job {first} ended CANCELLED" in output, output[-3000:]


def test_an_sbatch_array_of_workers_shares_one_study(slurm, sample_root, tmp_path):
    study_dir = tmp_path / "shared"
    command = " ".join(
        [
            sys.executable,
            "-m",
            "digitlab.cli.train",
            "hparams_search=linear_lr",
            "hydra.sweeper.n_trials=4",
            "hydra.sweeper.study_name=shared",
            *tiny_overrides(sample_root, tmp_path),
            f"hydra.sweep.dir={study_dir}",
        ]
    )
    out = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--array=0-1",
            "--cpus-per-task=1",
            "--mem=2G",
            f"--output={tmp_path}/w-%a.out",
            "--wait",
            f"--chdir={tmp_path}",
            "--wrap",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert out.returncode == 0, out.stderr + "".join(p.read_text() for p in tmp_path.glob("w-*.out"))[-3000:]
    study = optuna.load_study(
        study_name="shared",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(study_dir / "study.journal"))
        ),
    )
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == list(range(4)), numbers
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)


def test_an_optuna_search_prunes_trials_running_as_slurm_jobs(slurm, sample_root, tmp_path):
    from tests.test_optuna import LR_SEARCH, search

    train(
        *search(
            sample_root,
            tmp_path,
            "hydra/launcher=slurm",
            "hydra.sweeper.n_jobs=2",
            "trainer.max_epochs=4",
            "hydra.sweeper.n_trials=8",
            LR_SEARCH,
            "optimized_metric=val/loss",
            "hydra.sweeper.direction=minimize",
            "hydra/sweeper/pruner=median",
            "hydra.sweeper.pruner.n_startup_trials=2",
            "hydra.sweeper.pruner.n_warmup_steps=0",
            study="pruned",
        ),
        cwd=tmp_path,
    )
    study = optuna.load_study(
        study_name="pruned",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(tmp_path / "pruned" / "study.journal"))
        ),
    )
    states = [t.state.name for t in study.trials]
    assert len(states) == 8 and "PRUNED" in states and "COMPLETE" in states and "FAIL" not in states, states
    pruned = next(t for t in study.trials if t.state.name == "PRUNED")
    record = metrics(Path(pruned.user_attrs["run_dir"]))
    assert record["status"] == "pruned" and record["epochs"] == len(pruned.intermediate_values)


def test_a_job_that_reaches_its_time_limit_requeues_and_finishes_in_its_next_allocation(
    slurm, sample_root, tmp_path
):
    """The real thing: a 2-minute limit, SLURM's own warning 90 s ahead of it. The job waits at the end of
    epoch 1 until SLURM has warned it, so the warning lands mid-run whatever the machine's speed."""
    overrides = tiny_overrides(
        sample_root, tmp_path, "model=mlp", "optimizer.momentum=0.9", "trainer.max_epochs=3"
    )
    train(*overrides, f"hydra.run.dir={tmp_path / 'reference'}", cwd=tmp_path)
    marker = tmp_path / "paused"
    sweep = tmp_path / "limited"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "digitlab.cli.train",
            "-m",
            "hydra/launcher=slurm",
            "hydra.launcher.timeout_min=2",
            "hydra.launcher.signal_delay_s=90",
            *overrides,
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
        env={**os.environ, "DIGITLAB_PAUSE_AT": "epoch_end:1", "DIGITLAB_PAUSE_MARKER": str(marker)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(marker)
    deadline = time.monotonic() + 150
    while not any("Received SIGTERM" in log.read_text() for log in sweep.glob("*/train.log")):
        assert time.monotonic() < deadline, "SLURM never warned the job of its time limit"
        time.sleep(0.5)
    (job,) = jobs_of(sweep)
    marker.unlink()
    start_requeued(job)
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, output[-3000:] + job_logs(sweep)
    (run,) = [p.parent for p in sweep.glob("*/metrics.json")]
    resumed, reference = metrics(run), metrics(tmp_path / "reference")
    for key in ("status", "epochs", "steps", "val/acc", "val/acc_best"):
        assert resumed[key] == reference[key], key
    assert resumed["val/loss"] == pytest.approx(reference["val/loss"], rel=1e-5, abs=1e-7)


def test_a_job_that_waits_says_why_and_a_cancelled_job_fails_the_sweep_in_one_paragraph(
    slurm, sample_root, tmp_path
):
    sweep = tmp_path / "waiting"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "digitlab.cli.train",
            "-m",
            "hydra/launcher=slurm",
            "+hydra.launcher.additional_parameters={begin: now+1hour}",  # PENDING, reason BeginTime
            *tiny_overrides(sample_root, tmp_path),
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in proc.stdout:  # the launcher's own log, as the user sees it
        lines.append(line)
        if "is still PENDING after" in line:
            break
    assert "BeginTime" in lines[-1], "".join(lines)[-3000:]
    (job,) = jobs_of(sweep)
    subprocess.run(["scancel", job], check=True)
    output = "".join(lines) + proc.communicate(timeout=300)[0]
    assert proc.returncode == 1 and "Traceback" not in output, output[-3000:]
    assert (
        f"SLURM job {job}" in output
        and "CANCELLED" in output
        and "1 of the 1 jobs of this sweep failed" in output
    )


def test_an_array_worker_cancelled_mid_trial_gives_its_trial_back_and_the_array_again_finishes(
    slurm, sample_root, tmp_path
):
    """The README's recipe: an `sbatch --array` of workers on one journal study. `scancel` of one worker
    mid-trial (SIGTERM, as SLURM sends it): its trials (its continuous stack's slots) are FAIL with the reason
    and asked again once; the same array again ends the study with its n_trials finished."""
    study_dir = tmp_path / "shared"
    marker = tmp_path / "paused"
    train_command = " ".join(
        [
            sys.executable,
            "-m",
            "digitlab.cli.train",
            "hparams_search=linear_lr",
            "hydra.sweeper.n_trials=4",
            "hydra.sweeper.study_name=shared",
            *tiny_overrides(sample_root, tmp_path, "trainer.max_epochs=2"),
            f"hydra.sweep.dir={study_dir}",
        ]
    )
    # Task 0 waits mid-epoch in its first trial until the test has cancelled it; task 1 runs freely.
    pause = (
        f'if [ "$SLURM_ARRAY_TASK_ID" = 0 ]; then export DIGITLAB_PAUSE_AT=mid_epoch:0 '
        f"DIGITLAB_PAUSE_MARKER={marker}; fi; "
    )

    def array(wrap: str) -> subprocess.Popen:
        return subprocess.Popen(
            [
                "sbatch",
                "--parsable",
                "--array=0-1",
                "--cpus-per-task=1",
                "--mem=2G",
                f"--output={tmp_path}/w-%A-%a.out",
                "--wait",
                f"--chdir={tmp_path}",
                "--wrap",
                wrap,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )

    first = array(pause + train_command)
    wait_for(marker)
    job = first.stdout.readline().strip()
    subprocess.run(["scancel", f"{job}_0"], check=True)
    time.sleep(1)
    marker.unlink()  # let it go on to the signal
    first.communicate(timeout=600)
    logs = "".join(p.read_text() for p in tmp_path.glob(f"w-{job}-*.out"))
    assert "this worker was stopped" in logs and "Traceback" not in logs, logs[-3000:]
    again = array(train_command)
    _, err = again.communicate(timeout=600)
    logs = "".join(p.read_text() for p in tmp_path.glob("w-*.out"))
    assert again.returncode == 0, err + logs[-3000:]
    study = optuna.load_study(
        study_name="shared",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(study_dir / "study.journal"))
        ),
    )
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    # Each worker trains its trials in one continuous stack: every trial in the cancelled one's slots is given
    # back (at least the one it paused in).
    cancelled = [t for t in study.trials if t.state.name == "FAIL"]
    assert len(finished) == 4 and cancelled, [t.state.name for t in study.trials]
    for trial in cancelled:
        assert trial.user_attrs["stale"] and "SIGTERM" in trial.user_attrs["stopped"]
        assert [t.user_attrs.get("retry_of") for t in study.trials].count(trial.number) == 1
        assert trial.params in [t.params for t in finished]
