"""A search streamed through one continuous stack (`digitlab.stacked.slots`), for real: an Optuna search on a
tiny synthetic MNIST_SAMPLE whose trials differ in lr, width and batch size, with pruning, so that slots are
refilled within the fit at different epochs. Each trial trains exactly as it does one at a time, whatever
slot it had and whenever it joined; its folder, checkpoints and study record are a single run's."""

from __future__ import annotations

import math
import signal
import sys
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState

from digitlab.build import build_from_checkpoint
from digitlab.rundir import Run, find_runs
from tests.conftest import cli, held_elsewhere, run_until_killed, tiny_overrides
from tests.tb import scalars
from tests.test_optuna import load, search, trial_dirs

SPACE = (
    # TPE's random start-up only: each trial's parameters whatever order results land in.
    "hydra.sweeper.sampler.n_startup_trials=100",
    "hydra.sweeper.sampler.seed=3",
    "model=mlp",
    "optimizer.momentum=0.5",
    "scheduler=cosine",  # each trial its own schedule, over its own steps
    "model.net.hidden=choice(8, 16)",  # typed sweeps join the search space
    "data.batch_size=choice(64, 128)",  # 2 steps an epoch (64 + 32 rows), or 1
    "optimizer.lr=tag(log, interval(0.05, 2.0))",
    "optimized_metric=val/loss",
    "hydra.sweeper.direction=minimize",
    "trainer.max_epochs=4",
    "hydra.sweeper.n_trials=7",
)
PRUNING = (
    "hydra/sweeper/pruner=median",
    "hydra.sweeper.pruner.n_startup_trials=1",
    "hydra.sweeper.pruner.n_warmup_steps=0",
)


@pytest.fixture(scope="module")
def searches(sample_root, tmp_path_factory):
    """The search streamed through 2 slots, with pruning; and the same trials one at a time, unpruned."""
    tmp = tmp_path_factory.mktemp("continuous")
    streamed = cli(
        *search(sample_root, tmp, "hydra/launcher=stacked", "hydra.sweeper.n_jobs=2", *SPACE, *PRUNING),
        cwd=tmp,
    )
    cli(*search(sample_root, tmp, "hydra/launcher=basic", *SPACE, study="alone"), cwd=tmp)
    return load(tmp / "s"), load(tmp / "alone"), streamed.stdout + streamed.stderr


def test_pruned_trials_slots_are_refilled_within_one_fit(searches):
    study, _, output = searches
    assert output.count("a continuous stack of 2 slots") == 1
    assert "the continuous stack trained 7 trials" in output
    assert [t.number for t in study.trials] == list(range(7))
    assert TrialState.FAIL not in {t.state for t in study.trials}
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, [t.state for t in study.trials]
    for trial in study.trials:
        run = Run(trial.user_attrs["run_dir"])
        epochs = run.metrics["epochs"]
        assert run.metrics["stacked_with"] == 2
        assert sorted(trial.intermediate_values) == list(range(epochs))  # its own epochs, from 0
        assert scalars(run.tensorboard)["epoch"] == list(range(epochs))
        if trial.state == TrialState.PRUNED:
            assert run.status == "pruned" and run.metrics["pruned_epoch"] == epochs - 1
        else:
            assert run.status == "completed" and epochs == 4
            assert trial.value == pytest.approx(run.metrics["val/loss"])
    # Some trial joined while the other slot's trial was mid-way: the slots' epochs were offset.
    joined_late = [t for t in study.trials if t.datetime_start > min(p.datetime_complete for p in pruned)]
    assert joined_late


def test_each_trial_trains_as_it_does_one_at_a_time(searches):
    streamed, alone, _ = searches
    for trial, own in zip(streamed.trials, alone.trials, strict=True):
        assert trial.params == own.params
        for epoch, value in trial.intermediate_values.items():
            assert math.isclose(value, own.intermediate_values[epoch], rel_tol=1e-4, abs_tol=1e-7), (
                trial.number,
                epoch,
            )
        ours, theirs = Run(trial.user_attrs["run_dir"]), Run(own.user_attrs["run_dir"])
        if trial.state != TrialState.COMPLETE:
            continue
        assert ours.metrics["steps"] == theirs.metrics["steps"]
        assert ours.metrics["val/acc"] == pytest.approx(theirs.metrics["val/acc"], abs=1e-6)
        mine = torch.load(ours.checkpoints / "last.ckpt", weights_only=True)
        single = torch.load(theirs.checkpoints / "last.ckpt", weights_only=True)
        assert (mine["epoch"], mine["global_step"]) == (single["epoch"], single["global_step"])
        fit, own_fit = mine["loops"]["fit_loop"], single["loops"]["fit_loop"]
        assert {k: v for k, v in fit.items() if k != "state_dict"} == {
            k: v for k, v in own_fit.items() if k != "state_dict"
        }
        for name, weight in single["state_dict"].items():
            assert mine["state_dict"][name].shape == weight.shape, name  # its own width
            assert torch.allclose(mine["state_dict"][name], weight, rtol=1e-4, atol=1e-6), name
        _, _, model = build_from_checkpoint(ours.checkpoints / "last.ckpt")  # eval and predict load it
        assert model.net[1].out_features == trial.params["model.net.hidden"]


@pytest.mark.parametrize(
    ("point", "slots", "in_a_slot"),
    [
        ("epoch_end:5", 2, True),  # every slot's last.ckpt of the stack's epoch 5 written
        ("mid_epoch:5", 2, True),  # half-way through an epoch: the trials resume from the epoch before
        # the first slot's last.ckpt of epoch 5 written, the second's not yet
        ("checkpoint_link:last.ckpt@5", 2, True),
        # 3 slots killed, 2 again: the third retry takes a slot that frees within the fit (`Refills._fill`)
        ("epoch_end:5", 3, True),
        # the first trials' last epoch written, their records not: nothing left to train, each resumes alone
        ("epoch_end:3", 2, False),
    ],
)
def test_a_search_killed_mid_stream_finishes_when_run_again(
    sample_root, tmp_path, searches, point, slots, in_a_slot
):
    """SIGKILL while slots hold trials; the same command again fails the trials the dead worker left
    running, asks their parameters again, each retry continuing its stale trial's run from its newest
    checkpoint (`sweeps.carry_over`) in a slot of the stack, and completes the study with the numbers of the
    trials run alone."""
    args = search(sample_root, tmp_path, "hydra/launcher=stacked", "hydra.sweeper.n_jobs=2", *SPACE)
    killed = [*args, f"hydra.sweeper.n_jobs={slots}"]
    run_until_killed([sys.executable, "-m", "digitlab.cli.train", *killed], point, cwd=tmp_path)
    before = load(tmp_path / "s")
    running = [t.number for t in before.trials if t.state == TrialState.RUNNING]
    assert len(running) == slots, [t.state for t in before.trials]
    stood = {n: _has_checkpoint(Run(before.trials[n].user_attrs["run_dir"])) for n in running}
    assert any(stood.values()), stood  # at least one had a checkpoint to continue from
    again = cli(*args, cwd=tmp_path)
    said = again.stdout + again.stderr
    study = load(tmp_path / "s")
    _assert_retries_continue(study, stood, said, alone=searches[1])
    for retry in (t for t in study.trials if stood.get(t.user_attrs.get("retry_of"))):
        # from its last epoch's end, in a slot of the stack, not alone (`checkpoint_format.Continued`)
        if in_a_slot:
            assert f"#{retry.number} continues its run in the stack from" in said, said[-3000:]
            assert f"#{retry.number} runs alone" not in said
        else:
            assert f"#{retry.number} runs alone: it resumes from" in said and "after its last epoch" in said
    states = {t.number: t.state for t in study.trials}
    assert all(states[n] == TrialState.FAIL for n in running)
    retries = [t for t in study.trials if t.user_attrs.get("retry_of") in running]
    assert sorted(t.user_attrs["retry_of"] for t in retries) == sorted(running)
    assert all(t.state == TrialState.COMPLETE for t in retries)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 7
    for trial in done:
        assert Run(trial.user_attrs["run_dir"]).status == "completed"
    # Each trial's run once: the stale ones went on in their retries.
    assert len(find_runs(tmp_path / "s")) == 7


def _assert_retries_continue(study, stood: dict[int, bool], said: str, alone) -> None:
    """Each retry of a stale trial (`stood`: whether it left a checkpoint) continued its run and ended
    with the numbers of the same trial run alone (`alone`, the study of `searches`)."""
    for retry in (t for t in study.trials if t.user_attrs.get("retry_of") in stood):
        stale = retry.user_attrs["retry_of"]
        ours = Run(retry.user_attrs["run_dir"])
        own = next(t for t in alone.trials if t.params == retry.params)  # the same trial, one at a time
        theirs = Run(own.user_attrs["run_dir"])
        if stood[stale]:
            assert f"trial {retry.number} continues trial {stale}'s run" in said
            assert not Path(study.trials[stale].user_attrs["run_dir"]).exists()  # moved into the retry's
            # its reports before the kill are the stale trial's, the rest its own, as one run's
            assert sorted(retry.intermediate_values) == sorted(own.intermediate_values)
            for epoch, value in own.intermediate_values.items():
                assert math.isclose(retry.intermediate_values[epoch], value, rel_tol=1e-4), epoch
        assert ours.metrics["steps"] == theirs.metrics["steps"]
        assert ours.metrics["val/loss"] == pytest.approx(theirs.metrics["val/loss"], rel=1e-4)
        mine = torch.load(ours.checkpoints / "last.ckpt", weights_only=True)
        ckpt_dir = next(v["dirpath"] for k, v in mine["callbacks"].items() if k.startswith("ModelCheckpoint"))
        assert ckpt_dir == str(ours.checkpoints.absolute())  # its own folder's, not the stale one's


def _has_checkpoint(run: Run) -> bool:
    from digitlab.checkpoints import resume_checkpoint

    return resume_checkpoint(run.path) is not None


def test_linear_lr_as_shipped_is_one_continuous_stack(sample_root, tmp_path):
    args = [
        "hparams_search=linear_lr",
        "hydra.sweeper.n_trials=6",
        *tiny_overrides(
            sample_root, tmp_path, f"hydra.sweep.dir={tmp_path / 's'}", "hydra.sweeper.study_name=s"
        ),
    ]
    output = cli(*args, cwd=tmp_path)
    said = output.stdout + output.stderr
    # n_jobs: auto, 2 slots per core and at most a third of the trials: 2 slots for 6 trials on any machine.
    assert "hydra.sweeper.n_jobs=auto: a continuous stack of 2 slots (2 per CPU core" in said, said[-3000:]
    assert "at most a third of the 6 trials)" in said
    assert "a continuous stack of 2 slots" in said and "the continuous stack trained 6 trials" in said
    study = load(tmp_path / "s")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
    assert {Run(t.user_attrs["run_dir"]).metrics["stacked_with"] for t in study.trials} == {2}


def test_a_search_stopped_by_sigterm_gives_its_slots_trials_back(sample_root, tmp_path, searches):
    """SIGTERM (Ctrl-C, `scancel`) mid-epoch while slots hold trials: each is FAIL with the reason and its
    parameters asked again once; the worker stops in one paragraph; the same command again completes the
    study, each retry continuing in a slot from its stale trial's last checkpoint of an epoch's end (its
    interrupted.ckpt may stand within an epoch) to the numbers it has alone."""
    args = search(sample_root, tmp_path, "hydra/launcher=stacked", "hydra.sweeper.n_jobs=2", *SPACE)
    output = run_until_killed(
        [sys.executable, "-m", "digitlab.cli.train", *args], "mid_epoch:5", cwd=tmp_path, sig=signal.SIGTERM
    )
    assert "this worker was stopped" in output and "Traceback" not in output, output[-3000:]
    stopped = [t for t in load(tmp_path / "s").trials if t.state == TrialState.FAIL]
    assert len(stopped) == 2 and all("SIGTERM" in t.user_attrs["stopped"] for t in stopped)
    stood = {t.number: _has_checkpoint(Run(t.user_attrs["run_dir"])) for t in stopped}
    assert any(stood.values()), stood
    again = cli(*args, cwd=tmp_path)
    study = load(tmp_path / "s")
    _assert_retries_continue(study, stood, again.stdout + again.stderr, alone=searches[1])
    retries = [t for t in study.trials if t.user_attrs.get("retry_of") in {s.number for s in stopped}]
    said = again.stdout + again.stderr
    for retry in (t for t in retries if stood[t.user_attrs["retry_of"]]):
        # interrupted.ckpt may stand between an epoch's last batch and its validation: a slot takes trials
        # between epochs, so the retry continues from last.ckpt and trains that epoch again
        assert f"#{retry.number} continues its run in the stack from" in said, said[-3000:]
        assert "last.ckpt, training again the epoch its interrupted.ckpt stands in" in said
        assert f"#{retry.number} runs alone" not in said
    assert "already reported" not in said  # no epoch reported twice to the study
    assert len(retries) == 2 and all(t.state == TrialState.COMPLETE for t in retries)
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 7


def test_a_killed_search_of_one_width_continues_with_its_momentum(sample_root, tmp_path):
    """Trials of one width step with `StackedSGD`, whose momentum buffers are rows of one tensor: retries of
    a killed search (3 slots, SIGKILL, then 2) continue in slots with their own momentum and end where the
    same search run through uninterrupted does."""
    space = (
        "hydra.sweeper.sampler.n_startup_trials=100",  # each trial's parameters whatever order results land in
        "optimizer.momentum=0.5",
        "trainer.max_epochs=4",
        "hydra.sweeper.n_trials=6",  # trials 3, 4, 5 in the 3 slots at the kill
        "hydra/launcher=stacked",
    )
    args = search(sample_root, tmp_path, *space, "hydra.sweeper.n_jobs=2")
    run_until_killed(
        [sys.executable, "-m", "digitlab.cli.train", *args, "hydra.sweeper.n_jobs=3"],
        "epoch_end:5",
        cwd=tmp_path,
    )
    said = cli(*args, cwd=tmp_path)
    assert said.stdout.count("continues its run in the stack from") == 3, (said.stdout + said.stderr)[-3000:]
    whole = cli(*search(sample_root, tmp_path, *space, "hydra.sweeper.n_jobs=2", study="whole"), cwd=tmp_path)
    assert whole.returncode == 0
    ours, theirs = load(tmp_path / "s"), load(tmp_path / "whole")
    finals = {
        t.params["optimizer.lr"]: Run(t.user_attrs["run_dir"]).metrics
        for t in theirs.trials
        if t.state == TrialState.COMPLETE
    }
    done = [t for t in ours.trials if t.state == TrialState.COMPLETE]
    assert len(done) == len(finals) == 6
    for trial in done:
        mine, own = Run(trial.user_attrs["run_dir"]).metrics, finals[trial.params["optimizer.lr"]]
        assert mine["steps"] == own["steps"] and mine["epochs"] == own["epochs"] == 4
        assert mine["val/loss"] == pytest.approx(own["val/loss"], rel=1e-5), trial.params
        assert mine["val/acc"] == own["val/acc"]


def test_a_killed_search_whose_newest_checkpoint_is_damaged_finishes_when_run_again(
    sample_root, tmp_path, searches
):
    """SIGKILL at a stack's epoch end, then the newest checkpoint in the slots' folders truncated (a disk
    that filled up, a copy cut short): the retries carry over only what reads whole, say what they left,
    continue from the newest intact checkpoint (or run from their start when none is) and end with the
    numbers of the trials run alone."""
    args = search(sample_root, tmp_path, "hydra/launcher=stacked", "hydra.sweeper.n_jobs=2", *SPACE)
    run_until_killed([sys.executable, "-m", "digitlab.cli.train", *args], "epoch_end:5", cwd=tmp_path)
    before = load(tmp_path / "s")
    running = [t.number for t in before.trials if t.state == TrialState.RUNNING]
    damaged = []
    for n in running:
        last = Run(before.trials[n].user_attrs["run_dir"]).checkpoints / "last.ckpt"
        if last.exists():
            with open(last, "r+b") as file:  # in place: the stack's file, linked into every slot's folder
                file.truncate(last.stat().st_size // 2)
            damaged.append(last)
    assert damaged
    stood = {n: _has_checkpoint(Run(before.trials[n].user_attrs["run_dir"])) for n in running}
    again = cli(*args, cwd=tmp_path)
    said = again.stdout + again.stderr
    assert "Traceback" not in said
    for last in damaged:  # named, whether passed over by the retry's resume or by its carry-over
        assert f"{last} is damaged and skipped" in said or f"{last} is not carried over" in said, said
    study = load(tmp_path / "s")
    _assert_retries_continue(study, stood, said, alone=searches[1])
    for retry in (t for t in study.trials if t.user_attrs.get("retry_of") in running):
        if stood[retry.user_attrs["retry_of"]]:
            assert f"#{retry.number} continues its run in the stack from" in said
        else:
            assert f"trial {retry.number} runs from its start: trial" in said
            assert "left no intact checkpoint" in said
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 7
    assert len(find_runs(tmp_path / "s")) == 7


def test_a_trial_whose_folder_another_command_holds_is_refused_alone(sample_root, tmp_path):
    """One writer per run folder in a continuous stack too: the trial whose folder another process holds is
    told failed in one paragraph, with nothing written there; the others train in the stack."""
    space = [*SPACE[:-1], "hydra.sweeper.n_trials=3"]
    args = ("hydra/launcher=stacked", "hydra.sweeper.n_jobs=2", *space)
    cli(*search(sample_root, tmp_path, *args, study="first"), cwd=tmp_path)
    taken = tmp_path / "again" / trial_dirs(tmp_path / "first")[1].name  # the seeded sampler asks it again
    with held_elsewhere(taken) as holder:
        done = cli(*search(sample_root, tmp_path, *args, study="again"), cwd=tmp_path, check=False)
    said = done.stdout + done.stderr
    assert f"{taken} is in use" in said and f"pid {holder} on" in said and "Traceback" not in said
    assert sorted(p.name for p in taken.iterdir()) == [".lock"]
    states = {trial.number: trial.state for trial in load(tmp_path / "again").trials}
    assert states[1] == TrialState.FAIL, states
    assert [n for n, state in states.items() if state == TrialState.COMPLETE] == [0, 2], states
