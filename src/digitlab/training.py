"""Fit one composed experiment: validate -> build (see `build.py`) -> fit -> the run dir holds `.hydra/`,
TensorBoard's event files, `checkpoints/` and, last, `metrics.json` (see `rundir.py`). The CLIs, the Python
API and the sweeps call `train`; it applies no process-wide setting itself.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from omegaconf import DictConfig, OmegaConf

import digitlab.build as build
import digitlab.rundir as rundir
from digitlab.errors import DigitlabError, RunInterrupted

log = logging.getLogger(__name__)


def parallel_jobs(hydra_cfg: DictConfig | None = None) -> int:
    """How many jobs the Hydra launcher runs at once (1 outside a parallel multirun): `hydra.launcher.n_jobs`
    of `hydra_cfg` (a config's `hydra` node), else of the running job's."""
    from hydra.core.hydra_config import HydraConfig

    if hydra_cfg is None:
        if not HydraConfig.initialized():
            return 1
        hydra_cfg = HydraConfig.get()
    n_jobs = OmegaConf.select(hydra_cfg, "launcher.n_jobs", default=1) or 1
    return (os.cpu_count() or 1) if n_jobs < 0 else n_jobs


def quiet_sweep_job() -> int | None:
    """This job's number in a sweep whose console is quiet (see `console.py`); None for a single run, or
    when `-v` asked for every job's full output."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from digitlab.console import verbose

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN or verbose(hydra_cfg.verbose):
        return None
    return int(hydra_cfg.job.num)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit the experiment `cfg` describes (already validated); return its final metrics (`metrics.json`)."""
    run = rundir.Run(cfg.paths.output_dir)
    if cfg.get("resume") and run.completed:
        from digitlab.console import say

        say("resume: %s is complete (metrics.json exists); skipped", run.path)
        return run.metrics
    if cfg.get("print_config"):
        print_tree(cfg)
    import lightning as L
    import torch

    from digitlab.callbacks.results import RunResults

    jobs = parallel_jobs()
    threads = cfg.get("torch_threads") or (max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None)
    if threads:
        torch.set_num_threads(threads)  # jobs side by side must not each claim every core
        log.info("torch threads per job: %d", threads)
    from digitlab.checkpoints import resume_checkpoint

    ckpt_path = cfg.get("ckpt_path") or (resume_checkpoint(run.path) if cfg.get("resume") else None)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build.datamodule(cfg)
    model = build.model(cfg, datamodule.class_names)
    if int(os.environ.get("LOCAL_RANK", 0)) == 0:
        # Fetch and check the data before any training, so a bad folder is one clear error and not an
        # interrupted fit (DDP children, LOCAL_RANK > 0, wait for rank 0's copy inside fit instead).
        datamodule.prepare_data()
    loggers = build.loggers(cfg)
    if cfg.get("lr_find"):
        from digitlab.lr_find import find_lr
        from digitlab.process import quiet_lightning

        with quiet_lightning():  # the finder says one line, its plot and the command (`cli.train.report`)
            trainer = build.trainer(
                cfg,
                logger=loggers or False,
                callbacks=[],
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
            )
            return find_lr(trainer, model, datamodule, run.path)
    callbacks = build.callbacks(cfg)
    from digitlab.config.hparams import hparams_from_config

    pruning = trial_pruning(cfg, run)
    config = OmegaConf.to_container(cfg, resolve=True)
    callbacks += [pruning] if pruning else []
    hparams = hparams_from_config(config, run_choices(run))
    callbacks.append(RunResults(run.path, hparams, config, outcome=pruning))
    quiet = {"enable_progress_bar": False} if jobs > 1 else {}  # bars of parallel jobs would interleave
    job = quiet_sweep_job()
    if job is not None:  # a sweep's job: no bar, and the model summary once, by the sweep's first job
        from lightning.pytorch.callbacks import ModelSummary, ProgressBar

        quiet = {"enable_progress_bar": False, "enable_model_summary": job == 0}
        drop = ProgressBar if job == 0 else (ProgressBar, ModelSummary)
        callbacks = [callback for callback in callbacks if not isinstance(callback, drop)]
    trainer = build.trainer(cfg, logger=loggers or False, callbacks=callbacks, **quiet)
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:
        raise RunInterrupted(
            f"training was stopped by SIGTERM; checkpoints and logs are kept in {run.path}. Run the same command "
            "with resume=true (and hydra.run.dir=<that folder>) to continue."
        ) from None
    finished = rundir.Run(run.path)  # a fresh read: `run` looked before fit
    if trainer.interrupted:
        raise RunInterrupted(f"training was interrupted; checkpoints and logs are kept in {run.path}")
    if not finished.completed:
        raise DigitlabError(f"training stopped before the end; checkpoints and logs are kept in {run.path}")
    if pruning:
        pruning.raise_if_pruned()  # after metrics.json: the sweeper records the trial as PRUNED
    return finished.metrics


def run_choices(run: rundir.Run) -> Any:
    """Hydra's group choices of the job training in `run` (`model` -> `mlp`): the running job's, else the
    ones its folder's `.hydra/hydra.yaml` records."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return OmegaConf.select(HydraConfig.get(), "runtime.choices")
    return (run.hydra.get("runtime") or {}).get("choices")


def trial_pruning(cfg: DictConfig, run: rundir.Run):
    """Under digitlab's Optuna sweeper: the callback that reports `optimized_metric` each epoch and stops
    the fit when the study's pruner says so (None otherwise, and for a multi-objective study, which Optuna
    cannot prune)."""
    from digitlab.sweeps.trial import current_trial, prunable, record_run

    trial = current_trial()
    if trial is None:
        return None
    record_run(trial, run)
    if not prunable(trial):
        return None
    from digitlab.callbacks.pruning import TrialPruning

    return TrialPruning(trial, cfg.optimized_metric)


def print_tree(cfg: DictConfig) -> None:
    """The composed config as a tree, one branch per group."""
    from rich import print as rich_print
    from rich.syntax import Syntax
    from rich.tree import Tree

    tree = Tree("config", guide_style="dim")
    for key, value in cfg.items():
        text = OmegaConf.to_yaml(value, resolve=True) if OmegaConf.is_config(value) else f"{value}\n"
        tree.add(str(key)).add(Syntax(text.rstrip(), "yaml", theme="ansi_dark", background_color="default"))
    rich_print(tree)
