"""Python API for notebooks, scripts and tests: the same composed config and run dir as `digitlab-train`.

from digitlab.api import run
metrics, run_dir = run(["experiment=fastbook_mlp", "trainer.max_epochs=5"])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from digitlab.config import config_dir


def compose_config(overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> DictConfig:
    """Compose `conf/` with `overrides` as the CLI would; `paths.output_dir` is `output_dir` if given, else a
    fresh run dir under `paths.log_dir` named as the CLI names it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # lets ${hydra:...} interpolations resolve outside a Hydra app
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir) if output_dir is not None else cfg.hydra.run.dir
        del cfg["hydra"]
    OmegaConf.resolve(cfg)  # fix ${now:...} and friends once, as the CLI does
    return cfg


def run(overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> tuple[dict[str, Any], Path]:
    """Train one experiment; return `(metrics, run_dir)`. The run dir is laid out as a CLI run's."""
    from digitlab.config import validate
    from digitlab.train import train

    cfg = compose_config(overrides, output_dir)
    validate(cfg)  # before anything is written
    run_dir = Path(cfg.paths.output_dir)
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create(list(overrides)), run_dir / ".hydra" / "overrides.yaml")
    return train(cfg), run_dir
