"""A retried trial continues where the trial it repeats stopped.

When a worker dies or is stopped, each trial it was running is marked FAIL and its parameters are asked
again, once (`study.py`). The new trial has a folder of its own (named by its own number), so before it is
launched the sweeper carries the stale trial's run over into it (`carry_over`): each checkpoint as the stale
run reads it (a stack's shared checkpoint split into that trial's own, `checkpoints.read_checkpoint`), with
the stale folder in its recorded paths replaced by the new one, written atomically; its event files, log,
pictures and records copied; and, in the study, its reported values and the pruner's bookkeeping (system
attributes such as successive halving's rungs) given to the new trial, as Optuna's
`RetryFailedTrialCallback(inherit_intermediate_values=True)` gives them. The job then runs with
`resume=true`: a single run's resume, which ends with the numbers the uninterrupted trial would have had.
Optuna's `pytorch_checkpoint.py` example does the same by hand (the retried trial copies the failed one's
checkpoint). The stale folder is then removed (every file of it but its `.hydra/` lives on in the retry's):
the run is the retry's. A stale trial that left no intact checkpoint (none, or only damaged ones) is run
from the start, its folder removed too (the retry's replaces it); one whose folder is on another machine or
still held by a live process, or that trained with other settings (the command changed), is run from the
start, its folder kept.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import optuna

from digitlab.console import say
from digitlab.rundir import Run
from digitlab.sweeps.study import RETRY_OF, RUN_DIR, trial_id

# Optuna's own retry bookkeeping (`RetryFailedTrialCallback`): the new trial keeps its own.
_RETRY_ATTRS = ("failed_trial", "retry_history", "fixed_params")
# What stays with the stale run: its Hydra record (the new job writes its own) and its folder lock.
_LEFT_BEHIND = (".hydra", ".lock")

log = logging.getLogger(__name__)


def predecessor(study: optuna.Study, trial: optuna.Trial) -> optuna.trial.FrozenTrial | None:
    """The stale trial `trial` repeats: in a database, the last of the `retry_history` that Optuna's
    `RetryHeartbeatStaleTrialCallback` gives a retry (its `failed_trial` is the first of them; the retry also
    inherits the stale trial's user attributes, `retry_of` among them); else digitlab's `retry_of`."""
    own = trial.storage.get_trial(_id(trial))
    history = own.system_attrs.get("retry_history")
    number = history[-1] if history else own.user_attrs.get(RETRY_OF)
    if number is None:
        return None
    return next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)


def carry_over(study: optuna.Study, trial: optuna.Trial, folder: Path, config: dict[str, Any]) -> bool:
    """Whether `trial`, a retry, continues its predecessor's run in `folder` (its own, not made yet) with the
    resolved `config`; if so, the predecessor's run is moved there and its reports are the trial's. A run
    trained with other settings (the command changed since: `trainer.max_epochs=...`) is not continued, and
    kept; one of the same settings that left no checkpoint is replaced by the retry's (removed)."""
    stale = predecessor(study, trial)
    if stale is None or not stale.user_attrs.get(RUN_DIR):
        return False
    source = Path(str(stale.user_attrs[RUN_DIR]))
    if not source.is_dir() or Run(source).completed:
        return False
    try:
        stale_config = Run(source).config
    except Exception:  # stopped before it wrote its config (and any checkpoint): nothing to continue
        return False
    differences = _differences(stale_config, config)
    if differences:
        say(
            "trial %d runs from its start: trial %d's run had other settings (%s)",
            trial.number,
            stale.number,
            "; ".join(differences[:3]),
        )
        return False
    from digitlab.checkpoints import resume_checkpoint
    from digitlab.run_lock import FolderInUse, holding

    try:
        # Held while it moves, so that no process still writes there (a worker judged gone by its
        # heartbeat on this machine, yet alive).
        with holding(source):
            checkpoint = resume_checkpoint(folder)  # copied before, by a worker stopped half-way
            if checkpoint is None and resume_checkpoint(source) is not None:
                _copy_run(source, folder.absolute())
                checkpoint = resume_checkpoint(folder)
            # The run goes on in the retry's folder (or starts again there): the stale one would be a
            # second, unfinished run of the same settings in digitlab-compare and TensorBoard.
            shutil.rmtree(source)
    except FolderInUse as err:
        say("trial %d runs from its start: %s", trial.number, err)
        return False
    if checkpoint is None:
        say("trial %d runs from its start: trial %d left no intact checkpoint", trial.number, stale.number)
        return False
    _inherit_reports(trial, stale, _epochs_done(checkpoint))
    say("trial %d continues trial %d's run from its checkpoint (%s)", trial.number, stale.number, source)
    return True


def _epochs_done(checkpoint: str) -> int:
    """Epochs a checkpoint holds whole: its epoch, and that epoch too if it was saved at the epoch's end."""
    from digitlab.stacked.resume import resume_point

    epoch, into = resume_point(checkpoint).split("/")
    return int(epoch) + (1 if into == "end" else 0)


def _differences(stale: dict[str, Any] | None, config: dict[str, Any]) -> list[str]:
    """What the stale run trained with (its config.json) that the retry would not, as `key: old -> new`."""
    if not stale:
        return ["no config.json"]
    from digitlab.config.hparams import trained_settings

    theirs = {"seed": stale.get("seed"), **trained_settings(stale)}
    ours = {"seed": config.get("seed"), **trained_settings(config)}
    return [
        f"{key}: {theirs.get(key)} -> {ours.get(key)}"
        for key in sorted(theirs.keys() | ours.keys())
        if theirs.get(key) != ours.get(key)
    ]


def _copy_run(source: Path, target: Path) -> None:
    from digitlab.atomic import is_leftover, write_atomically
    from digitlab.checkpoints import read_checkpoint, save_checkpoint

    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if not path.is_file() or relative.parts[0] in _LEFT_BEHIND or is_leftover(path):
            continue
        destination = target / relative
        if path.suffix == ".ckpt" and path.parent == Run(source).checkpoints:
            try:
                checkpoint = read_checkpoint(path)
            except Exception as err:  # as `newest_intact` does: a damaged one is left behind
                log.warning("%s is not carried over (%s: %s)", path, type(err).__name__, err)
                continue
            save_checkpoint(_moved(checkpoint, str(source.absolute()), str(target)), destination)
        else:
            write_atomically(destination, lambda file, path=path: file.write(path.read_bytes()))


def _moved(value: Any, old: str, new: str) -> Any:
    """`value` with every path inside the `old` folder (ModelCheckpoint's dirpath, best paths and its
    `best_k_models` keys, the config's output paths) inside `new` instead."""
    if isinstance(value, dict):
        return {_moved(key, old, new): _moved(item, old, new) for key, item in value.items()}  # best_k_models
    if isinstance(value, list | tuple):
        return type(value)(_moved(item, old, new) for item in value)
    if isinstance(value, str) and (value == old or value.startswith(old + "/")):
        return new + value[len(old) :]
    return value


def _inherit_reports(trial: optuna.Trial, stale: optuna.trial.FrozenTrial, epochs: int) -> None:
    """The stale trial's reports of the `epochs` its checkpoint holds (a later one, reported before the
    kill, is reported again by the resumed run), and its system attributes (the pruner's bookkeeping)."""
    own_id = _id(trial)
    reported = trial.storage.get_trial(own_id)
    for step, value in sorted(stale.intermediate_values.items()):
        if step < epochs and step not in reported.intermediate_values:
            trial.report(value, step)
    for key, value in stale.system_attrs.items():
        if key not in _RETRY_ATTRS and key not in reported.system_attrs:
            trial.storage.set_trial_system_attr(own_id, key, value)


def _id(trial: optuna.Trial) -> int:
    return trial_id(trial.storage, trial.study.study_name, trial.number)
