"""Fit K stacked trials in one Lightning fit, each leaving the run dir a single run leaves: `config.json`,
TensorBoard scalars and hparams in its own event file, `checkpoints/` (the best epoch by val/acc and
`last.ckpt`, each holding only that trial's module and config, so digitlab-eval and digitlab-predict load
them as any run's), and `metrics.json` last.

Each trial's module is built as `training.train` builds it (seeded, then the datamodule, then the model), so
its initial weights are the ones it would start from alone; its batches come in its own shuffle order
(`batches.py`).
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

import digitlab.build as build
from digitlab.callbacks.guards import TrainingDiverged
from digitlab.callbacks.results import log_hparams
from digitlab.config.hparams import hparams_from_config
from digitlab.data.datamodules import keep_batch
from digitlab.rundir import COMPLETED, CONFIG_KEY, LAST_CHECKPOINT, Run
from digitlab.stacked.batches import StackedBatchSampler, StackedTensorBatches
from digitlab.stacked.module import StackedClassifier

log = logging.getLogger(__name__)


class StackedData(L.LightningDataModule):
    """The trials' shared datamodule, with training batches for every trial at once."""

    def __init__(self, inner: L.LightningDataModule, seeds: list[int]) -> None:
        super().__init__()
        self.inner = inner
        self.seeds = seeds

    def prepare_data(self) -> None:
        self.inner.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        self.inner.trainer = self.trainer  # where the splits live (device_resident)
        self.inner.setup(stage)
        train = self.inner.train_set
        self.train_set = StackedTensorBatches(train.images, train.labels)

    def train_dataloader(self) -> DataLoader:
        sampler = StackedBatchSampler(
            len(self.train_set), self.inner.batch_size, self.seeds, self.inner.shuffle
        )
        return DataLoader(self.train_set, batch_sampler=sampler, collate_fn=keep_batch)

    def val_dataloader(self) -> DataLoader:
        return self.inner.val_dataloader()


class TrialRecords(L.Callback):
    """Per trial: hparams and config when fit starts, scalars every epoch, checkpoints, metrics.json."""

    def __init__(self, cfgs: list[DictConfig], modules: list[L.LightningModule]) -> None:
        self.cfgs = cfgs
        self.modules = modules
        self.runs = [Run(cfg.paths.output_dir) for cfg in cfgs]
        self.loggers = [build.loggers(cfg) for cfg in cfgs]
        self.configs = [OmegaConf.to_container(cfg, resolve=True) for cfg in cfgs]
        self.latest: list[dict[str, float]] = [{} for _ in cfgs]
        self.best_acc = [-math.inf] * len(cfgs)
        self.best_path: list[Path | None] = [None] * len(cfgs)
        self.failed: dict[int, Exception] = {}
        self._started = time.perf_counter()
        self._epoch_times: list[float] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()
        for cfg, run, config, loggers in zip(self.cfgs, self.runs, self.configs, self.loggers, strict=True):
            run.write_config(config)
            log_hparams(loggers, hparams_from_config(cfg))

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_started = time.perf_counter()

    def epoch_metrics(self, trainer: L.Trainer, metrics: list[dict[str, float]]) -> None:
        """Called by the stacked module after each validation epoch (not the sanity check)."""
        for k, values in enumerate(metrics):
            if k in self.failed:
                continue
            if not math.isfinite(values.get("train/loss", 0.0)):
                self.failed[k] = TrainingDiverged(
                    f"training loss of {self.runs[k].path.name} became {values['train/loss']} in epoch "
                    f"{trainer.current_epoch}; checkpoints and logs are kept in {self.runs[k].path}"
                )
                log.error("%s", self.failed[k])
                continue
            self.latest[k] = values
            for logger in self.loggers[k]:
                logger.log_metrics({**values, "epoch": trainer.current_epoch}, step=trainer.global_step)
            if values["val/acc"] > self.best_acc[k]:
                self.best_acc[k] = values["val/acc"]
                name = f"epoch{trainer.current_epoch:03d}-acc{values['val/acc']:.4f}.ckpt"
                path = self.runs[k].checkpoints / name
                self._save(trainer, k, path)
                if self.best_path[k] and self.best_path[k] != path:
                    self.best_path[k].unlink(missing_ok=True)
                self.best_path[k] = path

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_times.append(time.perf_counter() - self._epoch_started)
        for k, run in enumerate(self.runs):
            self._save(trainer, k, run.checkpoints / LAST_CHECKPOINT)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        wall = round(time.perf_counter() - self._started, 3)
        for k, run in enumerate(self.runs):
            for logger in self.loggers[k]:
                logger.finalize("success" if k not in self.failed else "failed")
            if k in self.failed:
                continue
            metrics: dict[str, Any] = dict(sorted(self.latest[k].items()))
            metrics |= {
                "status": COMPLETED,
                "epochs": trainer.current_epoch,
                "steps": trainer.global_step,
                "wall_time_s": wall,  # the whole stack's: its trials trained together
                "epoch_time_s": round(statistics.median(self._epoch_times), 4) if self._epoch_times else None,
                "parameters": sum(p.numel() for p in self.modules[k].parameters()),
                "stacked_with": len(self.runs),
            }
            run.write_metrics(metrics)

    def _save(self, trainer: L.Trainer, k: int, path: Path) -> None:
        """A checkpoint of trial k alone, in Lightning's layout: what `checkpoints.build_from_checkpoint` reads."""
        module = self.modules[k]
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "epoch": trainer.current_epoch,
                "global_step": trainer.global_step,
                "pytorch-lightning_version": L.__version__,
                "state_dict": module.state_dict(),
                "hyper_parameters": dict(module.hparams),
                CONFIG_KEY: self.configs[k],
            },
            path,
        )


def train_stack(cfgs: list[DictConfig]) -> list[dict[str, Any] | Exception]:
    """Fit the trials of `cfgs` (composed and validated, stackable: see `grouping.py`) together; per trial its
    final metrics (`metrics.json`), or the error that failed it."""
    first = cfgs[0]
    modules = []
    for cfg in cfgs:
        L.seed_everything(cfg.seed, workers=True, verbose=False)  # as training.train does, in its order
        datamodule = build.datamodule(cfg)
        modules.append(build.model(cfg, datamodule.class_names))
    data = StackedData(build.datamodule(first), [cfg.data.seed for cfg in cfgs])
    records = TrialRecords(cfgs, modules)
    model = StackedClassifier(
        modules, on_epoch_metrics=lambda _, metrics: records.epoch_metrics(trainer, metrics)
    )
    trainer = build.trainer(
        first,
        logger=False,
        callbacks=[records],
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=str(Path(first.paths.output_dir).parent),
    )
    log.info(
        "stacked: %d trials in one fit (%s)",
        len(cfgs),
        ", ".join(Run(c.paths.output_dir).path.name for c in cfgs),
    )
    data.prepare_data()
    trainer.fit(model, datamodule=data)
    return [records.failed.get(k) or Run(run.path).metrics for k, run in enumerate(records.runs)]
