"""The stacked launcher, for real: the same sweep run by the basic launcher and by `hydra/launcher=stacked`
on a tiny synthetic MNIST_SAMPLE gives every trial the same numbers (to float round-off) and the same run
dir; jobs that cannot be stacked run alone."""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import sys
from pathlib import Path

import pytest
import torch

from digitlab.api import compose_config
from digitlab.build import build_from_checkpoint
from digitlab.checkpoints import read_checkpoint
from digitlab.rundir import Run, find_runs
from digitlab.stacked.batches import StackedBatchSampler, shuffle_rows
from digitlab.stacked.grouping import stack_key
from digitlab.stacked.resume import resume_point
from digitlab.stacked.steps import StepPlan
from tests.conftest import cli, held_elsewhere, run_until_killed, tiny_overrides
from tests.tb import hparams, scalars, steps

SWEEP = ("optimizer.lr=0.5,2.0", "seed=0,1", "optimizer.momentum=0.5", "trainer.max_epochs=3")


@pytest.fixture(scope="module")
def sweeps(sample_root, tmp_path_factory) -> tuple[Path, Path]:
    """The same 2 lrs x 2 seeds sweep of the linear model and of a small MLP, basic and stacked."""
    tmp = tmp_path_factory.mktemp("stacked")
    out = []
    for launcher in ("basic", "stacked"):
        sweep = tmp / launcher
        cli(
            "-m",
            f"hydra/launcher={launcher}",
            "model=linear,mlp",
            *tiny_overrides(sample_root, tmp, *SWEEP, f"hydra.sweep.dir={sweep}"),
            cwd=tmp,
        )
        out.append(sweep)
    return out[0], out[1]


def by_name(sweep: Path) -> dict[str, Run]:
    return {run.path.name.split("_", 1)[1]: run for run in find_runs(sweep)}


def test_each_stacked_trial_equals_its_single_run(sweeps):
    basic, stacked = map(by_name, sweeps)
    assert sorted(basic) == sorted(stacked) and len(basic) == 8
    worst = 0.0
    for name, run in stacked.items():
        alone = basic[name].metrics
        assert run.metrics["stacked_with"] == 4 and run.status == "completed"
        for key in ("val/acc", "val/acc_3", "val/acc_7", "val/acc_macro", "val/acc_best"):
            assert run.metrics[key] == pytest.approx(alone[key], abs=1e-6), (name, key)
        for key in ("val/loss", "train/loss", "train/acc"):
            assert math.isclose(run.metrics[key], alone[key], rel_tol=1e-4, abs_tol=1e-7), (name, key)
            worst = max(worst, abs(run.metrics[key] - alone[key]))
        assert {k: run.metrics[k] for k in ("epochs", "steps")} == {k: alone[k] for k in ("epochs", "steps")}
    print(f"largest difference of a loss between stacked and single runs: {worst:.3g}")


def test_a_stacked_trial_leaves_the_run_dir_a_single_run_leaves(sweeps):
    basic, stacked = map(by_name, sweeps)
    for name, run in stacked.items():
        alone = basic[name]
        moved = json.dumps(run.config).replace(str(sweeps[1]), str(sweeps[0]))
        assert json.loads(moved) == alone.config, "the same config, but for where it lives"
        assert (run.hydra_dir / "overrides.yaml").read_text() == (
            alone.hydra_dir / "overrides.yaml"
        ).read_text()
        ours, theirs = scalars(run.tensorboard), scalars(alone.tensorboard)
        assert set(theirs) - {"trial/pruned"} <= set(ours)
        for tag in ("val/loss", "val/acc", "train/loss"):
            assert ours[tag] == pytest.approx(theirs[tag], rel=1e-4, abs=1e-7), (name, tag)
        # At the same steps, so that TensorBoard overlays a stacked trial's curve on its single run's.
        ours_at, theirs_at = steps(run.tensorboard), steps(alone.tensorboard)
        for tag in ("val/loss", "val/acc", "train/loss", "train/acc"):
            assert ours_at[tag] == theirs_at[tag], (name, tag, ours_at[tag], theirs_at[tag])
        assert ours_at["epoch"] == sorted(set(theirs_at["epoch"]))  # a single run logs it twice a step
        assert hparams(run.tensorboard)[0] == hparams(alone.tensorboard)[0]
        assert (run.checkpoints / "last.ckpt").is_file() and len(
            list(run.checkpoints.glob("epoch*.ckpt"))
        ) == 1


def test_stacked_checkpoints_load_as_any_runs(sweeps):
    _, stacked = sweeps
    run = find_runs(stacked)[0]
    cfg, datamodule, model = build_from_checkpoint(run.checkpoints / "last.ckpt")
    assert cfg.seed == run.setting("seed") and cfg.optimizer.lr == run.setting("optimizer.lr")
    datamodule.prepare_data()
    datamodule.setup()
    images, labels = datamodule.valid_set.images, datamodule.valid_set.labels
    with torch.no_grad():
        loss = model.loss(model(images), labels)
    assert float(loss) == pytest.approx(run.metrics["val/loss"], rel=1e-5)


def plain(value: object) -> object:
    return float(value) if isinstance(value, torch.Tensor) else value


def names(best_k_models: dict) -> dict[str, float]:
    return {Path(path).name: float(score) for path, score in best_k_models.items()}


def test_stacked_checkpoints_hold_what_a_single_runs_hold(sweeps):
    """Trial by trial, its last.ckpt has the single run's layout and state: the loops, its optimizer's state
    (momentum buffers), its ModelCheckpoint's state, the epoch and step."""
    basic, stacked = (by_name(sweep) for sweep in sweeps)
    for name, run in stacked.items():
        ours, theirs = (
            torch.load(r.checkpoints / "last.ckpt", weights_only=True) for r in (run, basic[name])
        )
        assert ours.keys() == theirs.keys()
        torch.testing.assert_close(ours["loops"], theirs["loops"])  # with the training order's generator
        assert ours["epoch"] == theirs["epoch"]
        assert torch.equal(
            ours["MnistSampleDataModule"]["train_order"]["generator"],
            theirs["MnistSampleDataModule"]["train_order"]["generator"],
        )
        assert ours["global_step"] == theirs["global_step"]
        (mine,), (single,) = ours["optimizer_states"], theirs["optimizer_states"]
        assert mine["param_groups"] == single["param_groups"]
        for index, state in single["state"].items():
            assert torch.allclose(
                mine["state"][index]["momentum_buffer"], state["momentum_buffer"], atol=1e-5
            )
        (key, mine), (other_key, single) = ours["callbacks"].popitem(), theirs["callbacks"].popitem()
        assert key == other_key and Path(mine["best_model_path"]).name == Path(single["best_model_path"]).name
        assert mine["dirpath"] == str(run.checkpoints)
        # The rest of its ModelCheckpoint's state as Lightning keeps it (a score only set on an improvement).
        for field in ("monitor", "best_model_score", "current_score", "kth_value"):
            assert plain(mine[field]) == plain(single[field]), field
        assert names(mine["best_k_models"]) == names(single["best_k_models"])
        assert Path(mine["kth_best_model_path"]).name == Path(single["kth_best_model_path"]).name
        assert ours["datamodule_hyper_parameters"] == theirs["datamodule_hyper_parameters"]
        # Its own weights only, not the stack's (its tensors are views of the stacked leaves while it trains).
        for path in run.checkpoints.glob("*.ckpt"):
            assert path.stat().st_size < 1.5 * (basic[name].checkpoints / "last.ckpt").stat().st_size, path


@pytest.mark.parametrize("top_k", [2, -1, 0])
def test_a_stacked_trial_keeps_the_checkpoints_its_single_run_keeps(sample_root, tmp_path, top_k):
    """`callbacks.model_checkpoint.save_top_k`, by Lightning's own rule in both: the same files per trial,
    the same scores, and each file the trial's own state at that epoch."""
    sweeps = []
    for launcher in ("basic", "stacked"):
        sweeps.append(tmp_path / launcher)
        cli(
            "-m",
            f"hydra/launcher={launcher}",
            f"callbacks.model_checkpoint.save_top_k={top_k}",
            "callbacks.model_checkpoint.monitor=val/loss",
            "callbacks.model_checkpoint.mode=min",
            "callbacks.model_checkpoint.filename='epoch{epoch:03d}'",  # no score: round-off never renames
            *tiny_overrides(sample_root, tmp_path, "optimizer.lr=0.5,4.0", "trainer.max_epochs=4"),
            f"hydra.sweep.dir={sweeps[-1]}",
            cwd=tmp_path,
        )
    basic, stacked = map(by_name, sweeps)
    assert sorted(basic) == sorted(stacked) and len(stacked) == 2
    assert {run.metrics.get("stacked_with") for run in stacked.values()} == {2}  # one stack, not alone
    for name, run in stacked.items():
        files = sorted(p.name for p in run.checkpoints.glob("*.ckpt"))
        assert files == sorted(p.name for p in basic[name].checkpoints.glob("*.ckpt")), name
        assert len(files) == {2: 3, -1: 5, 0: 1}[top_k]  # and last.ckpt
        state, alone = (
            next(
                v
                for k, v in read_checkpoint(r.checkpoints / "last.ckpt")["callbacks"].items()
                if "ModelCheckpoint" in k
            )
            for r in (run, basic[name])
        )
        assert names(state["best_k_models"]) == pytest.approx(names(alone["best_k_models"]), rel=1e-5)
        for file in files:
            ours, theirs = (read_checkpoint(r.checkpoints / file) for r in (run, basic[name]))
            assert ours["epoch"] == theirs["epoch"] and ours["global_step"] == theirs["global_step"], file


def test_resume_continues_a_stacked_trial_as_its_single_run(sweeps, tmp_path):
    """A stacked trial whose run stopped after its last checkpoint, resumed with resume=true, goes on exactly
    as the same single run resumed from its own."""
    basic, stacked = (by_name(sweep) for sweep in sweeps)
    name = next(n for n in stacked if "model=mlp" in n)
    finals = []
    for which, run in (("basic", basic[name]), ("stacked", stacked[name])):
        copy = tmp_path / which
        shutil.copytree(run.path, copy)
        (copy / "metrics.json").unlink()
        overrides = [line[2:] for line in (copy / ".hydra" / "overrides.yaml").read_text().splitlines()]
        proc = cli(*overrides, "trainer.max_epochs=5", "resume=true", f"hydra.run.dir={copy}", cwd=tmp_path)
        assert f"resume: continuing {copy}" in proc.stdout + proc.stderr
        finals.append(Run(copy).metrics)
    assert finals[0]["epochs"] == finals[1]["epochs"] == 5
    assert finals[1]["val/loss"] == pytest.approx(finals[0]["val/loss"], abs=1e-6)
    assert finals[1]["val/acc"] == finals[0]["val/acc"]


def test_compare_reads_a_stacked_sweep_unchanged(sweeps):
    basic, stacked = sweeps
    table = [
        row for row in (stacked / "compare" / "compare.md").read_text().splitlines() if row.startswith("|")
    ]
    assert table[0] == (basic / "compare" / "compare.md").read_text().splitlines()[0]
    assert len(table) == 2 + 4


def test_trials_keep_their_own_schedules(sample_root, tmp_path):
    """one_cycle, its max_lr following each trial's lr: each trial's own scheduler steps its param group."""
    sweeps = []
    for launcher in ("basic", "stacked"):
        sweeps.append(tmp_path / launcher)
        proc = cli(
            "-m",
            f"hydra/launcher={launcher}",
            "scheduler=one_cycle",
            "scheduler.pct_start=0.3,0.5",
            *tiny_overrides(sample_root, tmp_path, "optimizer.lr=0.5,2.0", f"hydra.sweep.dir={sweeps[-1]}"),
            cwd=tmp_path,
        )
    assert "lr_scheduler.step()" not in proc.stdout + proc.stderr  # no false alarm from PyTorch's order check
    basic, stacked = (by_name(sweep) for sweep in sweeps)
    assert len(stacked) == 4 and all(run.metrics["stacked_with"] == 4 for run in stacked.values())
    for name, run in stacked.items():
        for key in ("val/loss", "train/loss"):
            assert math.isclose(run.metrics[key], basic[name].metrics[key], rel_tol=1e-4, abs_tol=1e-7), (
                name,
                key,
            )


def test_jobs_that_cannot_stack_run_alone_and_say_why(sample_root, tmp_path):
    sweep = tmp_path / "sweep"
    proc = cli(
        "-m",
        "hydra/launcher=stacked",
        "model=linear,pixel_similarity",
        *tiny_overrides(sample_root, tmp_path, "trainer.max_epochs=1", f"hydra.sweep.dir={sweep}"),
        cwd=tmp_path,
    )
    output = proc.stdout + proc.stderr
    assert "#1 runs alone: model digitlab.model.pixel_similarity.PixelSimilarity is not trained" in output
    assert "#0 runs alone: no other job of this batch" in output
    runs = find_runs(sweep)
    assert len(runs) == 2 and all(run.completed and "stacked_with" not in run.metrics for run in runs)


def test_jobs_that_change_into_their_folders_run_alone(sample_root, tmp_path):
    """`hydra.job.chdir=true` puts each job in its own working folder, which one stacked fit cannot do."""
    proc = cli(
        "-m",
        "hydra/launcher=stacked",
        "hydra.job.chdir=true",
        *tiny_overrides(sample_root, tmp_path, "optimizer.lr=0.5,2.0", "trainer.max_epochs=1"),
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
    )
    output = proc.stdout + proc.stderr
    assert "#0 runs alone: hydra.job.chdir=true" in output and "stacked in one fit" not in output


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        (["experiment=fastbook_linear"], ""),
        (["experiment=fastbook_mlp", "optimizer=adam"], ""),
        (["experiment=fastbook_resnet18"], "cannot be vectorised exactly"),
        (["experiment=fastbook_baseline"], "is not trained by gradient descent"),
        (["scheduler=one_cycle"], ""),
        (["model.compile=true"], ""),
        (["callbacks/early_stopping=val_loss"], "run with single jobs only"),
        (["callbacks.model_checkpoint.monitor=val/loss", "callbacks.model_checkpoint.mode=min"], ""),
        (["callbacks.model_checkpoint.save_top_k=3"], ""),
        (["+callbacks.model_checkpoint.save_last=true"], "sets save_last"),
        (["callbacks.pictures.every_n_epochs=2"], "every_n_epochs=2"),
    ],
)
def test_which_configs_stack(overrides, why, tmp_path):
    cfg = compose_config([*overrides, f"paths.log_dir={tmp_path}"], tmp_path / "run")
    key, reason = stack_key(cfg)
    assert (key is not None) == (not why) and why in reason


def test_configs_differing_in_seed_and_optimizer_settings_share_a_key(tmp_path):
    """... and batch size, where the batch sizes share a micro-batch (the shipped 256 and 64, 128, 512)."""
    keys = {
        stack_key(compose_config([*o, f"paths.log_dir={tmp_path}"], tmp_path / str(i)))[0]
        for i, o in enumerate(
            [
                ["seed=0"],
                ["seed=3", "optimizer.lr=3.0"],
                ["optimizer.momentum=0.9", "optimizer.weight_decay=0.01"],
                ["data.batch_size=64"],
                ["data.batch_size=512"],
            ]
        )
    }
    assert len(keys) == 1
    for setting in ("data.batch_size=96", "callbacks.model_checkpoint.monitor=val/loss"):
        other = stack_key(compose_config([setting, f"paths.log_dir={tmp_path}"], tmp_path / "x"))[0]
        assert other not in keys, setting


def test_the_stacked_sampler_draws_what_each_trials_loader_draws():
    """Against PyTorch's own DataLoader(shuffle=True) order, epoch after epoch (read as Lightning reads it:
    exactly len(loader) batches, never the request after the last); a seed shared by trials is one row."""
    from torch.utils.data import DataLoader

    n, batch = 50, 16  # a partial last batch
    seeds = [0, 7, 0, 7, 3]
    rows = shuffle_rows(seeds)
    assert rows == [0, 1, 0, 1, 2]
    sampler = StackedBatchSampler(n, batch, [(0, True), (7, True), (3, True)])
    loaders = [
        DataLoader(range(n), batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(s))
        for s in seeds
    ]
    for _epoch in range(3):
        stacked = iter(sampler)
        singles = [iter(loader) for loader in loaders]
        for _ in range(len(sampler)):
            step = next(stacked)
            assert len(step) == 3
            assert [step[row].tolist() for row in rows] == [next(it).tolist() for it in singles]


def test_micro_batches_make_up_each_trials_own_batches():
    """Trials of batch sizes 4, 12 and 10 read micro-batches of 2 rows: each trial's consecutive micro-batches
    (r_k of them, fewer at its epoch's short end) are its own DataLoader's batches, epoch after epoch; its
    shuffle row is shared with the trials of its seed whose epochs end the same way."""
    from torch.utils.data import DataLoader

    n = 48
    trials = [(0, 4), (0, 12), (0, 10), (7, 4)]  # (seed, batch size); 48 rows by 10 end with a short batch
    plan = StepPlan(n, [batch for _, batch in trials])
    assert plan.micro == 2 and plan.per_step == [2, 6, 5, 2] and plan.steps_per_epoch == [12, 4, 5, 12]
    partial = [plan.partial_last(k) for k in range(len(trials))]
    rows = shuffle_rows([seed for seed, _ in trials], True, partial)
    assert partial == [False, False, True, False] and rows == [0, 0, 1, 2]
    orders = list(dict.fromkeys((seed, p) for (seed, _), p in zip(trials, partial, strict=True)))
    sampler = StackedBatchSampler(n, plan.micro, orders)
    loaders = [
        DataLoader(range(n), batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(seed))
        for seed, batch in trials
    ]
    for _epoch in range(3):
        micro = list(iter(sampler))
        assert len(micro) == plan.micro_per_epoch == 24
        for k, loader in enumerate(loaders):
            ends = [j + 1 for j in range(len(micro)) if plan.steps_after[j, k]]
            own = [
                torch.cat([m[rows[k]] for m in micro[a:b]]).tolist()
                for a, b in zip([0, *ends[:-1]], ends, strict=True)
            ]
            batches = iter(loader)  # read as Lightning reads it: never the request after the last batch
            assert own == [next(batches).tolist() for _ in range(len(loader))], k
    assert plan.weights[:, 2].tolist()[-4:] == [2 / 8] * 4  # the short last batch of 8 rows, 4 micro-batches


def test_the_batched_first_layer_computes_what_each_trial_computes():
    """Trials sharing shuffle orders read the shared rows once; the scores and the gradients equal each trial's
    own net's, whether the orders are shared evenly or not."""
    import functools
    import itertools

    from digitlab.loss import MnistLoss
    from digitlab.model.module import ClassifierModule
    from digitlab.model.nets import linear, mlp
    from digitlab.stacked.module import StackedClassifier

    nets = (linear, functools.partial(mlp, hidden=5, depth=2))
    for net, rows in itertools.product(nets, ([0, 1, 2, 0, 1, 2], [0, 0, 1, 2, 2, 2])):  # even, uneven
        trials = [
            ClassifierModule(net=net, loss=MnistLoss(), optimizer=functools.partial(torch.optim.SGD, lr=0.1))
            for _ in range(6)
        ]
        model = StackedClassifier(trials, on_epoch_metrics=lambda *_: None, shuffle_of=rows)
        images = torch.rand(3, 8, 1, 28, 28)
        scores = model(images)
        scores.sum().backward()
        model.net.hand_out_grads()  # each trial's gradient: a view of its row of the stacked one
        for k, trial in enumerate(trials):
            stacked_grads = [p.grad.clone() for p in trial.parameters()]
            trial.zero_grad()
            own = trial(images[rows[k]])
            own.sum().backward()
            assert torch.allclose(scores[k], own, atol=1e-6)
            assert torch.allclose(model(images[0])[k], trial(images[0]), atol=1e-6)  # one batch for all
            for stacked, single in zip(stacked_grads, (p.grad for p in trial.parameters()), strict=True):
                assert torch.allclose(stacked, single, atol=1e-5)


def test_metrics_json_is_valid_json_for_every_trial(sweeps):
    runs = find_runs(sweeps[1])
    assert len(runs) == 8
    for run in runs:
        record = json.loads((run.path / "metrics.json").read_text())
        assert record["status"] == "completed" and record["stacked_with"] == 4, record
        assert record["val/acc_best"] == max(record["val/acc_best"], record["val/acc"])


def test_under_optuna_a_batch_is_one_stack_and_a_pruned_trial_leaves_it(sample_root, tmp_path):
    from optuna.trial import TrialState

    from tests.test_optuna import load, search

    cli(
        *search(
            sample_root,
            tmp_path,
            "hydra/launcher=stacked",
            "hydra.sweeper.n_jobs=4",
            "hydra.sweeper.n_trials=8",
            "trainer.max_epochs=4",
            "optimizer.lr=tag(log, interval(0.001, 3.0))",
            "optimized_metric=val/loss",
            "hydra.sweeper.direction=minimize",
            "hydra/sweeper/pruner=median",
            "hydra.sweeper.pruner.n_startup_trials=2",
            "hydra.sweeper.pruner.n_warmup_steps=0",
        ),
        cwd=tmp_path,
    )
    study = load(tmp_path / "s")
    assert len(study.trials) == 8 and TrialState.FAIL not in {t.state for t in study.trials}
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, [t.state for t in study.trials]
    for trial in study.trials:
        run = Run(trial.user_attrs["run_dir"])
        assert run.metrics["stacked_with"] == 4
        assert sorted(trial.intermediate_values) == list(range(run.metrics["epochs"]))
        if trial.state == TrialState.PRUNED:
            assert run.status == "pruned" and run.metrics["pruned_epoch"] == run.metrics["epochs"] - 1
            assert scalars(run.tensorboard)["trial/pruned"][-1] == 1.0
        else:
            assert run.status == "completed" and run.metrics["epochs"] == 4
            assert trial.value == pytest.approx(run.metrics["val/loss"])


@pytest.mark.parametrize("every", [1, 4])
def test_a_diverging_trial_fails_alone_and_the_stack_goes_on(every, sample_root, tmp_path):
    """The trial leaves where its single run stops, with the divergence guard read every `every` steps."""
    guard = f"callbacks.stop_on_nonfinite_loss.check_every_n_steps={every}"
    sweep = tmp_path / "sweep"
    proc = cli(
        "-m",
        "hydra/launcher=stacked",
        f"hydra.sweep.dir={sweep}",
        *tiny_overrides(
            sample_root, tmp_path, "model=mlp", "loss=cross_entropy", "optimizer.lr=1e30,0.5", guard
        ),
        cwd=tmp_path,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert "2 trials stacked in one fit" in output
    assert re.search(
        r"the training loss became nan or inf at step \d+ \(epoch 0\): training diverged", output
    )
    diverged, fine = sorted(sweep.glob("[0-9]_*"))
    assert (
        json.loads((diverged / "metrics.json").read_text())["status"] == "failed"
        and (diverged / "checkpoints" / "interrupted.ckpt").is_file()
    )
    assert Run(fine).status == "completed" and math.isfinite(Run(fine).metrics["val/loss"])
    # It names the step its single run names, and left where the single run stopped: not at the epoch's end.
    alone = cli(
        *tiny_overrides(sample_root, tmp_path, "model=mlp", "loss=cross_entropy", "optimizer.lr=1e30", guard),
        f"hydra.run.dir={tmp_path / 'alone'}",
        cwd=tmp_path,
        check=False,
    )
    step = re.search(r"training loss became .* at step (\d+) \(epoch 0\)", alone.stdout + alone.stderr).group(
        1
    )
    assert f"at step {step} (epoch 0)" in output
    left = torch.load(diverged / "checkpoints" / "interrupted.ckpt", weights_only=True)
    stopped = torch.load(tmp_path / "alone" / "checkpoints" / "interrupted.ckpt", weights_only=True)
    assert left["global_step"] == stopped["global_step"] < 6, "the epoch has 6 steps: it left before its end"
    assert stopped["global_step"] == (int(step) if every == 1 else every)


def test_diverging_trials_of_different_batch_sizes_and_widths_leave_where_their_single_runs_stop(
    sample_root, tmp_path
):
    """Trials computed at their own widths and batch sizes (each on its whole batch when it steps): a trial
    whose loss stops being finite leaves at the step its single run names, whatever its batch size."""
    sweep = tmp_path / "sweep"
    sizes = ("optimizer.lr=1e30,0.5", "data.batch_size=6,10", "model.net.hidden=8,16")
    proc = cli(
        "-m",
        "hydra/launcher=stacked",
        f"hydra.sweep.dir={sweep}",
        *tiny_overrides(sample_root, tmp_path, "model=mlp", "loss=cross_entropy", *sizes),
        cwd=tmp_path,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert "8 trials stacked in one fit" in output
    runs = {run.path.name: run for run in find_runs(sweep)}
    diverged = sorted(name for name, run in runs.items() if run.status == "failed")
    assert len(diverged) == 4 and all("lr=1e+30" in name for name in diverged), sorted(runs)
    assert all(run.status == "completed" for name, run in runs.items() if name not in diverged)
    for batch, hidden in (("6", "8"), ("10", "16")):
        (name,) = [n for n in diverged if f"batch_size={batch}," in n and f"hidden={hidden}," in n]
        alone = tmp_path / f"alone_{batch}"
        proc = cli(
            *tiny_overrides(
                sample_root,
                tmp_path,
                "model=mlp",
                "loss=cross_entropy",
                "optimizer.lr=1e30",
                f"data.batch_size={batch}",
                f"model.net.hidden={hidden}",
            ),
            f"hydra.run.dir={alone}",
            cwd=tmp_path,
            check=False,
        )
        step = re.search(r"training loss became .* at step (\d+) \(epoch 0\)", proc.stdout + proc.stderr)
        left = torch.load(runs[name].checkpoints / "interrupted.ckpt", weights_only=True)
        stopped = torch.load(alone / "checkpoints" / "interrupted.ckpt", weights_only=True)
        assert left["global_step"] == stopped["global_step"] == int(step.group(1)), name
        # the step its single run names, in the trial's own line
        assert re.search(rf"at step {step.group(1)} \(epoch 0\)[^\n]*{re.escape(name)}", output), name


class CountingLoader:
    """Hydra's loader, counting the configs it composes."""

    def __init__(self, loader) -> None:
        self.loader, self.composed = loader, 0

    def load_sweep_config(self, master, overrides):
        self.composed += 1
        return self.loader.load_sweep_config(master, overrides)

    def __getattr__(self, name):
        return getattr(self.loader, name)


def test_the_launchers_config_cache_composes_what_hydra_composes(tmp_path):
    """Job by job, the sweepers' `SweepConfigCache` gives the config Hydra's own loader gives (its
    `hydra` node included) or Hydra's own error, and composes once per shape of override list."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from digitlab.config.location import config_dir
    from digitlab.sweeps.compose import SweepConfigCache

    lrs = [
        ["experiment=fastbook_linear", f"optimizer.lr={lr}", f"seed={s}"] for lr in (0.1, 3) for s in (0, 2)
    ]
    others = [
        ["experiment=fastbook_mlp", "optimizer.lr=0.3", "seed=1"],  # another group choice: another template
        ["experiment=fastbook_mlp", "optimizer.lr=1e-2", "seed=5"],
        ["optimizer.lr='0.5'", "data.batch_size=64", "trainer.max_epochs=2"],  # a quoted string
        ["optimizer.lr=${seed}", "seed=4"],  # an interpolation as the value
        ["optimizer.lr=0.2", "optimizer.lr=0.4"],  # a key set twice: the last wins
        ["optimizer.lr=0.2", "+optimizer.foo=1", "hydra.job.chdir=false"],  # +key and hydra.* go to Hydra
        ["model=mlp", "model.net.hidden=8", "optimizer.momentum=0.9"],
        ["optimizer=adam", "optimizer.betas=[0.8,0.9]", "optimizer.lr=0.01"],  # a list value
        ["optimizer.nope=1"],  # Hydra's error, either way
        ["optimizer.lr=fast"],
    ]
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        hydra_loader = GlobalHydra.instance().config_loader()
        master = hydra_loader.load_configuration(
            "config", ["hydra/launcher=stacked", f"hydra.sweep.dir={tmp_path}"], run_mode=RunMode.MULTIRUN
        )
        cache = SweepConfigCache(hydra_loader)
        for overrides in lrs + others:
            try:
                expected = OmegaConf.to_yaml(hydra_loader.load_sweep_config(master, overrides))
            except ConfigCompositionException as err:
                with pytest.raises(ConfigCompositionException) as raised:
                    cache.load_sweep_config(master, overrides)
                assert str(raised.value) == str(err), overrides
                continue
            assert OmegaConf.to_yaml(cache.load_sweep_config(master, overrides)) == expected, overrides
        counting = CountingLoader(hydra_loader)
        fresh = SweepConfigCache(counting)
        for overrides in lrs:
            fresh.load_sweep_config(master, overrides)
        assert counting.composed == 1
        # Asked again (the launcher after the sweeper's check), a job is the config composed the first time;
        # one the sweeper checked in its folder is not checked again.
        assert fresh.load_sweep_config(master, lrs[0]) is fresh.load_sweep_config(master, lrs[0])
        from digitlab.config.location import register_resolvers
        from digitlab.job import check_sweep

        register_resolvers()
        assert fresh.checked_config(master, lrs[0]) is None
        check_sweep(fresh, master, lrs[:2])
        assert fresh.checked_config(master, lrs[2]) is None and counting.composed == 1
        # What the launcher takes: each job's task config, resolved in its own folder, `hydra` left out.
        for overrides in lrs[:2]:
            task = fresh.checked_config(master, overrides)
            assert "hydra" not in task and not OmegaConf.is_missing(task.paths, "output_dir")
            assert (task.optimizer.lr, task.seed) == (0.1, int(overrides[2][len("seed=") :]))
            assert task.data.seed == task.seed and "${" not in OmegaConf.to_yaml(task)
            assert task.paths.output_dir.endswith(f"{lrs.index(overrides)}_{','.join(overrides)}")
    GlobalHydra.instance().clear()


@pytest.mark.parametrize(
    "net",
    [(), ("model=mlp", "model.net.hidden=4,8"), ("model=mlp", "data.batch_size=2,10")],
    ids=["linear", "mlp_of_two_widths", "mlp_of_two_batch_sizes"],
)
def test_a_stopped_stacked_sweep_keeps_every_trial_and_resume_finishes_it(net, sample_root, tmp_path):
    """SIGTERM mid-fit: every trial keeps interrupted.ckpt and no metrics.json; the same command with
    resume=true continues the trials from their last epoch as one stack, to the numbers each trial reaches
    resumed alone (the basic launcher on a copy). Trials of different widths alike, and of different batch
    sizes (micro-batches of 2: the SIGTERM at micro-batch 24 takes effect at 25, where the trial of 10
    rows steps, so every trial's interrupted.ckpt stands at its own step boundary)."""
    n = 4 if net else 2
    epochs = 8  # stopped in epoch 5 of 0-7: the resume trains epochs 5 to 7
    sweep = tmp_path / "sweep"
    args = [
        sys.executable,
        "-m",
        "digitlab.cli.train",
        "-m",
        "hydra/launcher=stacked",
        f"hydra.sweep.dir={sweep}",
        *tiny_overrides(
            sample_root,
            tmp_path,
            "optimizer.lr=0.001,0.003",  # small: still learning at the end, so the lr path shows
            "optimizer.momentum=0.5",  # state to carry over: momentum buffers and the schedule
            "scheduler=one_cycle",
            f"trainer.max_epochs={epochs}",
            "data.batch_size=2",
            *net,
        ),
    ]
    output = run_until_killed(args, "mid_epoch:5", tmp_path, signal.SIGTERM)  # far from the last epoch
    trials = sorted(sweep.glob("[0-9]_*"))
    assert len(trials) == n and f"{n} trials stacked in one fit" in output
    for trial in trials:
        assert (trial / "checkpoints" / "interrupted.ckpt").is_file()
        assert json.loads((trial / "metrics.json").read_text())["status"] == "interrupted"
        if "data.batch_size=2,10" in net:  # micro-batch 25 of epoch 5: 5 steps of 10 rows, or 25 of 2
            stood = read_checkpoint(trial / "checkpoints" / "interrupted.ckpt")["global_step"]  # its own
            assert stood == (5 * 10 + 5 if "batch_size=10" in trial.name else 5 * 48 + 25), trial.name
    # The same stopped sweep resumed one job at a time (each trial as a single run) and as a stack.
    alone = tmp_path / "alone"
    shutil.copytree(sweep, alone)
    points = {resume_point(trial / "checkpoints" / "last.ckpt") for trial in trials}
    resumes = {}
    for launcher, folder in (("basic", alone), ("stacked", sweep)):
        done = cli(
            *args[3:], "resume=true", f"hydra/launcher={launcher}", f"hydra.sweep.dir={folder}", cwd=tmp_path
        )
        resumes[launcher] = done.stdout + done.stderr
    # Stopped between two trials' last.ckpt writes, they stand at different epochs and resume apart.
    assert (f"{n} trials stacked in one fit" in resumes["stacked"]) == (len(points) == 1)
    for trial in trials:
        assert f"resume: continuing {trial}" in resumes["stacked"]
        metrics, single = Run(trial).metrics, Run(alone / trial.name).metrics
        steps = epochs * (10 if "batch_size=10" in trial.name else 48)  # 96 rows in batches of 2 or 10
        assert metrics["epochs"] == epochs and metrics["steps"] == steps and metrics["status"] == "completed"
        assert metrics["val/acc"] == single["val/acc"]
        # The losses are near 0 on this tiny set: the final weights say more.
        ours, theirs = (
            torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
            for run in (trial, alone / trial.name)
        )
        for name, weight in theirs.items():
            assert torch.allclose(ours[name], weight, rtol=1e-4, atol=1e-6), name


def both_ways(sample_root, tmp_path, *overrides: str, trials: int = 2) -> tuple[dict, dict]:
    """`optimizer.lr=0.5,2.0` with `overrides`, run by the basic launcher and stacked (checked to stack): each
    launcher's `metrics.json`s by run name."""
    finals = []
    for launcher in ("basic", "stacked"):
        sweep = tmp_path / launcher
        proc = cli(
            "-m",
            f"hydra/launcher={launcher}",
            f"hydra.sweep.dir={sweep}",
            *tiny_overrides(sample_root, tmp_path, *overrides, "optimizer.lr=0.5,2.0"),
            cwd=tmp_path,
        )
        finals.append({name: run.metrics for name, run in by_name(sweep).items()})
    assert f"{trials} trials stacked in one fit" in proc.stdout + proc.stderr
    return finals[0], finals[1]


def test_bf16_trials_stack_and_match_their_single_runs(sample_root, tmp_path):
    """trainer.precision=bf16-mixed stacks too; bf16 rounds each op's result, and the stack's batched matmul
    sums in another order than each run's own, so the match is to bf16's precision, not float32's."""
    basic, stacked = both_ways(sample_root, tmp_path, "model=mlp", "trainer.precision=bf16-mixed")
    for name, metrics in stacked.items():
        assert metrics["val/loss"] == pytest.approx(basic[name]["val/loss"], abs=2e-3)
        assert abs(metrics["val/acc"] - basic[name]["val/acc"]) <= 2 / 32  # 32 validation images


def test_a_trial_that_left_keeps_lr_zero_under_its_scheduler():
    """Leaving sets a trial's lr to 0; its scheduler (one_cycle sets the lr every step) must not undo that."""
    from digitlab.stacked.module import TrialSchedulers

    params = [torch.nn.Parameter(torch.zeros(3)) for _ in range(2)]
    own = [torch.optim.SGD([p], lr=0.1) for p in params]
    shared = torch.optim.SGD([o.param_groups[0] for o in own], lr=0.1)
    schedulers = TrialSchedulers(
        shared, [torch.optim.lr_scheduler.OneCycleLR(o, max_lr=1.0, total_steps=10) for o in own]
    )
    shared.param_groups[0]["lr"] = 0.0
    schedulers.stopped.add(0)
    before = shared.param_groups[1]["lr"]
    for _ in range(3):
        for optimizer in own:  # no gradients: nothing moves, but each schedule steps in PyTorch's order
            optimizer.step()
        schedulers.step()
    assert shared.param_groups[0]["lr"] == 0.0 and shared.param_groups[1]["lr"] > before


@pytest.mark.slow
def test_compiled_trials_stack_and_equal_their_compiled_single_runs(sample_root, tmp_path):
    """model.compile=true: the stack compiles its one net (StackedNet) as a single run compiles its own, and
    each trial still equals its (compiled) single run to float round-off."""
    basic, stacked = both_ways(sample_root, tmp_path, "model=mlp", "model.compile=true")
    for name, metrics in stacked.items():
        assert metrics["val/loss"] == pytest.approx(basic[name]["val/loss"], abs=1e-6)
        assert metrics["val/acc"] == basic[name]["val/acc"]


def test_a_stacked_jobs_hydra_files_and_log_are_a_single_jobs(sweeps):
    """`.hydra/config.yaml` and `overrides.yaml` hold what Hydra's `run_job` writes for the same job (read as
    data: libyaml folds long strings its own way); the stack's log is every trial's `train.log`."""
    import yaml

    basic, stacked = map(by_name, sweeps)
    for name, run in stacked.items():
        alone = basic[name]
        for file in ("config.yaml", "overrides.yaml"):
            ours = (run.hydra_dir / file).read_text().replace(str(sweeps[1]), str(sweeps[0]))
            assert yaml.safe_load(ours) == yaml.safe_load((alone.hydra_dir / file).read_text()), (name, file)
        hydra = yaml.safe_load((run.hydra_dir / "hydra.yaml").read_text())["hydra"]
        assert hydra["runtime"]["output_dir"] == str(run.path)
        assert hydra["overrides"]["task"] == yaml.safe_load((run.hydra_dir / "overrides.yaml").read_text())
    logs = {(run.path / "train.log").stat().st_ino for run in stacked.values()}
    assert len(logs) == 2, "one log per stack (linear, mlp), linked into each trial's folder"
    text = next(iter(stacked.values())).path.joinpath("train.log").read_text()
    assert "4 trials stacked in one fit" in text and "weights_only" not in text


PROBE = '''
import json
from pathlib import Path

from hydra.experimental.callback import Callback


class Probe(Callback):
    """Writes, per job, what it saw when the job started and ended."""

    def on_job_start(self, config, **kwargs):
        out = Path(config.hydra.runtime.output_dir)
        self._write(out, "start", {"metrics_json": (out / "metrics.json").exists(), "hydra_config": (out / ".hydra" / "config.yaml").is_file()})

    def on_job_end(self, config, job_return, **kwargs):
        out = Path(config.hydra.runtime.output_dir)
        self._write(out, "end", {
            "metrics_json": (out / "metrics.json").exists(),
            "status": job_return.status.name,
            "value": job_return.return_value,
            "overrides": list(job_return.overrides),
        })

    @staticmethod
    def _write(out, when, seen):
        (out.parent / f"{out.name}.{when}.json").write_text(json.dumps(seen))
'''


def test_hydra_job_callbacks_fire_around_the_stacked_fit(sample_root, tmp_path, monkeypatch):
    """A user's Hydra callback sees each stacked job start before it trains and end after, with the
    JobReturn a single job would give it (status, the optimized value, its overrides)."""
    (tmp_path / "probe_callback.py").write_text(PROBE)
    monkeypatch.syspath_prepend(str(tmp_path))  # where the user's callback module is importable from
    sweep = tmp_path / "sweep"
    cli(
        "-m",
        "hydra/launcher=stacked",
        "+hydra.callbacks.probe._target_=probe_callback.Probe",
        *tiny_overrides(sample_root, tmp_path, "optimizer.lr=0.5,2.0", f"hydra.sweep.dir={sweep}"),
        cwd=tmp_path,
    )
    runs = find_runs(sweep)
    assert len(runs) == 2
    for run in runs:
        start = json.loads((sweep / f"{run.path.name}.start.json").read_text())
        end = json.loads((sweep / f"{run.path.name}.end.json").read_text())
        assert start == {"metrics_json": False, "hydra_config": True}
        assert end["metrics_json"] and end["status"] == "COMPLETED"
        assert end["value"] == pytest.approx(run.metrics["val/acc_best"])
        assert any(o.startswith("optimizer.lr=") for o in end["overrides"])


@pytest.mark.parametrize(
    "settings",
    [
        [{"lr": lr} for lr in (0.01, 0.3, 1.0, 7.0)],
        [
            {"lr": 0.1, "momentum": 0.9},
            {"lr": 0.5, "momentum": 0.0, "dampening": 0.3},
            {"lr": 0.2, "momentum": 0.5, "dampening": 0.1, "weight_decay": 1e-3},
            {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2},
        ],
    ],
)
def test_stacked_sgd_steps_each_trial_as_its_own_sgd_does(settings):
    """Bit for bit, over several steps, with each trial's own settings; its state is the stock format, and a
    StackedSGD loaded from it goes on as the stock optimizer does."""
    from digitlab.stacked.optim import StackedSGD

    k = len(settings)
    torch.manual_seed(0)
    start = [(torch.randn(3, 5), torch.randn(3)) for _ in range(k)]
    grads = [[(torch.randn(3, 5), torch.randn(3)) for _ in range(k)] for _ in range(4)]
    rows = [2, 0, 3, 1]  # row j of the leaves is trial rows[j]

    stock = [[torch.nn.Parameter(w.clone()), torch.nn.Parameter(b.clone())] for w, b in start]
    stock_sgd = [torch.optim.SGD(params, **s) for params, s in zip(stock, settings, strict=True)]
    leaf_w = torch.nn.Parameter(torch.stack([start[t][0] for t in rows]))
    leaf_b = torch.nn.Parameter(torch.stack([start[t][1] for t in rows]))
    own = [[torch.nn.Parameter(torch.empty(0)), torch.nn.Parameter(torch.empty(0))] for _ in range(k)]
    for j, t in enumerate(rows):
        own[t][0].data, own[t][1].data = leaf_w.data[j], leaf_b.data[j]
    groups = [torch.optim.SGD(params, **s).param_groups[0] for params, s in zip(own, settings, strict=True)]
    stacked = StackedSGD(
        groups, {}, [(leaf_w, [own[t][0] for t in rows]), (leaf_b, [own[t][1] for t in rows])], rows
    )

    def step(step_grads):
        for sgd, params, (gw, gb) in zip(stock_sgd, stock, step_grads, strict=True):
            params[0].grad, params[1].grad = gw.clone(), gb.clone()
            sgd.step()
        leaf_w.grad = torch.stack([step_grads[t][0] for t in rows])
        leaf_b.grad = torch.stack([step_grads[t][1] for t in rows])
        stacked.step()

    for step_grads in grads[:2]:
        step(step_grads)
    for t in range(k):
        assert torch.equal(own[t][0], stock[t][0]) and torch.equal(own[t][1], stock[t][1]), t
        theirs, ours = stock_sgd[t].state_dict(), stacked.state_dict()
        mine = {i: ours["state"][2 * t + i] for i in range(2) if 2 * t + i in ours["state"]}
        assert set(mine) == set(theirs["state"])
        for i, state in theirs["state"].items():
            assert torch.equal(mine[i]["momentum_buffer"], state["momentum_buffer"])
    saved = stacked.state_dict()
    stacked.load_state_dict(saved)  # as a resumed stack loads it
    for step_grads in grads[2:]:
        step(step_grads)
    for t in range(k):
        assert torch.equal(own[t][0], stock[t][0]) and torch.equal(own[t][1], stock[t][1]), t


def test_trials_of_different_widths_stack_and_match_their_single_runs(sample_root, tmp_path):
    """`model.net.hidden` may differ within a stack (each trial in the widest one's shape, zeros around it):
    each trial's numbers are its single run's, its checkpoint holds its own width, and it loads as any run's."""
    basic, stacked = both_ways(
        sample_root,
        tmp_path,
        "model=mlp",
        "model.net.hidden=8,16",
        "optimizer.momentum=0.5",
        "seed=0,1",
        trials=8,
    )
    assert len(stacked) == 8 and sorted(stacked) == sorted(basic)
    for name, metrics in stacked.items():
        assert metrics["stacked_with"] == 8
        assert metrics["val/acc"] == pytest.approx(basic[name]["val/acc"], abs=1e-6), name
        assert math.isclose(metrics["val/loss"], basic[name]["val/loss"], rel_tol=1e-4, abs_tol=1e-7), name
        assert metrics["parameters"] == basic[name]["parameters"]
    for run in find_runs(tmp_path / "stacked"):
        hidden = 8 if "hidden=8" in run.path.name else 16
        weights = torch.load(run.checkpoints / "last.ckpt", weights_only=True)["state_dict"]
        assert weights["net.1.weight"].shape == (hidden, 28 * 28) and weights["net.3.weight"].shape == (
            1,
            hidden,
        )
        _, _, model = build_from_checkpoint(run.checkpoints / "last.ckpt")
        assert model.net[1].out_features == hidden


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_trials_of_a_stock_optimizer_stack_and_match_their_single_runs(optimizer, sample_root, tmp_path):
    """Optimizers other than SGD step the stock way on each trial's parameters (views of the stacked leaves),
    each given its gradient (`StackedNet.hand_out_grads`), to its single run's numbers."""
    basic, stacked = both_ways(
        sample_root,
        tmp_path,
        "model=mlp",
        f"optimizer={optimizer}",
        "model.net.hidden=8,16",
        "data.batch_size=6,10",  # each trial steps its own Adam at its own batches' ends
        trials=8,
    )
    for name, metrics in stacked.items():
        assert metrics["val/acc"] == pytest.approx(basic[name]["val/acc"], abs=1e-6), name
        assert math.isclose(metrics["val/loss"], basic[name]["val/loss"], rel_tol=1e-4, abs_tol=1e-7), name


def test_trials_of_different_batch_sizes_stack_and_match_their_single_runs(sample_root, tmp_path):
    """`data.batch_size` may differ within a stack: the stack reads micro-batches (here of 2 rows) and each
    trial, computed at its own width, is computed on its own batch when its micro-batches make it up, and
    steps on its own schedule, its epoch's short last batch (96 rows by 10) and its momentum and one-cycle
    schedule included, so its numbers, steps and checkpoints are its single run's."""
    basic, stacked = both_ways(
        sample_root,
        tmp_path,
        "model=mlp",
        "model.net.hidden=8,16",
        "data.batch_size=6,10",
        "optimizer.momentum=0.5",
        "scheduler=one_cycle",
        "seed=0,1",
        trials=16,
    )
    assert len(stacked) == 16 and sorted(stacked) == sorted(basic)
    # Each trial's wall_time_s is its own cost: its share of each of the stack's epochs by the steps it took
    # (16 or 10 an epoch here), not the whole stack's time (metrics.json rounds it to the millisecond).
    from tests.tb import steps

    for run in find_runs(tmp_path / "stacked"):  # curves of batch 6 and batch 10 line up against the epoch
        assert steps(run.path)["by_epoch/val/acc"] == [1, 2], run.path.name
    per_step = sum(m["wall_time_s"] for m in stacked.values()) / sum(m["steps"] for m in stacked.values())
    for metrics in stacked.values():
        assert metrics["wall_time_s"] == pytest.approx(per_step * metrics["steps"], abs=6e-4), metrics
    for name, metrics in stacked.items():
        assert metrics["steps"] == basic[name]["steps"] == (2 * 16 if "batch_size=6" in name else 2 * 10)
        assert metrics["val/acc"] == pytest.approx(basic[name]["val/acc"], abs=1e-6), name
        assert math.isclose(metrics["val/loss"], basic[name]["val/loss"], rel_tol=1e-4, abs_tol=1e-7), name
        assert math.isclose(metrics["train/loss"], basic[name]["train/loss"], rel_tol=1e-4, abs_tol=1e-7)
    for run in find_runs(tmp_path / "stacked"):
        ours = torch.load(run.checkpoints / "last.ckpt", weights_only=True)
        theirs = torch.load(
            tmp_path / "basic" / run.path.name / "checkpoints" / "last.ckpt", weights_only=True
        )
        assert ours["global_step"] == theirs["global_step"]
        fit, own_fit = ours["loops"]["fit_loop"], theirs["loops"]["fit_loop"]
        assert {k: v for k, v in fit.items() if k != "state_dict"} == {
            k: v for k, v in own_fit.items() if k != "state_dict"
        }
        for name, weight in theirs["state_dict"].items():
            assert torch.allclose(ours["state_dict"][name], weight, rtol=1e-4, atol=1e-6), name
        _, _, model = build_from_checkpoint(run.checkpoints / "last.ckpt")  # loads as any run's
        assert model.net[1].out_features == (8 if "hidden=8" in run.path.name else 16)


def test_a_slots_modelcheckpoint_state_is_one_string_and_reads_back_exactly():
    """A stack's checkpoint keeps each slot's ModelCheckpoint state as one string (`encoded_checkpointer`):
    its scores read back as the same tensors, dtype, NaN and infinity included; a stack's checkpoint of an
    earlier release (the state itself) reads as it is."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from digitlab.checkpoint_format import decoded_checkpointer, encoded_checkpointer

    checkpointer = ModelCheckpoint(dirpath="/runs/0/checkpoints", monitor="val/acc", mode="max", save_top_k=2)
    scores = {"/runs/0/checkpoints/a.ckpt": 0.97123456, "/runs/0/checkpoints/b.ckpt": 0.95}
    checkpointer.best_k_models = {path: torch.tensor(value) for path, value in scores.items()}
    checkpointer.kth_value, checkpointer.current_score = torch.tensor(0.95), torch.tensor(float("nan"))
    checkpointer.best_model_score = torch.tensor(0.97123456, dtype=torch.float64)
    state = checkpointer.state_dict()
    text = encoded_checkpointer(state)
    assert isinstance(text, str)
    back = decoded_checkpointer(text)
    assert back.keys() == state.keys()
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            assert back[key].dtype == value.dtype and torch.equal(back[key].nan_to_num(), value.nan_to_num())
        elif key == "best_k_models":
            assert {p: (t.dtype, t.item()) for p, t in back[key].items()} == {
                p: (t.dtype, t.item()) for p, t in value.items()
            }
        else:
            assert back[key] == value
    assert decoded_checkpointer(state) is state and decoded_checkpointer(None) is None
    assert torch.isinf(
        decoded_checkpointer(encoded_checkpointer(ModelCheckpoint().state_dict()))["kth_value"]
    )


def test_a_stacked_job_whose_folder_another_command_holds_is_refused_alone(sample_root, tmp_path):
    """One writer per run folder, in a stack as in a single run: the job whose folder another process
    holds is refused in one paragraph before anything is written there; the other jobs train stacked."""
    sweep = tmp_path / "sweep"
    taken = sweep / "1_data.batch_size=16,optimizer.lr=0.2,trainer.max_epochs=2"  # job #1's folder
    with held_elsewhere(taken) as holder:
        done = cli(
            "-m",
            "hydra/launcher=stacked",
            f"hydra.sweep.dir={sweep}",
            *tiny_overrides(sample_root, tmp_path, "optimizer.lr=0.1,0.2,0.4"),
            cwd=tmp_path,
            check=False,
        )
    said = done.stdout + done.stderr
    assert f"{taken} is in use" in said and f"pid {holder} on" in said and "Traceback" not in said
    assert not re.search(r"[^.]\.\.[^.]", said)  # the sweep's failure line quotes the paragraph whole
    assert sorted(p.name for p in taken.iterdir()) == [".lock"]  # nothing of this sweep written there
    trained = [run for run in find_runs(sweep) if run.path != taken]
    assert len(trained) == 2 and all(run.metrics["status"] == "completed" for run in trained)
    assert "2 trials stacked in one fit" in said
