"""Python API for notebooks, scripts and tests: the same composed config, checks and run dir as `digitlab-train`.

from digitlab.api import run
metrics, run_dir = run(["experiment=fastbook_mlp", "trainer.max_epochs=5"])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from digitlab.config.location import config_dir, register_resolvers


def compose_config(
    overrides: Sequence[str] = (), output_dir: str | Path | None = None, with_choices: bool = False
) -> DictConfig | tuple[DictConfig, dict[str, Any]]:
    """Compose `conf/` with `overrides` as the CLI would; `paths.output_dir` is `output_dir` if given, else a
    fresh run dir under `paths.log_dir` named as the CLI names it. With `with_choices`, also return Hydra's
    group choices (`{"optimizer": "sgd", ...}`), which the checks use to name what was chosen."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException

    from digitlab.errors import ConfigError

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        try:
            cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
        except HydraException as err:  # an option that does not exist, a key not in the config
            raise ConfigError(f"{' '.join(overrides)}: {err}") from None
    HydraConfig.instance().set_config(cfg)  # lets ${hydra:...} interpolations resolve outside a Hydra app
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        # The values that read Hydra's state are fixed now, as the CLI fixes them for its job; the rest
        # resolve when used, so a bad combination reaches the checks rather than failing here.
        cfg.paths.output_dir = str(output_dir) if output_dir is not None else cfg.hydra.run.dir
        cfg.experiment_name = cfg.experiment_name
        del cfg["hydra"]
    return (cfg, choices) if with_choices else cfg


def run(overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> tuple[dict[str, Any], Path]:
    """Train one experiment; return `(metrics, run_dir)`. The run dir is laid out as a CLI run's."""
    import digitlab.atomic as atomic
    from digitlab.job import check_job, run_checked_job
    from digitlab.process import apply_process_policy
    from digitlab.rundir import Run

    apply_process_policy()
    cfg, choices = compose_config(overrides, output_dir, with_choices=True)
    check_job(cfg, choices, overrides)  # before anything is written
    OmegaConf.resolve(cfg)  # saved as the run was configured
    run_dir = Run(cfg.paths.output_dir)
    atomic.write_text(run_dir.hydra_dir / "config.yaml", OmegaConf.to_yaml(cfg))
    atomic.write_text(
        run_dir.hydra_dir / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(list(overrides)))
    )
    # The part of Hydra's own record that a CLI run has and readers use: which option of each group ran.
    hydra_record = {"hydra": {"runtime": {"choices": choices}}}
    atomic.write_text(run_dir.hydra_dir / "hydra.yaml", OmegaConf.to_yaml(OmegaConf.create(hydra_record)))
    return run_checked_job(cfg, choices, overrides), run_dir.path
