"""Real multiruns on a tiny synthetic MNIST_SAMPLE: job naming, launchers, resume, compare, HParams (Optuna
searches: test_optuna.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image

from digitlab.cli.compare import main as compare_main
from digitlab.rundir import find_runs
from tests.conftest import cli, tiny_overrides
from tests.tb import experiment, hparams, scalars


def job_dirs(sweep: Path) -> list[Path]:
    return sorted(
        (p for p in sweep.iterdir() if (p / ".hydra").is_dir()), key=lambda p: int(p.name.split("_")[0])
    )


@pytest.fixture(scope="module")
def lr_sweep(sample_root, tmp_path_factory) -> Path:
    """A 4-job multirun: 2 learning rates x 2 seeds, with the basic launcher."""
    tmp = tmp_path_factory.mktemp("sweep")
    sweep = tmp / "sweep"
    cli(
        "-m",
        *tiny_overrides(sample_root, tmp, "optimizer.lr=0.5,2.0", "seed=0,1", f"hydra.sweep.dir={sweep}"),
        cwd=tmp,
    )
    return sweep


def test_jobs_are_named_by_their_overrides(lr_sweep):
    names = [p.name for p in job_dirs(lr_sweep)]
    common = "data.batch_size=16,{},trainer.max_epochs=2"
    expected = [
        "optimizer.lr=0.5,seed=0",
        "optimizer.lr=0.5,seed=1",
        "optimizer.lr=2.0,seed=0",
        "optimizer.lr=2.0,seed=1",
    ]
    assert names == [f"{i}_" + common.format(e) for i, e in enumerate(expected)]
    assert all((p / "metrics.json").is_file() for p in job_dirs(lr_sweep))


def test_hparams_of_a_multirun_show_one_row_per_run(lr_sweep):
    rows = [hparams(job) for job in job_dirs(lr_sweep)]
    assert [(values["optimizer.lr"], values["seed"]) for values, _ in rows] == [
        (0.5, 0),
        (0.5, 1),
        (2.0, 0),
        (2.0, 1),
    ]
    assert all(len(scalars(job)["val/acc"]) == 2 for job in job_dirs(lr_sweep))


def test_the_sweeps_hparams_tab_shows_what_varies_then_the_metrics(lr_sweep):
    columns, metrics = experiment(lr_sweep / "compare" / "hparams")
    # TensorBoard shows an experiment's first five hparams by default: the seed is among them.
    assert columns == ["seed", "optimizer.lr", "experiment"]
    assert metrics == ["val/acc_best", "val/acc", "val/loss", "train/loss", "train/acc"]


def test_sweep_summary_groups_seeds(lr_sweep):
    table = [
        row for row in (lr_sweep / "compare" / "compare.md").read_text().splitlines() if row.startswith("|")
    ]
    assert table[0].startswith("| rank | optimizer.lr | runs | seeds | val/acc_best | val/acc |"), table[0]
    rows = [line.split(" | ") for line in table[2:]]
    assert sorted(row[1] for row in rows) == ["0.5", "2"] and all(
        row[2] == "2/2" and row[3] == "0,1" for row in rows
    )
    csv_lines = (lr_sweep / "compare" / "compare.csv").read_text().splitlines()
    assert len(csv_lines) == 3 and csv_lines[0].startswith(
        "rank,optimizer.lr,runs,seeds,val/acc_best,val/acc_best std,val/acc,"
    )
    with Image.open(lr_sweep / "compare" / "val_acc_curves.png") as png:
        assert png.size == (800, 450)
    with Image.open(lr_sweep / "compare" / "val_acc_best_vs_optimizer.lr.png") as png:
        assert png.size == (600, 400)


def test_compare_cli_writes_elsewhere_and_rejects_empty_dirs(lr_sweep, tmp_path, capsys):
    assert compare_main([str(lr_sweep), "--metric", "val/loss", "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "4 runs under" in out and "ranked by val/loss" in out
    assert (tmp_path / "cmp" / "compare.csv").is_file()
    (tmp_path / "empty").mkdir()
    assert compare_main([str(tmp_path / "empty")]) == 1
    assert "no digitlab runs under" in capsys.readouterr().err
    assert compare_main([str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_resume_skips_complete_jobs_and_runs_the_rest(sample_root, tmp_path):
    sweep = tmp_path / "sweep"
    overrides = tiny_overrides(
        sample_root, tmp_path, "optimizer.lr=0.5,1.0,2.0", f"hydra.sweep.dir={sweep}", "trainer.max_epochs=1"
    )
    cli("-m", *overrides, cwd=tmp_path)
    jobs = job_dirs(sweep)
    (jobs[1] / "metrics.json").unlink()  # as if job 1 had been interrupted
    before = {job: (job / "metrics.json").stat().st_mtime_ns for job in (jobs[0], jobs[2])}
    proc = cli("-m", *overrides, "resume=true", cwd=tmp_path)
    assert job_dirs(sweep) == jobs, "a resumed sweep reuses its job dirs"
    assert all((job / "metrics.json").stat().st_mtime_ns == mtime for job, mtime in before.items())
    assert (jobs[1] / "metrics.json").is_file()
    assert (
        proc.stdout.count("is complete (metrics.json exists); skipped")
        + proc.stderr.count("is complete (metrics.json exists); skipped")
        == 2
    )


def test_joblib_launcher_runs_jobs_in_parallel_processes(sample_root, tmp_path):
    sweep = tmp_path / "sweep"
    cli(
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *tiny_overrides(sample_root, tmp_path, "optimizer.lr=0.5,1.0", f"hydra.sweep.dir={sweep}"),
        cwd=tmp_path,
    )
    runs = find_runs(sweep)
    assert len(runs) == 2 and all(run.completed for run in runs)
    logs = " ".join((run.path / "train.log").read_text() for run in runs)
    assert "torch threads per job: 1" in logs  # 2 cores / 2 jobs


def test_submitit_local_launcher(sample_root, tmp_path):
    sweep = tmp_path / "sweep"
    cli(
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        *tiny_overrides(sample_root, tmp_path, "trainer.max_epochs=1", f"hydra.sweep.dir={sweep}"),
        cwd=tmp_path,
    )
    (run,) = find_runs(sweep)
    assert run.completed and (sweep / ".submitit").is_dir()


def test_each_job_of_a_sweep_is_checked_once(sample_root, tmp_path):
    """The sweep checks every job in its folder before the first trains; a job's task does not check it
    again (`job.run_checked_job`)."""
    proc = cli(
        "-m",
        "hydra.verbose=digitlab.job",  # each check of a job logged
        *tiny_overrides(sample_root, tmp_path, "optimizer.lr=0.1,1.0", "trainer.max_epochs=1"),
        f"hydra.sweep.dir={tmp_path / 's'}",
        cwd=tmp_path,
    )
    said = proc.stdout + proc.stderr
    folders = sorted(p for p in (tmp_path / "s").iterdir() if p.name[0].isdigit())
    assert len(folders) == 2 and said.count("job checked: ") == 2, said[-3000:]
    assert all(said.count(f"job checked: {folder}") == 1 for folder in folders)


def test_two_sweeps_started_together_get_their_own_dirs(sample_root, tmp_path):
    args = ["-m", *tiny_overrides(sample_root, tmp_path, "trainer.max_epochs=1")]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "digitlab.cli.train", *args],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    assert len(list((tmp_path / "logs" / "multiruns").iterdir())) == 2


def test_slurm_launcher_config_asks_for_what_the_job_needs():
    """A GPU only for a GPU job; modest CPUs and memory; requeue on SLURM's warning signal."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from digitlab.config.location import config_dir, register_resolvers

    register_resolvers()
    requests = {}
    for accelerator in ("cpu", "gpu", "ddp"):
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            cfg = compose(
                "config",
                overrides=[
                    "hydra/launcher=slurm",
                    "hydra.launcher.partition=gpu",
                    f"accelerator={accelerator}",
                ],
                return_hydra_config=True,
            )
        requests[accelerator] = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    cpu = requests["cpu"]
    assert cpu["_target_"].endswith("DigitlabSlurmLauncher") and cpu["partition"] == "gpu"
    assert cpu["gpus_per_node"] == 0 and cpu["cpus_per_task"] == 2 and cpu["mem_gb"] == 4
    assert requests["gpu"]["gpus_per_node"] == 1 and requests["ddp"]["gpus_per_node"] == 1
    assert cpu["max_num_timeout"] >= 1 and cpu["signal_delay_s"] > 0


def test_a_slurm_sweep_checks_each_jobs_machine_where_it_runs():
    """A GPU sweep submitted from a machine without one (a login node) is not refused there: the GPUs, cores
    and precision a job asks for are checked on its node; a local launcher checks them before any job."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from digitlab.config import checks
    from digitlab.config.location import config_dir, register_resolvers

    register_resolvers()
    where = {}
    for launcher in ("slurm", "basic", "stacked", "joblib"):
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            cfg = compose("config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
        where[launcher] = checks.runs_elsewhere(cfg)
    GlobalHydra.instance().clear()
    assert where == {"slurm": True, "basic": False, "stacked": False, "joblib": False}
