"""Python API for notebooks, scripts and tests: the same composed config, checks and run dir as `digitlab-train`.

from digitlab.api import compare, load_model, run, sweep
metrics, run_dir = run(["experiment=fastbook_mlp", "trainer.max_epochs=5"])
folder = sweep(["hydra/launcher=stacked", "model=linear,mlp", "optimizer.lr=0.1,1.0", "seed=0,1"])
table = compare(folder)             # a pandas DataFrame: one row per setting, mean, std and n per metric
model = load_model(run_dir)         # the trained LightningModule, in eval mode
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
    cfg, choices = _task_of(_compose_job(overrides, output_dir))
    return (cfg, choices) if with_choices else cfg


def _task_of(whole: DictConfig) -> tuple[DictConfig, dict[str, Any]]:
    """The job's task config (its config less `hydra`, unresolved) and its group choices."""
    task = OmegaConf.masked_copy(whole, [key for key in whole if key != "hydra"])
    return task, dict(whole.hydra.runtime.choices)


def _compose_job(overrides: Sequence[str], output_dir: str | Path | None) -> DictConfig:
    """The job's whole config (`hydra` included) as Hydra's `run_job` sees it, in its run folder
    (`job.job_config`). The values that read Hydra's state are fixed now, as the CLI fixes them for its job;
    the rest resolve when used, so a bad combination reaches the checks rather than failing here."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException

    from digitlab.errors import ConfigError
    from digitlab.job import job_config

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        try:
            whole = compose("config", overrides=list(overrides), return_hydra_config=True)
        except HydraException as err:  # an option that does not exist, a key not in the config
            raise ConfigError(f"{' '.join(overrides)}: {err}") from None
    HydraConfig.instance().set_config(whole)  # lets ${hydra:...} interpolations resolve outside a Hydra app
    folder = str(output_dir) if output_dir is not None else str(whole.hydra.run.dir)  # read once: ${now:}
    job_config(whole, folder)
    with open_dict(whole):
        whole.paths.output_dir = folder
        whole.experiment_name = whole.experiment_name
    return whole


def run(overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> tuple[dict[str, Any], Path]:
    """Train one experiment; return `(metrics, run_dir)`. The run dir is laid out as a CLI run's, its
    `.hydra/` written as Hydra's `run_job` writes it (`job_life.write_hydra_files`)."""
    from digitlab.job import check_job, run_checked_job
    from digitlab.process import apply_process_policy
    from digitlab.sweeps.job_life import write_hydra_files

    apply_process_policy()
    whole = _compose_job(overrides, output_dir)
    cfg, choices = _task_of(whole)
    check_job(cfg, choices, overrides)  # before anything is written
    write_hydra_files(whole, Path(cfg.paths.output_dir))
    OmegaConf.resolve(cfg)
    return run_checked_job(cfg, choices, overrides), Path(cfg.paths.output_dir)


def sweep(overrides: Sequence[str], sweep_dir: str | Path | None = None) -> Path:
    """`digitlab-train -m <overrides>` from Python, with any launcher or sweeper (`hydra/launcher=stacked`,
    `hparams_search=mlp`); returns the sweep folder (default: a new one under `logs/multiruns/`). It runs as
    the command, in a process of its own: a Hydra multirun owns its process (its logging, its launchers'
    worker processes, SLURM's requeue), which a notebook's must not become. A refused or failed sweep raises
    DigitlabError with the command's own paragraph."""
    import subprocess
    import sys
    import time

    from digitlab.errors import DigitlabError

    folder = (
        Path(sweep_dir) if sweep_dir else Path("logs", "multiruns", time.strftime("%Y-%m-%d_%H-%M-%S-api"))
    )
    command = [sys.executable, "-m", "digitlab.cli.train", "-m", *overrides, f"hydra.sweep.dir={folder}"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise DigitlabError(said[-1] if said else f"the sweep exited with {done.returncode}")
    return folder.absolute()


def compare(folder: str | Path, metric: str | None = None, out: str | Path | None = None) -> Any:
    """The comparison of the runs under `folder` as a pandas DataFrame, one row per setting (its runs equal
    but for the seed), ranked as `digitlab-compare` ranks them: the same numbers as its table, each metric's
    mean with its std and `n` (completed runs). Nothing is written unless `out` names a folder for the
    table and plots."""
    try:
        import pandas as pd
    except ImportError:
        from digitlab.errors import DigitlabError

        raise DigitlabError(
            "digitlab.api.compare returns a pandas DataFrame: pip install pandas (or digitlab[notebook])."
        ) from None
    from digitlab.analysis.summary import write_summary
    from digitlab.analysis.table import compare as comparison_of

    comparison = write_summary(folder, metric, out)[0] if out is not None else comparison_of(folder, metric)
    rows = comparison.rows()
    for row, group in zip(rows, comparison.groups, strict=True):
        row["n"] = len(group.completed)
    return pd.DataFrame(rows)


def load_model(run_or_checkpoint: str | Path, which: str = "best") -> Any:
    """The trained model of a run folder (its best checkpoint, or `which="last"`) or of a checkpoint file,
    as a LightningModule in eval mode, its weights read as data (`torch.load(weights_only=True)`)."""
    from digitlab.build import build_from_checkpoint
    from digitlab.errors import DigitlabError
    from digitlab.rundir import LAST_CHECKPOINT, Run

    path = Path(run_or_checkpoint)
    if path.is_dir():
        checkpoints = Run(path).checkpoints
        best = sorted(checkpoints.glob("epoch*.ckpt"))
        chosen = best[-1] if which == "best" and best else checkpoints / LAST_CHECKPOINT
        if not chosen.is_file():
            raise DigitlabError(f"{path} holds no checkpoint ({checkpoints} is empty or missing).")
        path = chosen
    _, _, model = build_from_checkpoint(path)
    return model.eval()
