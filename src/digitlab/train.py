"""Train one composed experiment: `digitlab-train [overrides]` or `python -m digitlab.train [overrides]`.

validate the config -> instantiate datamodule, model, loggers, callbacks, trainer (all named by `_target_`)
-> fit -> the run dir holds `.hydra/`, `tensorboard/`, `checkpoints/` and, last, `metrics.json`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from digitlab.config import check_group_overrides, config_dir, hparams_from_config, validate
from digitlab.errors import DigitlabError
from digitlab.exiting import skip_exit_gc

log = logging.getLogger(__name__)

# Our batches are slices of in-memory tensors: DataLoader workers would only add inter-process copies.
warnings.filterwarnings("ignore", ".*does not have many workers.*")
# Metrics are logged per epoch, so Lightning's per-step logging interval does not apply.
warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
# The pixel-similarity baseline has nothing to optimize, by design.
warnings.filterwarnings(
    "ignore", ".*configure_optimizers. returned .None., this fit will run with no optimizer.*"
)
# Raised inside Lightning itself under recent torch; nothing for a user to change.
warnings.filterwarnings("ignore", ".*isinstance.treespec, LeafSpec.*")


class _DropAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def _one_log_stream() -> None:
    """The `lightning` package adds its own console handler and also propagates to the root logger, which
    Hydra has set up (console and <run>/train.log): keep Hydra's, so each message shows once and is saved."""
    lightning_logger = logging.getLogger("lightning")
    if logging.getLogger().hasHandlers():
        for handler in list(lightning_logger.handlers):
            lightning_logger.removeHandler(handler)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropAdverts())


def instantiate(node: Any, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, but a DigitlabError raised by the target reaches the user as itself."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    try:
        return hydra_instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, DigitlabError):
            raise err.__cause__ from None
        raise


def _parallel_jobs() -> int:
    """How many jobs the Hydra launcher runs at once (1 outside a parallel multirun)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return 1
    n_jobs = OmegaConf.select(HydraConfig.get(), "launcher.n_jobs", default=1) or 1
    return (os.cpu_count() or 1) if n_jobs < 0 else n_jobs


def resume_checkpoint(output_dir: Path) -> str | None:
    """The checkpoint an interrupted run continues from: the last completed epoch (`last.ckpt`), so no
    epoch is lost or half counted; `interrupted.ckpt` (mid-epoch) only if no epoch had completed."""
    for name in ("last.ckpt", "interrupted.ckpt"):
        path = output_dir / "checkpoints" / name
        if path.exists():
            log.info("resume: continuing %s from %s", output_dir, path)
            return str(path)
    return None


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit the experiment `cfg` describes; return its final metrics (the content of `metrics.json`)."""
    output_dir = Path(cfg.paths.output_dir)
    metrics_file = output_dir / "metrics.json"
    if cfg.get("resume") and metrics_file.exists():
        log.info("resume: %s is complete (metrics.json exists); skipped", output_dir)
        return json.loads(metrics_file.read_text())
    validate(cfg)
    if cfg.get("print_config"):
        print_tree(cfg)
    import lightning as L
    import torch

    from digitlab.callbacks.results import RunResults

    _one_log_stream()
    jobs = _parallel_jobs()
    threads = cfg.get("torch_threads") or (max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None)
    if threads:
        torch.set_num_threads(threads)  # jobs side by side must not each claim every core
        log.info("torch threads per job: %d", threads)
    ckpt_path = cfg.get("ckpt_path") or (resume_checkpoint(output_dir) if cfg.get("resume") else None)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    if int(os.environ.get("LOCAL_RANK", 0)) == 0:
        # Fetch and check the data before any work starts, so a bad folder is one clear error and not an
        # interrupted fit (DDP children, LOCAL_RANK > 0, wait for rank 0's copy inside fit instead).
        datamodule.prepare_data()
    # _convert_="all": plain lists and dicts reach torch (and its checkpoints), not OmegaConf containers.
    model = instantiate(cfg.model, class_names=list(datamodule.class_names), _convert_="all")
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    if cfg.get("lr_find"):
        from digitlab.lr_find import find_lr

        trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=[], enable_checkpointing=False)
        return find_lr(trainer, model, datamodule, output_dir)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    config = OmegaConf.to_container(cfg, resolve=True)
    callbacks.append(RunResults(output_dir, hparams_from_config(cfg), config))
    quiet = {"enable_progress_bar": False} if jobs > 1 else {}  # bars of parallel jobs would interleave
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks, **quiet)
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    except SIGTERMException:
        raise DigitlabError(
            f"training was stopped by SIGTERM; checkpoints and logs are kept in {output_dir}. Run the same command "
            "with resume=true (and hydra.run.dir=<that folder>) to continue."
        ) from None
    if trainer.interrupted or not metrics_file.exists():
        raise DigitlabError(f"training stopped before the end; checkpoints and logs are kept in {output_dir}")
    return json.loads(metrics_file.read_text())


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


def report(metrics: dict[str, Any], output_dir: Path, log_root: Path) -> None:
    if "suggested_lr" in metrics:
        lr = metrics["suggested_lr"]
        print(f"\nSuggested learning rate: {lr:.3g}   (plot: {output_dir / 'lr_find.png'})")
        print(f"Train with it:  digitlab-train <your overrides> optimizer.lr={lr:.3g}\n")
        return
    shown = {k: v for k, v in metrics.items() if k.startswith("val/")}
    print("\nFinal validation metrics:")
    for key, value in shown.items():
        print(f"  {key:<16} {value:.4f}")
    print(f"  (epochs {metrics['epochs']}, {metrics['wall_time_s']:.1f} s)")
    print(f"Run outputs:  {output_dir}  (metrics.json, checkpoints/, tensorboard/, .hydra/)")
    print(f"TensorBoard:  tensorboard --logdir {log_root}\n")


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    skip_exit_gc()  # also in the worker processes of hydra/launcher=joblib, which never run cli()
    try:
        metrics = train(cfg)
    except DigitlabError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        log.error("%s", err)
        if multirun:
            raise  # the launcher marks this job failed; the sweep's other jobs still run
        sys.exit(1)
    log_root = HydraConfig.get().sweep.dir if multirun else cfg.paths.log_dir
    report(metrics, Path(cfg.paths.output_dir), Path(log_root))
    return metrics.get(cfg.get("optimized_metric"))


def cli() -> None:
    """The `digitlab-train` command."""
    skip_exit_gc()
    try:
        check_group_overrides(sys.argv[1:])
    except DigitlabError as err:
        print(f"Error: {err}", file=sys.stderr)
        sys.exit(1)
    main()


if __name__ == "__main__":
    cli()
