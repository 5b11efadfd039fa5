"""Where `conf/` lives, and the resolvers its YAML files use."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf


def config_dir() -> Path:
    """`conf/`: inside the package in a wheel, at the repository root in an editable install."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "conf", package.parents[1] / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"digitlab's conf/ folder is missing (looked in {package / 'conf'} and {package.parents[1] / 'conf'})"
    )


def _first_set(*values: object) -> object:
    return next((value for value in values if value not in (None, "null")), None)


def register_resolvers() -> None:
    """The resolvers `conf/` uses. Called by whatever composes a config (the CLIs, `compose_config`, reading a
    run back), never at import; registering twice is a no-op.

    - `${cwd:}`: the folder digitlab was started from. `${hydra:runtime.cwd}` says the same but cannot be
      used in hydra.sweep.dir, which Hydra resolves before its runtime config exists.
    - `${first_set:a,b}`: the first of its arguments that is not null (the run's name is the experiment's,
      else the model's).
    - `${gpus_for:accelerator,devices}`: the GPUs a job asks SLURM for: none unless it trains on a GPU.
    - `${basename:path}`: a path's last part (an MLflow run is named by its run folder).
    - `${sweep_dir:}`: the running job's sweep folder under `-m`, else null (an MLflow sweep's experiment).

    And each interpolation string is parsed once per process (`compat.omegaconf.install_parse_cache`).
    """
    from digitlab.compat.omegaconf import install_parse_cache

    install_parse_cache()
    if not OmegaConf.has_resolver("cwd"):
        OmegaConf.register_new_resolver("cwd", os.getcwd, use_cache=True)
    if not OmegaConf.has_resolver("first_set"):
        OmegaConf.register_new_resolver("first_set", _first_set)
    if not OmegaConf.has_resolver("gpus_for"):
        OmegaConf.register_new_resolver("gpus_for", _gpus_for)
    if not OmegaConf.has_resolver("basename"):
        OmegaConf.register_new_resolver("basename", lambda path: Path(str(path)).name)
    if not OmegaConf.has_resolver("sweep_dir"):
        OmegaConf.register_new_resolver("sweep_dir", _sweep_dir)


def _sweep_dir() -> str | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return str(Path(str(HydraConfig.get().sweep.dir)).absolute())


def _gpus_for(accelerator: str, devices: object) -> int:
    if str(accelerator) not in ("gpu", "cuda"):
        return 0
    return (
        devices if isinstance(devices, int) and devices > 0 else 1
    )  # devices=-1: all of one GPU node's; ask 1
