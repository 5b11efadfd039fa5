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
from omegaconf import DictConfig

from digitlab.config import config_dir, hparams_from_config, validate
from digitlab.errors import DigitlabError

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


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit the experiment `cfg` describes; return its final metrics (the content of `metrics.json`)."""
    validate(cfg)
    import lightning as L

    from digitlab.callbacks.results import RunResults

    output_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    # _convert_="all": plain lists and dicts reach torch (and its checkpoints), not OmegaConf containers.
    model = instantiate(cfg.model, class_names=list(datamodule.class_names), _convert_="all")
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    callbacks.append(RunResults(output_dir, hparams_from_config(cfg)))
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    trainer.fit(model, datamodule=datamodule)
    metrics_file = output_dir / "metrics.json"
    if trainer.interrupted or not metrics_file.exists():
        raise DigitlabError(f"training stopped before the end; checkpoints and logs are kept in {output_dir}")
    return json.loads(metrics_file.read_text())


def report(metrics: dict[str, Any], output_dir: Path, log_root: Path) -> None:
    shown = {k: v for k, v in metrics.items() if k.startswith("val/")}
    print("\nFinal validation metrics:")
    for key, value in shown.items():
        print(f"  {key:<16} {value:.4f}")
    print(f"  (epochs {metrics['epochs']}, {metrics['wall_time_s']:.1f} s)")
    print(f"Run outputs:  {output_dir}  (metrics.json, checkpoints/, tensorboard/, .hydra/)")
    print(f"TensorBoard:  tensorboard --logdir {log_root}\n")


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
    except DigitlabError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        log.error("%s", err)
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the launcher marks this job failed; the sweep's other jobs still run
        sys.exit(1)
    report(metrics, Path(cfg.paths.output_dir), Path(cfg.paths.log_dir))
    return metrics.get(cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
