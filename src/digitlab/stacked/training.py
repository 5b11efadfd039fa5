"""Fit K stacked trials in one Lightning fit: the trials' modules built as their single runs build them,
their data (`data.StackedData`), their records (`records.TrialRecords`) and the stacked module
(`module.StackedClassifier`) under one Trainer.

Each trial's module is built as `training.train` builds it (seeded, then the datamodule, then the model), so
its initial weights are the ones it would start from alone; its batches come in its own shuffle order
(`batches.py`). A stack resumes from its trials' checkpoints joined back into one (`checkpoint_format.join`).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

import digitlab.build as build
from digitlab.checkpoint_format import join
from digitlab.checkpoints import read_checkpoint
from digitlab.errors import RunInterrupted
from digitlab.rundir import Run
from digitlab.stacked.data import StackedData
from digitlab.stacked.module import StackedClassifier
from digitlab.stacked.records import TrialRecords
from digitlab.stacked.steps import StepPlan

log = logging.getLogger(__name__)


def trial_module(cfg: DictConfig) -> tuple[L.LightningModule, L.LightningDataModule]:
    """A trial's module and datamodule, built as `training.train` builds them (seeded, then the datamodule,
    then the model), so its initial weights are the ones it would start from alone."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build.datamodule(cfg)
    return build.model(cfg, datamodule.class_names), datamodule


def build_stack(
    cfgs: list[DictConfig],
    hydra_cfgs: list[Any] | None = None,
    *,
    refills: dict[str, Any] | None = None,
    callbacks: list[L.Callback] = (),
) -> tuple[L.Trainer, StackedClassifier, StackedData, TrialRecords]:
    """The fit of the trials of `cfgs` (composed and validated, stackable: see `grouping.py`; `hydra_cfgs`
    their jobs' Hydra configs, for the Optuna trial each may be). A continuous stack (`slots.py`) gives
    `refills`: its micro-batch (`micro`), the nets its rows must hold (`widest`), its trials' own epochs
    (`trial_epochs`), and per trial what it continues from, if it continues a run (`continued`:
    `checkpoint_format.Continued` or None); its fit runs until no trial is left."""
    first = cfgs[0]
    modules, datamodules = zip(*(trial_module(cfg) for cfg in cfgs), strict=True)
    continued = {
        k: state for k, state in enumerate((refills or {}).get("continued") or []) if state is not None
    }
    for k, state in continued.items():
        modules[k].load_state_dict(state.weights)
    # A trial that continues a run joined, as the stack counts, as many epochs before its start as it trained.
    joined = [-continued[k].epochs if k in continued else 0 for k in range(len(cfgs))]
    inner = build.datamodule(first)
    inner.prepare_data()
    inner.setup("fit")  # the training set's size: when each trial steps (on the CPU; the fit moves it)
    plan = StepPlan(
        len(inner.train_set),
        [cfg.data.batch_size for cfg in cfgs],
        len(inner.valid_set),
        [cfg.data.eval_batch_size or cfg.data.batch_size for cfg in cfgs],
        micro=refills["micro"] if refills else None,
        start_epochs=joined if refills else None,
    )
    orders = {k: state.order for k, state in continued.items()}
    data = StackedData(inner, [cfg.data.seed for cfg in cfgs], plan, orders)
    records = TrialRecords(cfgs, list(modules), list(datamodules), hydra_cfgs)
    for k, state in continued.items():
        records.continue_slot(k, state, joined[k])
    model = StackedClassifier(
        modules,
        on_epoch_metrics=lambda metrics: records.epoch_metrics(trainer, metrics),
        shuffle_of=data.rows,
        compile=first.model.get("compile") or False,
        plan=plan,
        widest=refills["widest"] if refills else (),
        trial_epochs=refills["trial_epochs"] if refills else None,
        continued=continued,
    )
    trainer = build.trainer(
        first,
        logger=False,
        callbacks=[records, *callbacks],
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=str(Path(first.paths.output_dir).parent),
        # Until no trial is left (`slots.Refills`); each trial's line says how far the search is.
        **({"max_epochs": -1, "enable_progress_bar": False} if refills else {}),
    )
    log.info(
        "stacked: %d trials in one fit, run folders %s ... %s",
        len(cfgs),
        Run(cfgs[0].paths.output_dir).path,
        Run(cfgs[-1].paths.output_dir).path.name,
    )
    return trainer, model, data, records


def fit_stack(
    trainer: L.Trainer, model: StackedClassifier, data: StackedData, ckpt_path: Path | None = None
) -> None:
    """`trainer.fit`; a SIGTERM is said as a single run says it (`training.train`): its trials are given
    back."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    try:
        trainer.fit(model, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:
        raise RunInterrupted(
            "the stacked fit was stopped by SIGTERM; each trial's checkpoints are kept"
        ) from None


def train_stack(
    cfgs: list[DictConfig], hydra_cfgs: list[Any] | None = None, resume_from: list[str | None] | None = None
) -> list[dict[str, Any] | Exception]:
    """Fit the trials of `cfgs` together (`build_stack`; `resume_from` the checkpoints they continue from,
    all at the same step, see `resume.py`); per trial its outcome (`TrialRecords.outcome`). Reached through
    `job.run_checked_jobs`, which holds and checks each trial's run folder first."""
    trainer, model, data, records = build_stack(cfgs, hydra_cfgs)
    with tempfile.TemporaryDirectory(prefix="digitlab-stack-") as tmp:
        ckpt_path = None
        if resume_from and all(resume_from):
            ckpt_path = Path(tmp) / "stack.ckpt"
            trials = [read_checkpoint(path) for path in resume_from]
            torch.save(join(trials, records.state_key, type(data).__qualname__), ckpt_path)
        fit_stack(trainer, model, data, ckpt_path)
    return [records.outcome(k) for k in range(len(cfgs))]
