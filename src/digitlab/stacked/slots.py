"""A continuous stack: a search's trials trained in one fit of S slots, each slot refilled at an epoch's end.

A trial that is done (its epochs trained, pruned, or failed) leaves its slot when the epoch ends: its folder
is closed as a stack closes every trial's at its fit's end (`TrialRecords.leave_stack`: pictures, its own
checkpoints, `metrics.json`) and its outcome goes to the source (`TrialSource.left`: the sweeper tells the
study). The source is then asked for the next trial (`TrialSource.next`), which takes the slot from the next
epoch on: its net built from its own seed (its single run's initial weights), in the slot's rows; its own
optimizer settings and no optimizer state, its own scheduler; its own shuffle order, from the start of its
generator; its epochs and steps counted from the epoch it joined. So each trial trains exactly as its single
run does, and the sampler sees every result as soon as it lands; no slot waits for another.

A trial that continues a run (the retry of a killed search's trial, `sweeps.carry_over`) takes a slot,
first or as one frees, from its checkpoint of an epoch's end (`checkpoint_format.Continued`): its weights,
its optimizer's state, its scheduler's, its shuffle generator, its record and best files, counted as if it
had joined the stack as many epochs before as it trained, so it goes on exactly as its run would have.

The slots are as wide as the widest trial the search may bring (`widest`), and read micro-batches of the
search's batch sizes' greatest common divisor, so any trial of the search fits any slot. Slots are
visited in order at each epoch's end (those that leave, then those that refill), so for a seeded sampler the
search is the same for the same slot count.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Any, Protocol

import lightning as L
from omegaconf import DictConfig

from digitlab.checkpoint_format import Continued
from digitlab.run_lock import holding
from digitlab.stacked.steps import StepPlan
from digitlab.stacked.training import build_stack, fit_stack, trial_module

log = logging.getLogger(__name__)

# A guess, not measured (no GPU here): on a GPU a slot's math runs on the device, not on the cores.
GPU_SLOTS = 16


def machine_slots(accelerator: str, n_trials: int) -> tuple[int, str]:
    """The slots of a search's continuous stack under `hydra.sweeper.n_jobs=auto`, and why, in words.

    At most a third of the search's trials, so that the sampler has seen results for most of the trials it
    proposes (with a slot per trial, TPE would propose every trial blind). On the CPU, two slots per core the
    process may use: the slots' math shares those cores, and on 2 cores 2, 4 and 6 slots ran the shipped mlp
    search in the same time (README, "How a search stacks"). On a GPU, `GPU_SLOTS`."""
    import torch

    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu:
        bound, why = GPU_SLOTS, f"at most {GPU_SLOTS} on a GPU"
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        bound, why = 2 * cores, f"2 per CPU core, {cores} cores"
    slots = max(1, min(bound, n_trials // 3))
    return slots, f"{why}; at most a third of the {n_trials} trials"


@dataclass
class Entrant:
    """A trial ready to take a slot: its resolved config, its job's Hydra config, what the source knows it
    by (`handle`, given back with its outcome), and the checkpoint of an epoch's end it continues its run
    from, if it does (`resume_from`: a retried trial of a killed search, `sweeps.carry_over`)."""

    cfg: DictConfig
    hydra: Any
    handle: Any
    resume_from: str | None = None

    def continued(self) -> Continued | None:
        """What its checkpoint gives its slot (read as data, `checkpoints.read_checkpoint`)."""
        from digitlab.checkpoints import read_checkpoint

        return Continued.of(read_checkpoint(self.resume_from)) if self.resume_from else None


class TrialSource(Protocol):
    def next(self) -> Entrant | None:
        """The next trial (its folder set up), or None when the search has no more for this stack."""

    def left(self, handle: Any, outcome: dict[str, Any] | BaseException) -> None:
        """A trial's outcome: its final metrics, or the error that ended it (`TrialPruned` when pruned)."""


class Refills(L.Callback):
    """At each epoch's end, after the trials' records (`TrialRecords`, the callback before this one): the
    trials that are done leave, and vacant slots take the source's next trials."""

    def __init__(self, source: TrialSource, entrants: list[Entrant], trial_epochs: int) -> None:
        self.source = source
        self.handles: dict[int, Any] = {k: e.handle for k, e in enumerate(entrants)}
        self.trial_epochs = trial_epochs
        self.held = [contextlib.ExitStack() for _ in entrants]  # each slot's run folder (`run_lock`)
        for stack, entrant in zip(self.held, entrants, strict=True):
            stack.enter_context(holding(entrant.cfg.paths.output_dir))
        self.records: Any = None  # the stack's `TrialRecords`
        self.data: Any = None  # its `StackedData`

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        records = self.records
        for k, trial in enumerate(records.trials):
            if trial.closed:
                continue
            trained = trainer.current_epoch - trial.joined + 1
            if trial.active and trained < self.trial_epochs:
                continue
            self._leave(trainer, k)
        for k in [k for k, trial in enumerate(records.trials) if trial.closed]:
            entrant = self.source.next()
            if entrant is None:
                break
            self._fill(trainer, pl_module, k, entrant)
        if all(trial.closed for trial in records.trials):
            trainer.should_stop = True  # no trial left, none to come

    def _leave(self, trainer: L.Trainer, k: int) -> None:
        outcome = self.records.leave_stack(trainer, k)
        self.held[k].close()
        self.source.left(self.handles.pop(k), outcome)

    def _fill(self, trainer: L.Trainer, pl_module: Any, k: int, entrant: Entrant) -> None:
        cfg = entrant.cfg
        self.held[k].enter_context(holding(cfg.paths.output_dir))
        continued = entrant.continued()
        module, datamodule = trial_module(cfg)
        # From the next epoch; a trial that continues a run counts from where its run's first epoch would be.
        joined = trainer.current_epoch + 1 - (continued.epochs if continued else 0)
        if continued:
            module.load_state_dict(continued.weights)
        self.records.open_slot(k, cfg, module, datamodule, entrant.hydra, joined, running=True)
        if continued:
            self.records.continue_slot(k, continued, joined)
        self.handles[k] = entrant.handle
        plan = self.plan(pl_module.plan)
        pl_module.refill(k, module, plan)
        if continued:
            pl_module.continue_slot(k, continued)
        self.data.plan = plan
        self.data.sampler.restart(k, cfg.data.seed, plan.partial_last(k), continued and continued.order)

    def plan(self, before: StepPlan) -> StepPlan:
        """The stack's steps with the slots' trials as they now stand (a vacant slot: its last trial's)."""
        cfgs = [trial.cfg for trial in self.records.trials]
        return StepPlan(
            before.rows,
            [cfg.data.batch_size for cfg in cfgs],
            before.val_rows,
            [cfg.data.eval_batch_size or cfg.data.batch_size for cfg in cfgs],
            micro=before.micro,
            start_epochs=[trial.joined for trial in self.records.trials],
        )

    def close(self, error: BaseException) -> None:
        """The fit ended by `error`: every trial still in a slot leaves with it (its records and
        checkpoints are the stack's `on_exception`'s)."""
        for k in list(self.handles):
            self.held[k].close()
            self.source.left(self.handles.pop(k), error)


def train_continuous(
    entrants: list[Entrant], source: TrialSource, micro: int, widest: list[DictConfig]
) -> None:
    """Train `entrants` (one per slot), then whatever `source` brings as slots free, in one fit; every
    trial's outcome goes to `source.left`, an error that stops the fit included. `micro`: the micro-batch
    every trial's batch size is a multiple of; `widest`: configs of the widest trials the source may bring."""
    trial_epochs = int(entrants[0].cfg.trainer.max_epochs)
    refills = Refills(source, entrants, trial_epochs)
    try:
        trainer, model, data, records = build_stack(
            [e.cfg for e in entrants],
            [e.hydra for e in entrants],
            refills={
                "micro": micro,
                "widest": [trial_module(cfg)[0].net for cfg in widest],
                "trial_epochs": trial_epochs,
                "continued": [e.continued() for e in entrants],
            },
            callbacks=[refills],
        )
        records.refills = True
        refills.records, refills.data = records, data
        log.info("continuous stack: %d slots, refilled as trials leave", len(entrants))
        fit_stack(trainer, model, data)
    except BaseException as err:
        refills.close(err)
        if not isinstance(err, Exception):
            raise
