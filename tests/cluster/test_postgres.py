"""Several workers on one PostgreSQL database, sharing no folder (as on separate machines): a real server on
127.0.0.1 started by `postgres_up.sh`, never a mock of it."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from digitlab.sweeps.study import RETRY_OF
from tests.conftest import tiny_overrides

pytestmark = pytest.mark.cluster

HERE = Path(__file__).parent
SECRET = "digitlab-secret"


@pytest.fixture(scope="module")
def postgres():
    if os.geteuid() != 0:
        pytest.skip("starting a PostgreSQL server needs root")
    subprocess.run(
        ["bash", str(HERE / "postgres_up.sh"), "digitlab_test"], check=True, capture_output=True, timeout=600
    )
    yield "127.0.0.1:5433"
    subprocess.run(["bash", str(HERE / "postgres_down.sh")], check=False, timeout=120)


@pytest.fixture
def database(postgres, request):
    """An empty database of this test's own, and its URL with the password in it (as a user may type it)."""
    node = request.node.name.lower()
    name = f"t_{node[:30]}_{hashlib.sha1(node.encode()).hexdigest()[:8]}"  # parametrised tests differ late
    subprocess.run(["bash", str(HERE / "postgres_up.sh"), name], check=True, capture_output=True, timeout=120)
    return f"postgresql://digitlab:{SECRET}@{postgres}/{name}"


def worker(
    url: str, folder: Path, sample_root: Path, *extra: str, env: dict | None = None
) -> subprocess.Popen:
    """One `digitlab-train` search on the study `shared`, in a folder of its own."""
    args = [
        sys.executable,
        "-m",
        "digitlab.cli.train",
        "hparams_search=linear_lr",
        f"hydra.sweeper.storage={url}",
        "hydra.sweeper.study_name=shared",
        "hydra.sweeper.heartbeat_s=1",
        *tiny_overrides(sample_root, folder, f"hydra.sweep.dir={folder / 'study'}"),
        *extra,
    ]
    folder.mkdir(parents=True, exist_ok=True)
    clean = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
    return subprocess.Popen(
        args,
        cwd=folder,
        env={**clean, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def study_of(url: str) -> optuna.Study:
    return optuna.load_study(study_name="shared", storage=url)


def test_three_workers_started_at_once_on_an_empty_database_share_one_study(database, sample_root, tmp_path):
    procs = [
        worker(database, tmp_path / f"machine{i}", sample_root, "hydra.sweeper.n_trials=9") for i in range(3)
    ]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0 and "Traceback" not in output, output[-3000:]
        # No library warning for what digitlab does on purpose (its own trial heartbeat, Optuna's API).
        assert "Heartbeat of storage" not in output and "ExperimentalWarning" not in output, output[-3000:]
    study = study_of(database)
    numbers = sorted(t.number for t in study.trials)
    assert numbers == list(range(9)), numbers  # each number once, never more than n_trials
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
    workers = {t.user_attrs["worker"] for t in study.trials}
    assert len(workers) >= 2, workers
    params = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(params)) == len(params), "each worker draws from its own sampler stream"
    # Each machine's summary names where the best trial ran; compare lists every trial from the database.
    results = [
        (tmp_path / f"machine{i}" / "study" / "optimization_results.yaml").read_text() for i in range(3)
    ]
    assert all("best_trial_worker:" in r and "best_trial_run_dir:" in r for r in results)
    listed = subprocess.run(
        [sys.executable, "-m", "digitlab.cli.compare", "--study", database, "--study-name", "shared"],
        capture_output=True,
        text=True,
    )
    assert (
        listed.returncode == 0
        and listed.stdout.count("| complete |") + listed.stdout.count("| pruned |") == 9
    )
    assert str(tmp_path / "machine") in listed.stdout and SECRET not in listed.stdout
    # The password is in no log line and no file.
    assert all(SECRET not in output for output in outputs)
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert SECRET.encode() not in path.read_bytes(), path
    for output in outputs:
        assert "digitlab:***@" in output or SECRET not in output


@pytest.mark.parametrize("point", ["epoch_end:0", "trial_asked"])
def test_a_worker_killed_on_another_machine_has_its_trial_retried_once(
    point, database, sample_root, tmp_path
):
    """Killed mid-trial (its heartbeat goes stale: Optuna's own check), or between asking its trial and its
    first heartbeat (no heartbeat at all: found by the dead worker's own beats). One trial at a time, so
    the dead worker leaves exactly one (a continuous stack's kill: tests/test_continuous.py)."""
    marker = tmp_path / "paused"
    first = worker(
        database,
        tmp_path / "machine_a",
        sample_root,
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.n_jobs=1",
        env={"DIGITLAB_PAUSE_AT": point, "DIGITLAB_PAUSE_MARKER": str(marker)},
    )
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()[0][-3000:]
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)  # the machine is gone: no goodbye, its trial stays RUNNING
    first.wait()
    assert [t.state.name for t in study_of(database).trials] == ["RUNNING"]
    second = worker(
        database, tmp_path / "machine_b", sample_root, "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=1"
    )
    output = second.communicate(timeout=900)[0]
    assert second.returncode == 0 and "Traceback" not in output, output[-3000:]
    study = study_of(database)
    states = [t.state.name for t in study.trials]
    assert states.count("FAIL") == 1 and "RUNNING" not in states and len(states) == 4, states
    retries = [
        t for t in study.trials if t.system_attrs.get("failed_trial") == 0 or t.user_attrs.get(RETRY_OF) == 0
    ]
    # Killed before its parameters were sampled, the retry samples its own.
    assert len(retries) == 1 and retries[0].params == (study.trials[0].params or retries[0].params)
    assert retries[0].state.name in ("COMPLETE", "PRUNED")
