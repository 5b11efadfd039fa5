"""What makes each trial of a stack a run: the run dir a single run leaves, written for K trials at once.

Per trial: `config.json` and its record (`digitlab.record.RunRecord`, as a single run's), TensorBoard scalars
and hparams in its own event file, `checkpoints/` (the best epoch by its own ModelCheckpoint's rule and
`last.ckpt`, each read as that trial's single run's checkpoint, so digitlab-eval, digitlab-predict and a
single `resume=true` load them as any run's), pictures, its Optuna reports and its outcome (completed,
pruned, failed, diverged, interrupted), and `metrics.json` last.

The stack's state is written as one unit: at each epoch's end (and at an interruption) one checkpoint of the
whole stack, linked into every trial's folder (`checkpoint_format`), so the trials always stand at the same
point and a stack of K pays one write, not K. When the fit ends (or, in a continuous stack, when a trial
leaves its slot), each trial's files are split into its own: its folder then stands alone, as a single
run's does.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

import digitlab.build as build
from digitlab.atomic import WriteFailed, together
from digitlab.callbacks.checkpointing import pause_mid_validation, worth_an_interrupted_checkpoint
from digitlab.callbacks.guards import diverged
from digitlab.callbacks.pictures import draw_pictures, save_pictures
from digitlab.callbacks.pruning import log_pruned, pruned_record, report, trial_pruned
from digitlab.checkpoint_format import (
    STACK_KEY,
    Continued,
    decoded,
    decoded_checkpointer,
    encoded,
    encoded_checkpointer,
    is_stack,
    slot_of,
    split,
    stack_section,
)
from digitlab.checkpoints import link_checkpoint, read_stored, save_checkpoint
from digitlab.compat.lightning import keep_best, logged_step, set_sigterm_received, sigterm_received
from digitlab.config.hparams import hparams_from_config
from digitlab.console import say
from digitlab.event_files import add_scalars, buffer_event_file, flush_all
from digitlab.faults import pause_point
from digitlab.loggers import log_run_artifacts
from digitlab.record import RunRecord, by_epoch
from digitlab.rundir import COMPLETED, INTERRUPTED_CHECKPOINT, LAST_CHECKPOINT, Run

log = logging.getLogger(__name__)


@dataclass
class StackedTrial:
    """One trial's run life in a stack, its single run's parts: its config and module, run folder, loggers
    and their event files, record, ModelCheckpoint (its best files), what its own checkpoint carries besides
    the stack's (`checkpoint_format.split`), its Optuna trial (reported to every epoch), the stack's epoch it
    joined at, and how it ended."""

    cfg: DictConfig
    module: L.LightningModule
    run: Run
    loggers: list[Any]
    event_files: list[Any]
    record: RunRecord
    checkpointer: ModelCheckpoint | None
    carried: str
    bulk: list[Any]  # its TensorBoard loggers whose scalars are written an event a step (`log_scalars`)
    study_trial: Any  # an `optuna.Trial` under digitlab's sweeper whose pruner may stop it, else None
    joined: int = 0  # the stack's epoch at which it joined (a continuous stack's later trials)
    failed: Exception | None = None  # what ended it (its loss stopped being finite, the fit's error)
    pruned_after: int | None = None  # its own epoch the pruner stopped it after
    closed: bool = False  # it left its slot and its folder was closed (a continuous stack's)
    pictured: bool = False  # its pictures are drawn (a pruned trial's when it is pruned)

    @property
    def active(self) -> bool:
        return self.failed is None and self.pruned_after is None and not self.closed

    def log_scalars(self, values: dict[str, float], step: int) -> None:
        """As each logger's `log_metrics`; a TensorBoard logger with a buffered event file gets them as one
        event (`event_files.add_scalars`)."""
        for logger in self.loggers if values else ():
            if any(logger is bulk for bulk in self.bulk):
                add_scalars(logger.experiment, values, step)
            else:
                logger.log_metrics(values, step=step)


class TrialRecords(L.Callback):
    """The run life of each trial of a stack (`StackedTrial`, slot k's in `trials[k]`): its record (as a
    single run's), TensorBoard scalars every epoch, its checkpoints (the stack's, linked, then its own when
    the fit ends), pruning reports, divergence guard and outcome."""

    def __init__(
        self,
        cfgs: list[DictConfig],
        modules: list[L.LightningModule],
        datamodules: list[L.LightningDataModule],
        hydra_cfgs: list[Any] | None = None,
    ) -> None:
        self.trials: list[StackedTrial] = []
        self.refills = False  # a continuous stack (`slots.Refills`): the fit goes on while slots refill
        for k in range(len(cfgs)):
            self.open_slot(k, cfgs[k], modules[k], datamodules[k], hydra_cfgs[k] if hydra_cfgs else None)
        self.new_best: list[str] = []  # best files of trials whose val/acc improved this epoch, at its end
        self.replaced_best: list[str] = []  # their previous best files, removed once the new ones exist
        # The divergence guard as the trials' configs set it (stacked trials share their callbacks); None: off.
        guard = (cfgs[0].get("callbacks") or {}).get("stop_on_nonfinite_loss")
        self.check_every: int | None = guard.get("check_every_n_steps", 1) if guard else None
        self._sigterm_held = False  # a SIGTERM waiting for a common step boundary (`on_train_batch_end`)
        # When this epoch started and each slot's steps then (`_charge_epoch`).
        self._epoch_clock: tuple[float, list[int]] | None = None

    def open_slot(
        self,
        k: int,
        cfg: DictConfig,
        module: L.LightningModule,
        datamodule: L.LightningDataModule,
        hydra_cfg: Any = None,
        joined: int = 0,
        running: bool = False,
    ) -> None:
        """Slot k's trial: its run folder, loggers, record, ModelCheckpoint and Optuna trial (`hydra_cfg`:
        its job's Hydra config), joining at the stack's epoch `joined` (the epoch its run's first would have
        been, for a trial that continues one); `running`: into a running fit, whose `on_fit_start` started
        the first trials' records."""
        from digitlab.sweeps.trial import current_trial, prunable, record_run

        run = Run(cfg.paths.output_dir)
        loggers = build.loggers(cfg)
        # One writer for all K event files, flushed once an epoch (`event_files`), not a thread each.
        buffered = [(logger, f) for logger in loggers if (f := buffer_event_file(logger))]
        # A logger configured with a `prefix` logs through its `log_metrics` (Lightning keeps the prefix private).
        nodes = build.logger_configs(cfg)  # `loggers`' own, in order
        plain = [logger for logger, node in zip(loggers, nodes, strict=True) if not node.get("prefix")]
        config = OmegaConf.to_container(cfg, resolve=True)
        choices = OmegaConf.select(hydra_cfg, "runtime.choices") if hydra_cfg is not None else None
        record = RunRecord(run, config, hparams_from_config(config, choices))
        # Its own ModelCheckpoint, as configured: which epoch is best, the file's name, and the state its
        # checkpoints carry so that a single run resuming from them goes on keeping the best.
        checkpointer = _model_checkpoint(cfg)
        carried = encoded(
            {
                "hyper_parameters": dict(module.hparams),
                "datamodule_hparams": dict(datamodule.hparams),
                "datamodule_key": type(datamodule).__qualname__,
                "checkpointer_key": checkpointer.state_key if checkpointer else None,
                "config": record.config,
            }
        )
        # Under digitlab's Optuna sweeper: the job's trial, reported to every epoch; a pruned one leaves.
        trial = current_trial(hydra_cfg) if hydra_cfg is not None else None
        if trial is not None:
            record_run(trial, run)
        opened = StackedTrial(
            cfg,
            module,
            run,
            loggers,
            [f for _, f in buffered],
            record,
            checkpointer,
            carried,
            [logger for logger, _ in buffered if any(logger is p for p in plain)],
            trial if trial is not None and prunable(trial) else None,
            joined,
        )
        if k == len(self.trials):
            self.trials.append(opened)
        else:
            self.trials[k] = opened
        if running:
            record.start(loggers)

    def continue_slot(self, k: int, continued: Continued, joined: int) -> None:
        """Slot k's trial continues its run (`checkpoint_format.Continued`) in the stack, which counts it
        from its epoch `joined`: its record and its ModelCheckpoint's state (its best files) as its
        checkpoint had them."""
        self.trials[k].joined = joined
        if continued.record is not None:
            self.trials[k].record.load_state_dict(continued.record)
        if self.trials[k].checkpointer is not None and continued.checkpointer is not None:
            self.trials[k].checkpointer.load_state_dict(continued.checkpointer)

    def _epoch(self, trainer: L.Trainer, k: int) -> int:
        """Slot k's trial's own epoch (its single run's) at the stack's current one."""
        return trainer.current_epoch - self.trials[k].joined

    def _open_event_files(self) -> list[Any]:
        return [f for trial in self.trials if not trial.closed for f in trial.event_files]

    def state_dict(self) -> dict[str, Any]:
        return {
            "checkpointers": [
                encoded_checkpointer(t.checkpointer.state_dict() if t.checkpointer else None)
                for t in self.trials
            ],
            "records": [encoded(trial.record.state_dict()) for trial in self.trials],
        }

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        plan = pl_module.plan
        checkpoint[STACK_KEY] = stack_section(
            [trial.run.path.name for trial in self.trials],
            [trial.carried for trial in self.trials],
            self.state_key,
            type(trainer.datamodule).__qualname__,
            dict(pl_module.left_lr),
            None if plan is None or plan.uniform else plan.counts(),
        )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """A resumed stack (`checkpoint_format.join`): each trial's record and best so far, as its own
        checkpoint had them."""
        for trial, own in zip(
            self.trials, map(decoded_checkpointer, state_dict["checkpointers"]), strict=True
        ):
            if trial.checkpointer is not None and own is not None:
                trial.checkpointer.load_state_dict(own)
        for trial, own in zip(self.trials, map(decoded, state_dict["records"]), strict=True):
            if own is not None:
                trial.record.load_state_dict(own)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for trial in self.trials:
            trial.record.start(trial.loggers)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for trial in self.trials:
            if trial.active:
                trial.record.epoch_started()
        self._epoch_clock = (time.perf_counter(), [self._steps(trainer, k) for k in range(len(self.trials))])

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # A trial whose loss stopped being finite leaves the stack, read every `check_every_n_steps` steps as
        # its single run's StopOnNonFiniteLoss reads it (a host sync each time; the first bad step is kept on
        # the device, so the error names it exactly), and at the epoch's end (`epoch_metrics`).
        if self.check_every and pl_module.mixed:  # each trial read at its own steps
            due = [
                k
                for k in pl_module._stepping_now
                if pl_module.trial_steps(k, trainer.global_step) % self.check_every == 0
            ]
            if due:
                self._leave_diverged(trainer, due)
        elif self.check_every and trainer.global_step % self.check_every == 0:
            self._leave_diverged(trainer)
        if trainer.fit_loop.epoch_loop.batch_progress.current.completed == trainer.num_training_batches // 2:
            pause_point(f"mid_epoch:{trainer.current_epoch}")  # between two checkpoints (fault tests)
        if pl_module.mixed:  # last: Lightning reads the SIGTERM flag right after this hook
            self._stop_at_a_common_boundary(trainer, pl_module.plan.at_common_boundary(batch_idx + 1))

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        *args,
    ) -> None:
        pause_mid_validation(trainer, batch_idx)

    def _stop_at_a_common_boundary(self, trainer: L.Trainer, at_boundary: bool) -> None:
        """Trials of different batch sizes: a SIGTERM takes effect where every trial has just stepped (a
        few micro-batches later at most), so that `interrupted.ckpt` holds no half-accumulated gradient and
        each trial's copy is its single run's. Lightning raises its SIGTERMException after this hook when
        its signal connector says so."""
        if sigterm_received(trainer) and not at_boundary:
            set_sigterm_received(trainer, False)
            self._sigterm_held = True
        elif self._sigterm_held and at_boundary:
            set_sigterm_received(trainer, True)
            self._sigterm_held = False

    def _leave_diverged(self, trainer: L.Trainer, only: list[int] | None = None) -> None:
        """The trials (or those of `only`: due to be read) whose loss stopped being finite leave."""
        for k, step in enumerate(trainer.lightning_module.first_bad_step.tolist()):
            if step >= 0 and self.active(k) and (only is None or k in only):
                self._diverged(trainer, k, step)
        if not self.refills and not any(self.active(k) for k in range(len(self.trials))):
            trainer.should_stop = True  # every trial failed or was pruned

    def epoch_metrics(self, trainer: L.Trainer, metrics: list[dict[str, float]]) -> None:
        """Called by the stacked module after each validation epoch (not the sanity check)."""
        if self.check_every:
            self._leave_diverged(trainer)
        for k, (trial, values) in enumerate(zip(self.trials, metrics, strict=True)):
            if not trial.active:
                continue
            trial.record.validated(values)
            # The step Lightning's logger connector logs a single run's epoch metrics at (validation runs
            # before the epoch's last batch is counted), so both runs' curves overlay in TensorBoard.
            step = self._steps(trainer, k, logged_step(trainer))
            trial.log_scalars({**values, "epoch": self._epoch(trainer, k)}, step)
            trial.log_scalars(by_epoch(values), self._epoch(trainer, k) + 1)
            self._keep_best(trainer, k, values)
            self._report(trainer, k, values)

    def _keep_best(self, trainer: L.Trainer, k: int, values: dict[str, float]) -> None:
        """Trial k's best checkpoints, kept by its own ModelCheckpoint's rule, Lightning's code as a single run
        runs it (`check_monitor_top_k`, then `compat.lightning.keep_best`: mode, NaN, the file's name and the
        one it replaces, its state); only the file writes are the stack's."""
        checkpointer = self.trials[k].checkpointer
        if checkpointer is None or checkpointer.save_top_k == 0 or checkpointer.monitor not in values:
            return  # save_top_k 0: Lightning's ModelCheckpoint keeps nothing either
        current = torch.tensor(values[checkpointer.monitor])
        if not checkpointer.check_monitor_top_k(trainer, current):
            return
        # Plain numbers format as ModelCheckpoint's tensors do (`{val/acc:.4f}`, `{epoch:03d}`), at a fraction of
        # the cost of K x metrics tensors per epoch.
        candidates = {**values, "epoch": self._epoch(trainer, k), "step": self._steps(trainer, k)}
        saved, removed = keep_best(checkpointer, current, trainer, candidates)
        self.new_best.extend(saved)
        self.replaced_best.extend(removed)

    def _diverged(self, trainer: L.Trainer, k: int, step: int) -> None:
        """Trial k's loss stopped being finite at `step`: it fails (as a single run does, naming the step) and
        leaves the stack (lr 0); its checkpoints of the earlier epochs stay, plus `interrupted.ckpt`."""
        trial = self.trials[k]
        group = trainer.optimizers[0].param_groups[k]
        trial.failed = diverged(step, self._epoch(trainer, k), group["lr"], trial.run.path)
        self._write(trainer, [trial.run.checkpoints / INTERRUPTED_CHECKPOINT])
        trainer.lightning_module.leave(k)
        trial.record.failed(trial.failed, **self._counts(trainer, k))
        log.error("%s", trial.failed)

    def _report(self, trainer: L.Trainer, k: int, values: dict[str, float]) -> None:
        """Trial k's metric to its Optuna trial; if the pruner stops it, it leaves the stack after this epoch:
        its param group's lr becomes 0 (its weights stay as they are) and nothing more is recorded for it."""
        trial = self.trials[k]
        monitor = trial.cfg.get("optimized_metric")
        if trial.study_trial is None or monitor not in values:
            return
        epoch = self._epoch(trainer, k)
        if report(trial.study_trial, values[monitor], epoch, trial.cfg.trainer.get("max_epochs")):
            trial.pruned_after = epoch
            trainer.lightning_module.leave(k)
            log.info("trial %d pruned after epoch %d: it leaves the stack", trial.study_trial.number, epoch)

    def active(self, k: int) -> bool:
        return self.trials[k].active

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The epoch's one checkpoint of the stack: each trial's last.ckpt (a trial pruned after this epoch
        included), and the best file of each trial whose val/acc improved."""
        pruned_now = [
            k
            for k, trial in enumerate(self.trials)
            if trial.pruned_after is not None
            and trial.pruned_after == self._epoch(trainer, k)
            and not trial.closed
        ]
        ending = [k for k in range(len(self.trials)) if self.active(k) or k in pruned_now]
        for k in ending:
            self.trials[k].record.epoch_ended()
        self._charge_epoch(trainer, ending)
        flush_all(self._open_event_files())
        best = [Path(path) for path in self.new_best]
        self._write(trainer, [self.trials[k].run.checkpoints / LAST_CHECKPOINT for k in ending] + best)
        for previous in self.replaced_best:
            Path(previous).unlink(missing_ok=True)
        self.new_best, self.replaced_best = [], []
        for k in pruned_now:  # its pictures now, while its loggers are open; its record final
            self._draw_pictures(trainer, k)
            self._finish(trainer, k, epoch_done=True)
        pause_point(f"epoch_end:{trainer.current_epoch}")
        if not self.refills and not any(self.active(k) for k in range(len(self.trials))):
            trainer.should_stop = True  # every trial failed or was pruned

    def _charge_epoch(self, trainer: L.Trainer, trials: list[int]) -> None:
        """Each trial's cost (`wall_time_s`): the stack's epoch time, shared among its trials by the steps each
        took in it, so that a trial costs what it trained, not the whole stack's time."""
        if self._epoch_clock is None:
            return
        started, steps_before = self._epoch_clock
        seconds = time.perf_counter() - started
        steps = {
            k: self._steps(trainer, k) - (steps_before[k] if k < len(steps_before) else 0) for k in trials
        }
        total = sum(steps.values())
        for k in trials:
            self.trials[k].record.charge(seconds * steps[k] / total if total else seconds / len(trials))

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        """Ctrl-C, SIGTERM or an error: every trial still training keeps `interrupted.ckpt` and its record,
        as a single run does (a write the disk refuses is the error already being reported)."""
        active = [k for k in range(len(self.trials)) if self.active(k)]
        try:
            flush_all(self._open_event_files())
        except OSError as err:  # the disk that stopped the fit, most likely: its error is the one reported
            log.warning("the last epoch's TensorBoard scalars were not all written: %s", err)
        module = trainer.lightning_module
        between_steps = module.mixed and not module.plan.at_common_boundary(
            trainer.fit_loop.epoch_loop.batch_progress.current.completed
        )
        if between_steps and worth_an_interrupted_checkpoint(trainer, exception):
            log.warning(
                "stacked fit stopped (%s) while trials of different batch sizes stood between steps: each "
                "trial resumes from its last.ckpt",
                type(exception).__name__,
            )
        elif worth_an_interrupted_checkpoint(trainer, exception):
            try:
                self._write(
                    trainer, [self.trials[k].run.checkpoints / INTERRUPTED_CHECKPOINT for k in active]
                )
            except WriteFailed as err:
                log.warning("interrupted.ckpt was not saved for every trial: %s", err)
            log.warning("stacked fit stopped (%s); each trial's checkpoint saved", type(exception).__name__)
        for k in active:
            self.trials[k].record.failed(exception, **self._counts(trainer, k))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        open_slots = [k for k, trial in enumerate(self.trials) if not trial.closed]
        if not open_slots:  # a continuous stack closes each trial as it leaves (`leave_stack`)
            return
        started = time.perf_counter()
        # Each trial's pictures are drawn here and encoded and written by one helper thread meanwhile (PNG
        # encoding and file writes release the GIL), with torch on one thread (`_one_torch_thread`). A
        # trial's loggers and picture folder are its own, and nothing else touches them until every picture
        # is written. The pictures and checkpoints are committed together (`atomic.together`: one disk
        # flush for all, rather than an fsync a file).
        with (
            _one_torch_thread(),
            together(),
            ThreadPoolExecutor(1, thread_name_prefix="digitlab-pictures") as writer,
        ):
            written = [
                writer.submit(contextvars.copy_context().run, save_pictures, *job)
                for k in open_slots
                if (job := self._pictures(trainer, k))
            ]
            self._split_into_trials([self.trials[k].run for k in open_slots])
            for picture in written:
                picture.result()
            pause_point("trial_files_held")
        say(
            "%d trials' pictures and own checkpoints written in %.1f s",
            len(open_slots),
            time.perf_counter() - started,
        )
        pause_point("before_metrics")
        for k in open_slots:
            if self.active(k):
                self._finish(trainer, k)
            elif self.trials[k].failed is not None:
                _finalize(self.trials[k].loggers, "failed")

    def leave_stack(self, trainer: L.Trainer, k: int) -> dict[str, Any] | Exception:
        """A continuous stack's slot k at an epoch's end, once its trial is done (its epochs trained, pruned
        or failed): its pictures, its folder's own checkpoints and final record, as a fit's end writes them
        for every trial of a stack; the slot is then closed. Its outcome (`outcome`)."""
        trial = self.trials[k]
        self._draw_pictures(trainer, k)
        self._split_into_trials([trial.run])
        if trial.active:
            self._finish(trainer, k, epoch_done=True)
            trainer.lightning_module.leave(k)
        elif trial.failed is not None:
            _finalize(trial.loggers, "failed")
        trial.closed = True
        return self.outcome(k)

    def outcome(self, k: int) -> dict[str, Any] | Exception:
        """Slot k's trial's final metrics (`metrics.json`), or the error that ended it (`TrialPruned` for a
        trial the pruner stopped)."""
        trial = self.trials[k]
        if trial.pruned_after is not None:
            return trial_pruned(trial.study_trial.number, trial.pruned_after)
        return trial.failed or Run(trial.run.path).metrics

    def _draw_pictures(self, trainer: L.Trainer, k: int) -> None:
        job = self._pictures(trainer, k)
        if job:
            save_pictures(*job)

    def _pictures(self, trainer: L.Trainer, k: int) -> tuple[Any, ...] | None:
        """Trial k's pictures drawn, with where `save_pictures` puts them (None: it draws none)."""
        trial = self.trials[k]
        cfg = trial.cfg
        if trial.failed is not None or trial.pictured or not cfg.get("callbacks", {}).get("pictures"):
            return None
        trial.pictured = True
        pictures = draw_pictures(
            trial.module,
            trainer.lightning_module.last_predictions(k),
            cfg.callbacks.pictures.max_misclassified,
        )
        return pictures, trial.loggers, self._steps(trainer, k), trial.run.pictures

    def _steps(self, trainer: L.Trainer, k: int, micro_batches: int | None = None) -> int:
        """Trial k's own step count (its single run's) at the stack's `micro_batches` (default: now)."""
        count = trainer.global_step if micro_batches is None else micro_batches
        return trainer.lightning_module.trial_steps(k, count)

    def _counts(self, trainer: L.Trainer, k: int, epoch_done: bool = False) -> dict[str, int]:
        """Trial k's epochs (the current one counted when `epoch_done`: at its end), steps and size."""
        return {
            "epochs": self._epoch(trainer, k) + (1 if epoch_done else 0),
            "steps": self._steps(trainer, k),
            "parameters": sum(p.numel() for p in self.trials[k].module.parameters()),
        }

    def _finish(self, trainer: L.Trainer, k: int, epoch_done: bool = False) -> None:
        """Trial k's `metrics.json` (and the `trial/pruned` scalar under Optuna), its loggers closed."""
        trial = self.trials[k]
        extra = {**pruned_record(trial.pruned_after), "stacked_with": len(self.trials)}
        if trial.study_trial is not None:
            log_pruned(trial.loggers, trial.pruned_after is not None, self._steps(trainer, k))
        _finalize(trial.loggers, "success")
        trial.record.finish(extra.pop("status", COMPLETED), **self._counts(trainer, k, epoch_done), **extra)
        best = trial.checkpointer.best_model_path if trial.checkpointer else None
        log_run_artifacts(trial.loggers, trial.run.path, best)

    def _write(self, trainer: L.Trainer, targets: list[Path]) -> None:
        """One checkpoint of the whole stack (Lightning's, with `checkpoint_format.STACK_KEY`), written once
        under the first of `targets` and linked under the others."""
        if not targets:
            return
        trainer.save_checkpoint(targets[0], weights_only=False)
        for target in targets[1:]:
            link_checkpoint(targets[0], target, trainer.current_epoch)

    def _split_into_trials(self, runs: list[Run]) -> None:
        """The trials' checkpoints become their own files, as their single runs' are: a finished trial's
        folder stands alone (copied, renamed, its sweep's other folders deleted). Each stack file is read
        once."""
        read: dict[tuple[int, int], dict[str, Any]] = {}
        for run in runs:
            for path in sorted(run.checkpoints.glob("*.ckpt")):
                stat = path.stat()
                key = (stat.st_dev, stat.st_ino)
                if key not in read:
                    try:
                        read[key] = read_stored(path)
                    except Exception:  # not a checkpoint of this stack (resume passed it over): left alone
                        read[key] = {}
                unit = read[key]
                slot = slot_of(unit, run.path.name) if is_stack(unit) else None
                if slot is not None:
                    save_checkpoint(split(unit, slot), path)


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Torch's ops on one thread meanwhile: after each op its idle OpenMP workers spin for a while, and on a
    2-core machine they take the core the pictures' helper thread encodes on, and drawing beside encoding
    would be slower than the two one after the other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _finalize(loggers: list[Any], status: str) -> None:
    for logger in loggers:
        logger.finalize(status)


def _model_checkpoint(cfg: DictConfig) -> ModelCheckpoint | None:
    node = (cfg.get("callbacks") or {}).get("model_checkpoint")
    return build.instantiate(node) if node else None
