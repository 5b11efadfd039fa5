"""digitlab's Optuna sweeper, for real: searches on a tiny synthetic MNIST_SAMPLE through `digitlab-train`, the
study read back from its journal file, pruning, continuing and extending a study, a killed search, two
workers on one study, multi-objective search, the launchers, bad input, and optuna-dashboard over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from digitlab.errors import ConfigError
from digitlab.rundir import Run, find_runs
from digitlab.sweeps.search_space import parse_search_space
from digitlab.sweeps.study import JOURNAL, RETRY_OF, RUN_DIR, STALE, TENSORBOARD, WORKER
from tests import tb
from tests.conftest import cli, tiny_overrides
from tests.tb import scalars

LR_SEARCH = "optimizer.lr=tag(log, interval(0.001, 3.0))"  # a sweep typed on the command line joins the space


def search(sample_root: Path, tmp_path: Path, *extra: str, study: str = "s") -> list[str]:
    """A linear_lr search in tmp_path/<study>, one trial at a time unless `extra` sets the launcher or
    n_jobs (as shipped it is a continuous stack: tests/test_continuous.py)."""
    pinned = [
        override
        for override in ("hydra/launcher=basic", "hydra.sweeper.n_jobs=1")
        if not any(e.startswith(override.split("=")[0] + "=") for e in extra)
    ]
    return [
        "hparams_search=linear_lr",
        *pinned,
        f"hydra.sweeper.study_name={study}",
        *tiny_overrides(sample_root, tmp_path, f"hydra.sweep.dir={tmp_path / study}", *extra),
    ]


def load(study_dir: Path, name: str | None = None) -> optuna.Study:
    from digitlab.sweeps.study import open_storage

    storage = open_storage(study_dir)
    return optuna.load_study(study_name=name or study_dir.name, storage=storage)


def trial_dirs(study_dir: Path) -> dict[int, Path]:
    return {int(p.name.split("_")[0]): p for p in study_dir.iterdir() if p.name[0].isdigit()}


# The search-space language ----------------------------------------------------------------------------------


def test_search_space_reads_hydra_optuna_sweeper_syntax():
    space = parse_search_space(
        {
            "optimizer.lr": "tag(log, interval(0.01, 3.0))",
            "model.net.hidden": "choice(16, 30, 64)",
            "data.batch_size": "range(64, 257, step=64)",
            "optimizer.momentum": "range(0, 1, step=0.25)",
            "model.net.depth": "tag(int, interval(1, 3))",
        },
        ["hparams_search=mlp", "optimizer.momentum=0.9", "+tags=[a]"],
    )
    assert space.distributions == {
        "optimizer.lr": FloatDistribution(0.01, 3.0, log=True),
        "model.net.hidden": CategoricalDistribution((16, 30, 64)),
        "data.batch_size": IntDistribution(64, 256, step=64),  # Hydra's range excludes its stop
        "model.net.depth": IntDistribution(1, 3),
    }
    assert space.fixed == [
        "hparams_search=mlp",
        "optimizer.momentum=0.9",
        "+tags=[a]",
    ]  # the command line wins
    assert space.overrides({"optimizer.lr": 0.1, "model.net.hidden": 16})[:2] == [
        "optimizer.lr=0.1",
        "model.net.hidden=16",
    ]
    assert parse_search_space({"x": "choice(a, 'b c')"}, []).overrides({"x": "b c"}) == ["x=b\\ c"]
    assert parse_search_space({"x": "range(0, 1, step=0.25)"}, []).grid() == {"x": [0.0, 0.25, 0.5, 0.75]}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("interval(3, 1)", "'optimizer.lr=interval(3, 1)': an interval needs low < high."),
        ("tag(log, interval(0, 1))", "low > 0 on a log scale"),
        ("choice(", "'optimizer.lr=choice(' is not a search space Hydra can read"),
        ("range(5, 1)", "is an empty range"),
    ],
)
def test_bad_search_space_strings_are_named(value, message):
    with pytest.raises(ConfigError, match=None) as err:
        parse_search_space({"optimizer.lr": value}, [])
    assert message in str(err.value)


def with_search(tmp_path: Path, name: str, text: str) -> str:
    """A search config of the user's own (hparams_search=<name>), found through hydra.searchpath."""
    extra = tmp_path / "extra_conf" / "hparams_search"
    extra.mkdir(parents=True, exist_ok=True)
    (extra / f"{name}.yaml").write_text(text)
    return f"hydra.searchpath=[file://{extra.parent}]"


def test_a_bad_search_space_stops_before_any_trial(sample_root, tmp_path):
    searchpath = with_search(
        tmp_path,
        "bad",
        FAILING_SEARCH.replace("optimizer.lr: choice(0.5, 1e30, 0.1)", "optimizer.lr: 'interval(1,'"),
    )
    args = tiny_overrides(sample_root, tmp_path, f"hydra.sweep.dir={tmp_path / 's'}")
    proc = cli("hparams_search=bad", searchpath, *args, cwd=tmp_path, check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "'optimizer.lr=interval(1,' is not a search space Hydra can read" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "s").exists()


def test_hydra_discovers_the_sweeper_without_importing_optuna():
    code = (
        "import sys\n"
        "from hydra.core.plugins import Plugins\n"
        "from hydra.plugins.sweeper import Sweeper\n"
        "print([f'{c.__module__}.{c.__name__}' for c in Plugins.instance().discover(Sweeper)])\n"
        "print('optuna' in sys.modules)\n"
    )
    found, optuna_imported = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert "hydra_plugins.digitlab_optuna_sweeper.optuna_sweeper.OptunaSweeper" in found
    assert optuna_imported == "False", "plugin discovery (every Hydra start) must not pay for Optuna"


# One study, end to end ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pruned_study(sample_root, tmp_path_factory) -> Path:
    """8 trials minimizing val/loss over a wide lr range with a median pruner that may stop from epoch 0."""
    tmp = tmp_path_factory.mktemp("pruned")
    cli(
        *search(
            sample_root,
            tmp,
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
        cwd=tmp,
    )
    return tmp / "pruned"


def test_pruned_trials_stop_early_and_say_so_everywhere(pruned_study):
    study = load(pruned_study)
    states = [t.state for t in study.trials]
    assert len(states) == 8 and TrialState.PRUNED in states and TrialState.COMPLETE in states, states
    assert TrialState.FAIL not in states  # a pruned trial is not a failure
    dirs = trial_dirs(pruned_study)
    assert sorted(dirs) == list(range(8)), "a trial's folder is numbered by its trial number"
    for trial in study.trials:
        run = Run(dirs[trial.number])
        assert trial.user_attrs[RUN_DIR] == str(run.path) and trial.user_attrs[TENSORBOARD] == str(
            run.tensorboard
        )
        lr = trial.params["optimizer.lr"]
        assert f"optimizer.lr={lr:.4g}," in run.path.name, "the folder shows 4 significant digits"
        assert run.config["optimizer"]["lr"] == lr, "the run trains with the value drawn"
        assert sorted(trial.intermediate_values) == list(range(run.metrics["epochs"]))  # one report per epoch
        assert (run.checkpoints / "last.ckpt").is_file(), "a pruned run keeps its checkpoints"
        pruned = scalars(run.tensorboard)["trial/pruned"][-1]
        if trial.state == TrialState.PRUNED:
            assert run.status == "pruned" and run.metrics["epochs"] <= 4
            assert run.metrics["pruned_epoch"] == run.metrics["epochs"] - 1 and pruned == 1.0
            assert trial.value == pytest.approx(run.metrics["val/loss"])
        else:
            assert run.status == "completed" and run.metrics["epochs"] == 4 and pruned == 0.0
            assert trial.value == pytest.approx(run.metrics["val/loss"])
    epochs = [Run(dirs[t.number]).metrics["epochs"] for t in study.trials if t.state == TrialState.PRUNED]
    assert min(epochs) < 4, epochs
    best = study.best_trial
    results = (pruned_study / "optimization_results.yaml").read_text()
    assert f"best_trial: {best.number}" in results and str(best.value) in results


def test_compare_shows_status_and_ranks_pruned_trials_last(pruned_study):
    table = [
        r for r in (pruned_study / "compare" / "compare.md").read_text().splitlines() if r.startswith("|")
    ]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    statuses = [row.strip("|").split("|")[header.index("status")].strip() for row in table[2:]]
    assert set(statuses) == {"completed", "pruned"}
    assert statuses == sorted(statuses), "completed trials first, then the pruned ones"


def test_the_same_command_continues_the_study_and_a_larger_n_trials_extends_it(sample_root, tmp_path):
    args = search(sample_root, tmp_path, "trainer.max_epochs=1", LR_SEARCH)
    cli(*args, "hydra.sweeper.n_trials=2", cwd=tmp_path)
    first = {t.number: t.params for t in load(tmp_path / "s").trials}
    proc = cli(*args, "hydra.sweeper.n_trials=2", cwd=tmp_path)
    assert "Launching" not in proc.stdout + proc.stderr, "a study with n_trials trials runs nothing more"
    cli(*args, "hydra.sweeper.n_trials=4", cwd=tmp_path)
    study = load(tmp_path / "s")
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert {n: study.trials[n].params for n in first} == first
    assert sorted(trial_dirs(tmp_path / "s")) == [0, 1, 2, 3]
    assert study.user_attrs["workers"] == 3
    assert {t.user_attrs[WORKER] for t in study.trials[2:]} != {
        t.user_attrs[WORKER] for t in study.trials[:2]
    }


def test_any_optuna_storage_url_is_accepted(sample_root, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    cli(
        *search(
            sample_root,
            tmp_path,
            "trainer.max_epochs=1",
            LR_SEARCH,
            "hydra.sweeper.n_trials=2",
            f"hydra.sweeper.storage={url}",
        ),
        cwd=tmp_path,
    )
    study = optuna.load_study(study_name="s", storage=url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert not (tmp_path / "s" / JOURNAL).exists()


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def test_a_killed_search_leaves_its_running_trial_failed_and_asked_again(sample_root, tmp_path):
    args = search(sample_root, tmp_path, LR_SEARCH, "hydra.sweeper.n_trials=2")
    worker = subprocess.Popen(
        [sys.executable, "-m", "digitlab.cli.train", *args, "trainer.max_epochs=500"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        journal = tmp_path / "s" / JOURNAL
        # Killed once trial 0 reported an epoch and wrote its last.ckpt (after the report, at the epoch's
        # end): it is RUNNING in the study with checkpoints on disk.
        wait_for(
            lambda: (
                journal.is_file()
                and any(t.intermediate_values for t in load(tmp_path / "s").trials)
                and any((tmp_path / "s").glob("0_*/checkpoints/last.ckpt"))
            )
        )
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    (killed,) = load(tmp_path / "s").trials
    assert killed.state == TrialState.RUNNING
    again = cli(*args, "trainer.max_epochs=1", cwd=tmp_path)
    # the command changed: the retry does not continue the stale run (`sweeps.carry_over`)
    assert "trial 1 runs from its start: trial 0's run had other settings (trainer.max_epochs: 500 -> 1)" in (
        again.stdout + again.stderr
    )
    study = load(tmp_path / "s")
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    stale, retry, _ = study.trials
    assert stale.user_attrs[STALE] is True and retry.user_attrs[RETRY_OF] == 0
    assert retry.params == killed.params, "the killed trial's parameters are asked again"
    assert (Path(stale.user_attrs[RUN_DIR]) / "checkpoints" / "last.ckpt").is_file(), "nothing is lost"


def test_a_silent_worker_on_another_host_is_gone(tmp_path):
    """Heartbeats tell a dead worker anywhere: its running trial is failed and asked again; a live one's is not."""
    from omegaconf import OmegaConf
    from optuna.distributions import FloatDistribution as Float

    from digitlab.sweeps.study import HEARTBEAT, Worker, create_study, locate

    location = locate(OmegaConf.create({"study_name": "s", "storage": None}), tmp_path)
    study = create_study(location, ["minimize"], optuna.samplers.RandomSampler(seed=0))
    for worker, last_beat in (("elsewhere:1", time.time() - 600), ("alive:2", time.time())):
        trial = study.ask({"x": Float(0, 1)})
        trial.set_user_attr(WORKER, worker)
        study.set_user_attr(HEARTBEAT + worker, last_beat)
    worker = Worker(study, location, n_trials=10, heartbeat_s=1.0)
    try:
        assert worker.join() == 0
        time.sleep(1.5)
        own_beat = study.user_attrs[HEARTBEAT + worker.name]
        assert time.time() - own_beat < 1.5, "this worker beats while it runs"
    finally:
        worker.leave()
    dead, alive, retry = study.get_trials()
    assert (dead.state, alive.state, retry.state) == (TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING)
    assert dead.user_attrs[STALE] and retry.user_attrs[RETRY_OF] == 0
    assert retry.system_attrs["fixed_params"] == dead.params, "asked again with the same parameters"


def test_two_workers_share_one_study(sample_root, tmp_path):
    """The first worker waits in its first trial (a pause point, not a sleep) until the second has a trial of
    its own, so both run trials however slowly either starts."""
    args = search(sample_root, tmp_path, "trainer.max_epochs=1", LR_SEARCH, "hydra.sweeper.n_trials=6")
    marker = tmp_path / "paused"

    def start(env: dict) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "digitlab.cli.train", *args],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )

    first = start({"DIGITLAB_PAUSE_AT": "epoch_end:0", "DIGITLAB_PAUSE_MARKER": str(marker)})
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()[-2000:]
        time.sleep(0.05)
    second = start({})
    while len({t.user_attrs.get(WORKER) for t in load(tmp_path / "s").trials}) < 2:
        assert second.poll() is None and time.monotonic() < deadline, second.stderr.read()[-2000:]
        time.sleep(0.2)
    marker.unlink()  # the first worker goes on
    workers = [first, second]
    assert [w.wait(timeout=600) for w in workers] == [0, 0], [w.stderr.read()[-2000:] for w in workers]
    study = load(tmp_path / "s")
    assert [t.number for t in study.trials] == list(range(6)), "each trial number once, n_trials in all"
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    by_worker = {t.user_attrs[WORKER] for t in study.trials}
    assert len(by_worker) == 2 and study.user_attrs["workers"] == 2, "both workers ran trials"
    assert len({t.params["optimizer.lr"] for t in study.trials}) == 6, "seed + worker index: no repeats"
    assert sorted(trial_dirs(tmp_path / "s")) == list(range(6))


def test_multi_objective_search_finds_a_pareto_front(sample_root, tmp_path):
    cli(
        *search(
            sample_root,
            tmp_path,
            "trainer.max_epochs=1",
            "experiment=fastbook_mlp",
            LR_SEARCH,
            "model.net.hidden=choice(4, 16, 64)",
            "hydra.sweeper.n_trials=5",
            "optimized_metric=[val/loss,parameters]",
            "hydra.sweeper.direction=[minimize,minimize]",
        ),
        cwd=tmp_path,
    )
    study = load(tmp_path / "s")
    assert len(study.directions) == 2 and all(len(t.values) == 2 for t in study.trials)
    front = {t.number for t in study.best_trials}
    table = [
        r for r in (tmp_path / "s" / "compare" / "compare.md").read_text().splitlines() if r.startswith("|")
    ]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    assert {"pareto", "parameters"} <= set(header)
    marked = [row.strip("|").split("|")[header.index("pareto")].strip() for row in table[2:]]
    assert marked.count("yes") == len(front) and marked[: len(front)] == ["yes"] * len(front)
    assert "solutions:" in (tmp_path / "s" / "optimization_results.yaml").read_text()


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        (
            [
                "hydra.sweeper.direction=[minimize,minimize]",
                "optimized_metric=[val/loss,parameters]",
                "hydra/sweeper/pruner=median",
            ],
            "hydra/sweeper/pruner=median cannot prune a multi-objective study",
        ),
        (["hydra.sweeper.direction=[maximize,minimize]"], "optimized_metric=val/acc_best names 1 metric(s)"),
        (["hydra.sweeper.direction=upward"], "hydra.sweeper.direction='upward' is not a direction"),
        (["hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials=0 is not a whole number >= 1"),
        (["hydra/sweeper/sampler=grid"], "the grid sampler (hydra/sweeper/sampler=grid) needs finite values"),
        (
            ["hydra.sweeper.custom_search_space=nowhere.fn"],
            "custom_search_space='nowhere.fn' is not a function",
        ),
    ],
)
def test_bad_sweeper_settings_are_one_paragraph_before_any_trial(sample_root, tmp_path, typed, message):
    proc = cli(*search(sample_root, tmp_path, *typed), cwd=tmp_path, check=False)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "s").exists() or not trial_dirs(tmp_path / "s")


FAILING_SEARCH = """# @package _global_
defaults:
  - override /hydra/sweeper: optuna
optimized_metric: val/acc_best
hydra:
  mode: MULTIRUN
  sweeper:
    direction: maximize
    study_name: failing
    n_trials: 3
    n_jobs: 1
    max_failure_rate: 1.0
    sampler:
      seed: 0
    params:
      optimizer.lr: choice(0.5, 1e30, 0.1)
"""
# A trial that passes every check before the search and fails on its own: an lr of 1e30 makes the MLP's
# cross-entropy loss nan within the first epoch (the divergence guard ends its run).
DIVERGING = ("model=mlp", "loss=cross_entropy")


def test_a_failing_trial_is_fail_and_the_search_goes_on(sample_root, tmp_path):
    sweep = tmp_path / "study"
    proc = cli(
        "hparams_search=failing",
        with_search(tmp_path, "failing", FAILING_SEARCH),
        *tiny_overrides(
            sample_root, tmp_path, "trainer.max_epochs=1", f"hydra.sweep.dir={sweep}", *DIVERGING
        ),
        cwd=tmp_path,
    )
    output = proc.stdout + proc.stderr
    assert "training diverged" in output and "failed:" in output
    study = load(sweep, "failing")
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "COMPLETE", "FAIL"]
    runs = find_runs(sweep)
    assert len(runs) == 3 and sum(run.completed for run in runs) == 2
    results = (sweep / "optimization_results.yaml").read_text()
    assert "best_value" in results and "optimizer.lr" in results
    assert (sweep / "compare" / "compare.md").is_file()


def test_max_failure_rate_stops_the_search(sample_root, tmp_path):
    proc = cli(
        *search(
            sample_root,
            tmp_path,
            "optimizer.lr=choice(1e30)",
            *DIVERGING,
            "hydra.sweeper.max_failure_rate=0.0",
        ),
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 1 and "more than hydra.sweeper.max_failure_rate=0.0" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert [t.state for t in load(tmp_path / "s").trials] == [TrialState.FAIL]


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_pruning_reaches_jobs_in_other_processes(sample_root, tmp_path, launcher):
    extra = ["hydra.launcher.n_jobs=2"] if launcher == "joblib" else ["hydra.launcher.timeout_min=10"]
    cli(
        *search(
            sample_root,
            tmp_path,
            f"hydra/launcher={launcher}",
            *extra,
            "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.n_trials=4",
            "trainer.max_epochs=2",
            LR_SEARCH,
        ),
        cwd=tmp_path,
    )
    study = load(tmp_path / "s")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert all(sorted(t.intermediate_values) == [0, 1] for t in study.trials), "each job reported its epochs"
    assert all(Run(trial_dirs(tmp_path / "s")[t.number]).metrics["epochs"] == 2 for t in study.trials)


# The dashboard ----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_serves_the_newest_study_over_http_from_a_read_only_folder(pruned_study, read_only):
    """A reader never writes: the study served from a read-only mount (no lock, no repair)."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "digitlab.cli.dashboard",
            "--log-dir",
            str(read_only(pruned_study.parent)),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def get(path: str):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                return json.loads(response.read())

        def up() -> bool:
            try:
                get("/api/meta")
                return True
            except OSError:
                return False

        wait_for(up, timeout=60)
        (summary,) = get("/api/studies")["study_summaries"]
        assert summary["study_name"] == "pruned" and summary["directions"] == ["minimize"]
        detail = get(f"/api/studies/{summary['study_id']}")
        states = {trial["state"] for trial in detail["trials"]}
        assert len(detail["trials"]) == 8 and {"Complete", "Pruned"} <= states
        attrs = {a["key"] for a in detail["trials"][0]["user_attrs"]}
        assert {RUN_DIR, TENSORBOARD, WORKER} <= attrs
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_compare_reads_a_study_and_its_runs_in_a_read_only_folder(pruned_study, read_only, capsys):
    from digitlab.cli.compare import main

    view = read_only(pruned_study.parent) / pruned_study.name
    assert main(["--study", str(view)]) == 0
    listed = capsys.readouterr().out
    assert "8 trials of study 'pruned'" in listed and "pruned" in listed
    assert main([str(view), "--metric", "val/loss"]) == 0
    said = capsys.readouterr().out
    assert "ranked by val/loss" in said and "Not written: " in said and "pass --out" in said
    assert main([str(view), "--out", str(view / "elsewhere")]) == 1
    assert "--out" in capsys.readouterr().err


def test_a_reader_leaves_a_damaged_journal_as_it_found_it(pruned_study, tmp_path, capsys):
    """A journal whose last record was cut short (a worker killed mid-write) is read without that record;
    the file is not rewritten, no backup or lock file is made: only a command that trains repairs it."""
    from digitlab.cli.compare import main

    study = tmp_path / "study"
    study.mkdir()
    journal = study / JOURNAL
    journal.write_bytes((pruned_study / JOURNAL).read_bytes() + b'{"op_code": 5, "worker_id": "x", "tri')
    before = journal.read_bytes()
    assert main(["--study", str(study)]) == 0
    assert "8 trials of study 'pruned'" in capsys.readouterr().out
    assert journal.read_bytes() == before and sorted(p.name for p in study.iterdir()) == [JOURNAL]


def test_dashboard_names_what_is_not_a_study(tmp_path, capsys):
    from digitlab.cli.dashboard import main

    assert main([str(tmp_path / "nowhere")]) == 1
    assert "is not an Optuna study" in capsys.readouterr().err
    assert main(["--log-dir", str(tmp_path)]) == 1
    assert "no Optuna study under" in capsys.readouterr().err


def test_a_study_keeps_its_identity_and_reruns_a_trial_whose_folder_is_gone(sample_root, tmp_path):
    """Another search pointed at a study is refused, naming both; a trial whose run folder was deleted is
    reported when the study is continued, and run again under resume=true."""
    import shutil

    cli(*search(sample_root, tmp_path, "hydra.sweeper.n_trials=2"), cwd=tmp_path)
    journal = (tmp_path / "s" / "study.journal").read_bytes()
    other = [*search(sample_root, tmp_path, "hydra.sweeper.n_trials=3"), "optimized_metric=val/acc"]
    proc = cli(*other, cwd=tmp_path, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in output, output[-3000:]
    assert "belongs to another search" in output and "['val/acc']" in output and "study_name" in output
    wider = search(sample_root, tmp_path, "hydra.sweeper.n_trials=3", "optimizer.lr=interval(0.01, 100.0)")
    proc = cli(*wider, cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "search_space" in proc.stdout + proc.stderr
    assert (tmp_path / "s" / "study.journal").read_bytes() == journal, "the study was not written to"

    gone = trial_dirs(tmp_path / "s")[0]
    shutil.rmtree(gone)
    again = cli(*search(sample_root, tmp_path, "hydra.sweeper.n_trials=2"), cwd=tmp_path)
    assert (
        f"trial 0's run folder {gone} is gone; with resume=true it is run again"
        in again.stdout + again.stderr
    )
    assert len(load(tmp_path / "s").trials) == 2 and not gone.exists()
    resumed = cli(*search(sample_root, tmp_path, "hydra.sweeper.n_trials=2", "resume=true"), cwd=tmp_path)
    assert "asked again" in resumed.stdout + resumed.stderr
    study = load(tmp_path / "s")
    assert len(study.trials) == 3 and study.trials[2].params == study.trials[0].params
    assert (trial_dirs(tmp_path / "s")[2] / "metrics.json").is_file()


def test_workers_started_at_once_on_a_new_sqlite_file_share_one_study(sample_root, tmp_path):
    """Creating the tables of a new database races (`UNIQUE constraint failed: alembic_version`): every worker
    must come through, and the study hold each trial number once."""
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "digitlab.cli.train",
                *search(
                    sample_root,
                    tmp_path / f"w{i}",
                    "hydra.sweeper.n_trials=4",
                    f"hydra.sweeper.storage={url}",
                ),
            ],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(3)
    ]
    for proc in procs:
        output = proc.communicate(timeout=600)[0]
        assert proc.returncode == 0 and "Traceback" not in output, output[-3000:]
    study = optuna.load_study(study_name="s", storage=url)
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def test_a_worker_stopped_by_sigterm_gives_its_trial_back_and_the_next_worker_runs_it(sample_root, tmp_path):
    """`scancel` sends SIGTERM: the worker's trial is marked FAIL with the reason and its parameters asked
    again once; the worker stops (exit 1, one paragraph); the same command again finishes the study."""
    from tests.conftest import run_until_killed

    args = search(sample_root, tmp_path, "hydra.sweeper.n_trials=2", "trainer.max_epochs=2")
    command = [sys.executable, "-m", "digitlab.cli.train", *args]
    output = run_until_killed(command, "mid_epoch:0", tmp_path, signal.SIGTERM)
    assert "this worker was stopped" in output and "Traceback" not in output, output[-3000:]
    (stopped, again) = load(tmp_path / "s").trials
    assert stopped.state == TrialState.FAIL and stopped.user_attrs[STALE]
    assert "SIGTERM" in stopped.user_attrs["stopped"]
    assert again.state == TrialState.WAITING and again.user_attrs[RETRY_OF] == stopped.number
    assert again.system_attrs["fixed_params"] == stopped.params  # asked again with the same values
    cli(*args, cwd=tmp_path)
    trials = load(tmp_path / "s").trials
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(finished) == 2 and stopped.params in [t.params for t in finished]
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [stopped.number]


def test_a_trial_whose_worker_died_before_its_first_heartbeat_is_asked_again(sample_root, tmp_path):
    """On a database study, a worker killed between asking its trial and beating for it leaves a RUNNING
    trial Optuna's heartbeat check cannot see (it never beat): the next worker finds it by the dead worker's
    own beats, fails it and runs its parameters again, once; the study ends with n_trials finished."""
    from tests.conftest import run_until_killed

    url = f"sqlite:///{tmp_path / 'study.db'}"
    args = search(
        sample_root,
        tmp_path,
        "hydra.sweeper.n_trials=2",
        "trainer.max_epochs=1",
        f"hydra.sweeper.storage={url}",
    )
    run_until_killed([sys.executable, "-m", "digitlab.cli.train", *args], "trial_asked", tmp_path)
    (killed,) = optuna.load_study(study_name="s", storage=url).trials
    assert killed.state == TrialState.RUNNING
    cli(*args, cwd=tmp_path)
    trials = optuna.load_study(study_name="s", storage=url).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[0].user_attrs[STALE] is True
    retries = [
        t for t in trials if t.user_attrs.get(RETRY_OF) == 0 or t.system_attrs.get("failed_trial") == 0
    ]
    # Killed before its parameters were sampled: its retry samples them (a later kill keeps them, above).
    assert len(retries) == 1 and killed.params == {} and retries[0].params


def _storage_of(kind: str, tmp_path: Path) -> str:
    """The study's storage as the sweeper is told it, journal (in the sweep folder) or SQLite."""
    return f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite" else str(tmp_path / "s" / JOURNAL)


def _two_trials_beside(sample_root: Path, tmp_path: Path, storage: str) -> str:
    """A 2-trial search on `storage`, beating every second (grace: 4 s), beside another program's trial;
    its output."""
    args = search(
        sample_root,
        tmp_path,
        "hydra.sweeper.n_trials=2",
        "trainer.max_epochs=1",
        "hydra.sweeper.heartbeat_s=1",
        f"hydra.sweeper.storage={storage}",
    )
    proc = cli(*args, cwd=tmp_path)
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_a_trial_another_tool_left_running_with_no_heartbeat_is_asked_again(sample_root, tmp_path, kind):
    """A RUNNING trial that no worker claims and nothing beats for (here asked by another Optuna program
    that never tells it) is failed once a worker has watched it for the grace period (4 beats), and its
    parameters are asked again, once: the study ends with n_trials finished."""
    storage = _storage_of(kind, tmp_path)
    (tmp_path / "s").mkdir()
    from digitlab.sweeps.study import open_storage

    left = optuna.create_study(study_name="s", storage=open_storage(storage), direction="maximize")
    left.ask({"optimizer.lr": FloatDistribution(0.01, 10.0, log=True)})  # another tool, gone since
    output = _two_trials_beside(sample_root, tmp_path, storage)
    assert "trial 0 was left running by no digitlab worker" in output, output[-3000:]
    trials = optuna.load_study(study_name="s", storage=open_storage(storage)).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[0].user_attrs[STALE] is True
    assert trials[2].user_attrs[RETRY_OF] == 0 and trials[2].params == trials[0].params


def test_a_trial_another_tool_runs_with_optunas_heartbeat_is_left_to_it(sample_root, tmp_path):
    """The same trial, but its program beats for it (Optuna's heartbeat, on a database) and tells it after
    the grace period: the workers wait for it and never fail it."""
    import threading

    storage = _storage_of("sqlite", tmp_path)
    other = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    trial = other.ask({"optimizer.lr": FloatDistribution(0.01, 10.0, log=True)})
    done = threading.Event()

    def run_elsewhere() -> None:  # beats every 0.2 s for 20 s (grace: 4 s), then reports
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            other._storage.record_heartbeat(trial._trial_id)
            time.sleep(0.2)
        other.tell(trial, 0.5)
        done.set()

    elsewhere = threading.Thread(target=run_elsewhere)
    elsewhere.start()
    try:
        output = _two_trials_beside(sample_root, tmp_path, storage)
    finally:
        elsewhere.join()
    assert done.is_set() and "left running" not in output, output[-3000:]
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[0].value == 0.5 and STALE not in trials[0].user_attrs


@pytest.mark.parametrize(
    ("kind", "launcher"), [("journal", "basic"), ("sqlite", "basic"), ("journal", "stacked")]
)
def test_a_search_killed_after_its_runs_finished_records_them_and_trains_nothing_twice(
    sample_root, tmp_path, kind, launcher
):
    """Two trials at a time (a batch of the basic launcher, or two slots of a continuous stack); the search
    killed after a run wrote metrics.json, before it told the study: the same command records each finished
    run as its trial's outcome (its values as the job returned them), never fails or trains it again. One
    trial, one run folder, one row: 3 finished trials, 3 run folders."""
    from tests.conftest import run_until_killed

    storage = _storage_of(kind, tmp_path)
    args = search(
        sample_root,
        tmp_path,
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.n_jobs=2",
        f"hydra/launcher={launcher}",
        "trainer.max_epochs=1",
        f"hydra.sweeper.storage={storage}",
    )
    run_until_killed([sys.executable, "-m", "digitlab.cli.train", *args], "trial_ended", tmp_path)
    from digitlab.rundir import Run
    from digitlab.sweeps.study import open_storage

    def trials() -> list[optuna.trial.FrozenTrial]:
        return optuna.load_study(study_name="s", storage=open_storage(storage)).trials

    assert [t.state for t in trials()] == [TrialState.RUNNING, TrialState.RUNNING]
    finished = {n: Run(d).metrics for n, d in trial_dirs(tmp_path / "s").items() if Run(d).completed}
    assert 0 in finished, "killed as the first finished trial was to be told"
    again = cli(*args, cwd=tmp_path)
    said = again.stdout + again.stderr
    assert "after its run had finished: its outcome is recorded from" in said, said[-3000:]
    study = trials()
    complete = [t for t in study if t.state == TrialState.COMPLETE]
    assert len(complete) == 3 and not any(t.state == TrialState.PRUNED for t in study)
    for number, record in finished.items():
        trial = study[number]
        assert trial.state == TrialState.COMPLETE and not trial.user_attrs.get(STALE)
        assert trial.value == record["val/acc_best"]  # the run's own number, not trained again
    # A retry (of a run that had not finished) continues in its own folder; the stale one is gone.
    assert sorted(map(str, trial_dirs(tmp_path / "s").values())) == sorted(
        t.user_attrs[RUN_DIR] for t in complete
    )


@pytest.mark.parametrize("launcher", ["basic", "stacked"])
def test_the_last_report_never_prunes_a_trial(sample_root, tmp_path, launcher):
    """A pruner that stops every trial it may (a threshold no value reaches): with one epoch, each trial's
    only report is its last, so each trains its whole budget and is COMPLETE, ranked by its value; with two,
    each is pruned after epoch 0."""
    always = [
        "hydra/sweeper/pruner=none",
        "hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner",
        "+hydra.sweeper.pruner.lower=2.0",  # val/acc_best never reaches 2
    ]
    for epochs, state, status in ((1, TrialState.COMPLETE, "completed"), (2, TrialState.PRUNED, "pruned")):
        study = f"s{epochs}"
        cli(
            *search(
                sample_root,
                tmp_path,
                f"hydra/launcher={launcher}",
                "hydra.sweeper.n_jobs=2",
                "hydra.sweeper.n_trials=2",
                f"trainer.max_epochs={epochs}",
                *always,
                study=study,
            ),
            cwd=tmp_path,
        )
        trials = load(tmp_path / study).trials
        assert [t.state for t in trials] == [state] * 2, launcher
        records = [Run(trial_dirs(tmp_path / study)[t.number]).metrics for t in trials]
        assert [r["status"] for r in records] == [status] * 2
        for folder in trial_dirs(tmp_path / study).values():  # its pictures in its one event file
            assert len(list(folder.glob("events.out.tfevents.*"))) == 1, folder
            assert "pictures/confusion_matrix" in tb.load(folder).Tags()["images"]


def test_a_searchs_importance_is_optunas_own_over_its_completed_trials(sample_root, tmp_path):
    """compare on an Optuna search's folder gives the numbers `optuna.importance` gives for its study."""
    from digitlab.analysis.sweep_view import importance_views
    from digitlab.analysis.table import compare

    args = search(
        sample_root,
        tmp_path,
        LR_SEARCH,
        "model=mlp",
        "model.net.hidden=choice(4,8,16)",
        "hydra.sweeper.n_trials=10",
        "trainer.max_epochs=1",
        "hydra/sweeper/pruner=none",
    )
    cli(*args, cwd=tmp_path)
    study = load(tmp_path / "s")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(), normalize=True
        )
    (view,) = importance_views(compare(tmp_path / "s"))
    assert view.of_study and view.runs == 10 and view.found == pytest.approx(theirs)
    said = (tmp_path / "s" / "compare" / "compare.md").read_text()
    assert "Optuna's own, over the 10 completed trials of its study" in said
