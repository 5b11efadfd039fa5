"""The job's side of an Optuna search: which trial this job is, so it can record where its run lives and
report its metric each epoch for pruning (`digitlab.callbacks.pruning`).

The sweeper numbers each job by its trial (`hydra.job.num` is the trial number: it launches with
`initial_job_idx`), and the job opens the study through the storage in `hydra.sweeper`, which works in the
sweeper's process (basic launcher), in joblib's workers and on SLURM nodes alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

if TYPE_CHECKING:
    import optuna

    from digitlab.rundir import Run

SWEEPER = "hydra_plugins.digitlab_optuna_sweeper.optuna_sweeper.OptunaSweeper"


def current_trial(hydra_cfg: Any = None) -> optuna.Trial | None:
    """The trial of the job whose Hydra config (`hydra` node) this is (default: the running job's) when
    digitlab's Optuna sweeper launched it, else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if hydra_cfg is None:
        if not HydraConfig.initialized():
            return None
        hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN or OmegaConf.select(hydra_cfg, "sweeper._target_") != SWEEPER:
        return None
    import optuna

    from digitlab.build import instantiate
    from digitlab.sweeps.study import load_study, locate, trial_id

    pruner = instantiate(hydra_cfg.sweeper.pruner) if hydra_cfg.sweeper.get("pruner") else None
    location = locate(hydra_cfg.sweeper, hydra_cfg.sweep.dir)
    study = load_study(location, pruner)
    return optuna.Trial(study, trial_id(location.storage, study.study_name, hydra_cfg.job.num))


def record_run(trial: optuna.Trial, run: Run) -> None:
    """The trial's run folder and event files, as trial user attributes (optuna-dashboard shows them)."""
    from digitlab.sweeps.study import RUN_DIR, TENSORBOARD

    trial.set_user_attr(RUN_DIR, str(run.path.absolute()))
    trial.set_user_attr(TENSORBOARD, str(run.tensorboard.absolute()))


def prunable(trial: optuna.Trial) -> bool:
    """Optuna prunes single-objective studies only."""
    return len(trial.study.directions) == 1
