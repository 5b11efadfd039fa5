"""The sweep: join the study, then until it holds `n_trials` trials, ask a batch of `n_jobs`, launch them as
Hydra jobs numbered by trial, and tell the study each job's outcome: its returned metric(s) (COMPLETE), a
`TrialPruned` the job raised after its pruner stopped it (PRUNED), or any other error (FAIL, the search goes
on up to `max_failure_rate`). Everything the user typed is checked before the first trial.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.trial import TrialState

from digitlab.compat.hydra import job_error
from digitlab.console import quiet_launchers, shown_value, verbose
from digitlab.errors import ConfigError, DigitlabError, RunInterrupted
from digitlab.faults import pause_point
from digitlab.job import check_sweep
from digitlab.process import exit_on_error
from digitlab.sweeps.search_space import SearchSpace, parse_search_space
from digitlab.sweeps.study import RUN_DIR, WORKER, Worker, create_study, directions, locate, search_identity

log = logging.getLogger(__name__)

IN_PROCESS_LAUNCHERS = ("BasicLauncher", "StackedLauncher")  # run each job in the sweeper's own process

RESULTS = "optimization_results.yaml"  # as hydra-optuna-sweeper names it


class OptunaSweeperImpl:
    def __init__(
        self,
        sampler: DictConfig,
        pruner: DictConfig,
        direction: str | Sequence[str],
        study_name: str | None,
        storage: str | None,
        n_trials: int,
        n_jobs: int | str,
        max_failure_rate: float,
        params: DictConfig | None,
        custom_search_space: str | None = None,
        heartbeat_s: float = 30.0,
    ) -> None:
        self.sampler_cfg = sampler
        self.pruner_cfg = pruner
        self.direction = OmegaConf.to_container(direction) if OmegaConf.is_config(direction) else direction
        self.study_name = study_name
        self.storage = storage
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.max_failure_rate = max_failure_rate
        self.params = OmegaConf.to_container(params) if params else {}
        self.custom_search_space = custom_search_space
        self.heartbeat_s = heartbeat_s
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from digitlab.sweeps.compose import install

        self.config = config
        self.hydra_context = hydra_context
        install(hydra_context)  # a search's trials differ in plain values: composed from one template
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        assert self.config is not None
        self._keep_password_out_of_files()  # first: every job is composed from the config it leaves
        with exit_on_error("digitlab-train"):
            space, objective, metrics, extend = self._checked(arguments)
            # Every choice and both ends of every interval, composed and checked before the first trial.
            check_sweep(self.hydra_context.config_loader, self.config, space.corners(), placed=False)
        if self.n_jobs == "auto":
            self.n_jobs = self._jobs_at_once()
        sweep_dir = Path(self.config.hydra.sweep.dir)
        # The study first: a damaged or foreign journal, a database that cannot be reached or lacks its
        # driver, another search's study: one paragraph, and no sweep folder made for a database study.
        with exit_on_error("digitlab-train"):
            location = locate(self.config.hydra.sweeper, sweep_dir)
            identity = search_identity(space.distributions, metrics)
            study = create_study(location, objective, optuna.samplers.RandomSampler(), identity)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        with warnings.catch_warnings():  # experimental since Optuna 3.2, unchanged since
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(metrics)  # optuna-dashboard's axis titles

        def finished(trial: optuna.trial.FrozenTrial) -> bool:
            """A gone worker's trial whose run had finished: told its run's outcome (`Worker._retry_orphans`)."""
            from digitlab.sweeps.job_life import finished_return

            ret = finished_return(trial.user_attrs.get(RUN_DIR), metrics, trial.number)
            if ret is not None:
                _Outcomes.tell(study, trial, ret, objective)
            return ret is not None

        worker = Worker(study, location, self.n_trials, self.heartbeat_s, finished)
        study.sampler = self._sampler(space, worker.join())
        worker.check_runs(rerun=bool(self.config.get("resume")))
        log.info(
            "Optuna %s: %d trials in all, %d at a time; sampler %s, pruner %s; directions %s",
            location.described,
            self.n_trials,
            self.n_jobs,
            type(study.sampler).__name__,
            self.pruner_cfg._target_.rsplit(".", 1)[-1],
            objective,
        )
        if not verbose(self.config.hydra.verbose):
            quiet_launchers()  # each trial prints its own line as it ends (digitlab.console)
        try:
            self._run(study, worker, space, objective, extend, sweep_dir)
        finally:
            worker.leave()

    def _jobs_at_once(self) -> int:
        """`hydra.sweeper.n_jobs=auto`: as many trials as the launcher runs at once on this machine (a
        continuous stack's slots, joblib's processes; 1 for a launcher that runs one job at a time), logged."""
        from digitlab.training import parallel_jobs

        assert self.config is not None
        if hasattr(self.launcher, "slots"):
            slots, why = self.launcher.slots(self.n_trials)
            log.info("hydra.sweeper.n_jobs=auto: a continuous stack of %d slots (%s)", slots, why)
            return slots
        jobs = parallel_jobs(self.config.hydra)
        log.info(
            "hydra.sweeper.n_jobs=auto: %d trial(s) at a time, as hydra/launcher=%s runs them%s",
            jobs,
            self.config.hydra.runtime.choices.get("hydra/launcher"),
            "" if jobs > 1 else " (set hydra.sweeper.n_jobs to launch more at once)",
        )
        return jobs

    def _keep_password_out_of_files(self) -> None:
        """A password typed in the storage URL leaves the configs that are saved (multirun.yaml, each job's
        .hydra/) and the overrides its jobs are composed from; libpq finds it in PGPASSWORD."""
        from omegaconf import open_dict, read_write

        from digitlab.sweeps.database import without_password

        assert self.config is not None
        typed = self.config.hydra.sweeper.get("storage")
        if not typed or "://" not in str(typed) or without_password(str(typed)) == typed:
            return
        clean = without_password(str(typed))
        hydra = self.config.hydra
        with read_write(hydra.sweeper), read_write(hydra.overrides), open_dict(hydra.sweeper):
            self.config.hydra.sweeper.storage = clean
            self.config.hydra.overrides.hydra = [
                f"hydra.sweeper.storage={clean}"
                if o.split("=", 1)[0].lstrip("+") == "hydra.sweeper.storage"
                else o
                for o in self.config.hydra.overrides.hydra
            ]
        self.storage = clean

    def _run(
        self,
        study: optuna.Study,
        worker: Worker,
        space: SearchSpace,
        objective: list[str],
        extend: Callable | None,
        sweep_dir: Path,
    ) -> None:
        """Trials until the study holds n_trials: streamed through one continuous stack when the launcher
        can (`StackedLauncher.stream`, n_jobs slots), else asked, launched and told in batches of n_jobs;
        then, in batches, whatever other workers' trials leave to retry."""
        outcomes = _Outcomes(study, worker, objective, self.max_failure_rate, sweep_dir)
        if self.n_jobs > 1 and hasattr(self.launcher, "stream"):
            self._stream(worker, space, extend, outcomes)
        while trials := worker.ask(self.n_jobs):
            returns = self._launch(trials, [self._job(space, extend, trial) for trial in trials])
            outcomes.launched += len(trials)
            for trial, ret in zip(trials, returns, strict=True):
                outcomes.settle(trial, ret)
            self._stop_if(outcomes)
        self._write_results(study, sweep_dir)

    def _stream(
        self, worker: Worker, space: SearchSpace, extend: Callable | None, outcomes: _Outcomes
    ) -> None:
        """Trials asked one at a time as the launcher's slots free, each told as soon as it ends: the
        sampler sees every result as it lands, and no slot waits for a batch."""
        asked: dict[int, optuna.Trial] = {}

        def ask() -> tuple[int, list[str]] | None:
            if outcomes.stopped or outcomes.too_many_failures():
                return None
            trials = worker.ask(1, wait=False)
            if not trials:
                return None
            asked[trials[0].number] = trials[0]
            outcomes.launched += 1
            return trials[0].number, self._job(space, extend, trials[0])

        def tell(number: int, ret: JobReturn) -> None:
            outcomes.settle(asked.pop(number), ret)

        log.info(
            "trials are asked one at a time as the launcher's %d slots free (hydra.sweeper.n_jobs)",
            self.n_jobs,
        )
        self.launcher.stream(ask, tell, self.n_jobs, space.corners())
        self._stop_if(outcomes)

    def _job(self, space: SearchSpace, extend: Callable | None, trial: optuna.Trial) -> list[str]:
        """The trial's parameters sampled, as its job's overrides; a retried trial whose stale run left a
        checkpoint continues that run (`sweeps.carry_over`), with `resume=true`."""
        space.sample(trial)
        if extend:
            extend(self.config, trial)
        overrides = space.overrides(trial.params)
        if self._continues(trial, overrides) and not self.config.get("resume"):
            overrides.append("resume=true")
        return overrides

    def _continues(self, trial: optuna.Trial, overrides: list[str]) -> bool:
        from hydra.core.hydra_config import HydraConfig

        from digitlab.job import job_config, resolved_task
        from digitlab.sweeps.carry_over import carry_over, predecessor
        from digitlab.sweeps.job_life import job_folder

        if predecessor(trial.study, trial) is None:
            return False
        # The folder and config its launcher will give the job (only a retry needs them before launch).
        config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(config):
            config.hydra.job.num = trial.number
        folder = job_folder(config)
        hydra_config = HydraConfig.instance().cfg
        try:
            task, _, _ = job_config(config, folder)  # sets HydraConfig to the job's, for its resolvers
            resolved = OmegaConf.to_container(resolved_task(task))
        finally:
            HydraConfig.instance().cfg = hydra_config  # the sweep's again
        return carry_over(trial.study, trial, folder, resolved)

    def _stop_if(self, outcomes: _Outcomes) -> None:
        """The worker stops when a job run in this process was stopped by a signal to this process (a SLURM
        job cancelled on its own, or lost with its node, leaves the search going), or when too many failed."""
        if outcomes.stopped and type(self.launcher).__name__ in IN_PROCESS_LAUNCHERS:
            with exit_on_error("digitlab-train"):
                raise RunInterrupted(
                    f"this worker was stopped (SIGTERM or Ctrl-C) while it ran trial(s) "
                    f"{', '.join(map(str, outcomes.stopped))}: each is marked FAIL, its checkpoints kept, and "
                    "its parameters will be run again, once, by the next worker that joins the study (the same "
                    "command again, or another worker already running)."
                )
        outcomes.stopped = []
        if outcomes.too_many_failures():
            failures = outcomes.failures
            with exit_on_error("digitlab-train"):
                raise DigitlabError(
                    f"{len(failures)} of the {outcomes.launched} trials launched so far failed, more than "
                    f"hydra.sweeper.max_failure_rate={self.max_failure_rate}; the search stops. The first: "
                    f"{failures[0]}. Their run dirs are under {outcomes.sweep_dir}."
                )

    def _checked(self, arguments: list[str]) -> tuple[SearchSpace, list[str], list[str], Callable | None]:
        """Everything a search needs that the user typed, or one paragraph naming what is wrong."""
        assert self.config is not None
        space = parse_search_space(self.params, arguments)
        if not space.distributions:
            raise ConfigError(
                "hydra/sweeper=optuna has nothing to search: hydra.sweeper.params is empty and no sweep was "
                "typed. Add e.g. hydra.sweeper.params.optimizer.lr='tag(log, interval(0.01, 10))'."
            )
        objective = directions(self.direction)
        metrics = self.config.get("optimized_metric")
        metrics = OmegaConf.to_container(metrics) if OmegaConf.is_config(metrics) else metrics
        count = 0 if metrics is None else 1 if isinstance(metrics, str) else len(metrics)
        if count != len(objective):
            raise ConfigError(
                f"optimized_metric={metrics} names {count} metric(s) but hydra.sweeper.direction={self.direction} "
                f"has {len(objective)}: each trial returns one value per direction (e.g. optimized_metric: "
                "[val/acc_best, parameters] with direction: [maximize, minimize])."
            )
        pruner = self.pruner_cfg._target_
        if len(objective) > 1 and pruner != "optuna.pruners.NopPruner":
            choice = self.config.hydra.runtime.choices.get("hydra/sweeper/pruner", pruner)
            raise ConfigError(
                f"hydra/sweeper/pruner={choice} cannot prune a multi-objective study (direction={objective}): "
                "Optuna prunes on one reported value. Use hydra/sweeper/pruner=none."
            )
        for key, value, allowed in (
            ("n_trials", self.n_trials, "a whole number >= 1"),
            ("n_jobs", self.n_jobs, "a whole number >= 1, or auto"),
        ):
            if key == "n_jobs" and value == "auto":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"hydra.sweeper.{key}={value!r} is not {allowed}.")
        if (
            not isinstance(self.heartbeat_s, int | float)
            or isinstance(self.heartbeat_s, bool)
            or self.heartbeat_s <= 0
        ):
            raise ConfigError(
                f"hydra.sweeper.heartbeat_s={self.heartbeat_s!r} is not a number of seconds > 0."
            )
        if not 0 <= self.max_failure_rate <= 1:
            raise ConfigError(
                f"hydra.sweeper.max_failure_rate={self.max_failure_rate} is not a fraction between 0 and 1."
            )
        extend = None
        if self.custom_search_space:
            try:
                extend = get_method(self.custom_search_space)
            except Exception as err:
                raise ConfigError(
                    f"hydra.sweeper.custom_search_space={self.custom_search_space!r} is not a function Hydra can "
                    f"import ({err}). It names `package.module.function(cfg, trial)`, which calls trial.suggest_*."
                ) from None
        self._fit_sampler_settings()
        # Built once here, so that a value the sampler or the pruner refuses (a seed out of its range, a
        # negative n_startup_trials) is named before the study exists; GridSampler refuses intervals.
        _built("hydra.sweeper.sampler", self.sampler_cfg, lambda: self._sampler(space, 0))
        _built("hydra.sweeper.pruner", self.pruner_cfg, lambda: instantiate(self.pruner_cfg))
        return space, objective, [metrics] if isinstance(metrics, str) else metrics, extend

    def _fit_sampler_settings(self) -> None:
        """A search preset tunes its sampler (`hparams_search=linear_lr` sets TPE's `n_startup_trials`); with
        another sampler chosen (`hydra/sweeper/sampler=random`), the preset's settings that sampler does not
        take are left out, with one log line. A setting typed on the command line that the sampler does not
        take is refused, naming what it takes."""
        import inspect

        from hydra.utils import get_class
        from omegaconf import open_dict

        assert self.config is not None
        sampler = get_class(self.sampler_cfg._target_)
        taken = set(inspect.signature(sampler).parameters)
        extra = [key for key in self.sampler_cfg if not str(key).startswith("_") and key not in taken]
        typed = {o.split("=", 1)[0].lstrip("+~") for o in self.config.hydra.overrides.hydra}
        for key in extra:
            if f"hydra.sweeper.sampler.{key}" in typed:
                raise ConfigError(
                    f"hydra.sweeper.sampler.{key}={self.sampler_cfg[key]} is not a setting of {sampler.__name__}; "
                    f"it takes: {', '.join(sorted(taken))}."
                )
        if extra:
            log.info(
                "%s takes no %s (set for another sampler by the search's config): left out",
                sampler.__name__,
                ", ".join(f"{key}={self.sampler_cfg[key]}" for key in extra),
            )
            with open_dict(self.sampler_cfg):
                for key in extra:
                    del self.sampler_cfg[key]

    def _sampler(self, space: SearchSpace, workers_before: int) -> optuna.samplers.BaseSampler:
        """The configured sampler; a seeded one is seeded `seed + workers_before`, so two workers on one
        study propose different trials and a lone worker is reproducible."""
        overrides: dict[str, Any] = {}
        seed = self.sampler_cfg.get("seed")
        if seed is not None:
            overrides["seed"] = seed + workers_before
        if (
            self.sampler_cfg._target_ == "optuna.samplers.GridSampler"
            and self.sampler_cfg.get("search_space") is None
        ):
            overrides["search_space"] = space.grid()
        return instantiate(self.sampler_cfg, **overrides)

    def _launch(self, trials: list[optuna.Trial], jobs: list[list[str]]) -> list[JobReturn]:
        """Launch the jobs so each one's `hydra.job.num` (and folder) is its trial number: in runs of
        consecutive numbers (one run unless another worker asked trials in between)."""
        returns: list[JobReturn] = []
        start = 0
        for end in range(1, len(trials) + 1):
            if end == len(trials) or trials[end].number != trials[end - 1].number + 1:
                returns += self.launcher.launch(jobs[start:end], initial_job_idx=trials[start].number)
                start = end
        return returns

    @staticmethod
    def _write_results(study: optuna.Study, sweep_dir: Path) -> None:
        """`optimization_results.yaml` as hydra-optuna-sweeper writes it (best params and value, or the
        Pareto front), for the tools that read it."""
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            log.warning("no trial of the study completed; no %s written", RESULTS)
            return
        if len(study.directions) == 1:
            best = study.best_trial
            results = {
                "name": "optuna",
                "best_params": best.params,
                "best_value": best.value,
                "best_trial": best.number,
                # Several workers on several machines: where the best trial ran, and its run folder there.
                "best_trial_worker": best.user_attrs.get(WORKER),
                "best_trial_run_dir": best.user_attrs.get(RUN_DIR),
            }
        else:
            results = {
                "name": "optuna",
                "solutions": [
                    {"trial": t.number, "params": t.params, "values": t.values} for t in study.best_trials
                ],
            }
        OmegaConf.save(OmegaConf.create(results), sweep_dir / RESULTS)
        log.info("best of %d completed trials: %s", len(complete), sweep_dir / RESULTS)


def _built(key: str, node: DictConfig, build: Callable[[], Any]) -> None:
    """`build()`, or ConfigError naming the settings of `node` (at `key`) its error mentions (all if none)."""
    try:
        build()
    except ConfigError:
        raise
    except Exception as err:
        cause = err.__cause__ or err  # Hydra's InstantiationException wraps the class's own error
        why = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        settings = {k: v for k, v in node.items() if not str(k).startswith("_")}
        named = [k for k in settings if str(k).lower() in why.lower()] or list(settings)
        shown = ", ".join(f"{key}.{k}={settings[k]!r}" for k in named) or key
        raise ConfigError(
            f"{shown}: {node.get('_target_', key)} refuses {'it' if len(named) == 1 else 'them'}: {why}"
        ) from None


class _Outcomes:
    """What the search's jobs ended in, told to the study as each one ends (the one place a `JobReturn`
    becomes an Optuna trial state): stopped trials given back, failures counted."""

    def __init__(
        self,
        study: optuna.Study,
        worker: Worker,
        objective: list[str],
        max_failure_rate: float,
        sweep_dir: Path,
    ) -> None:
        self.study, self.worker, self.objective = study, worker, objective
        self.max_failure_rate, self.sweep_dir = max_failure_rate, sweep_dir
        self.failures: list[str] = []
        self.stopped: list[int] = []  # trials stopped by a signal, since the last `_stop_if`
        self.launched = 0

    def too_many_failures(self) -> bool:
        return bool(self.failures) and len(self.failures) / self.launched > self.max_failure_rate

    def settle(self, trial: optuna.Trial, ret: JobReturn) -> None:
        pause_point("trial_ended")  # its job returned, the study not told yet (fault tests)
        error = job_error(ret)
        if isinstance(error, RunInterrupted):  # stopped or lost, not at fault: asked again, once
            self.worker.give_back(trial, str(error))
            log.warning(
                "trial %d (%s) was stopped: marked FAIL, its parameters asked again (%s)",
                trial.number,
                " ".join(ret.overrides or []),
                error,
            )
            self.stopped.append(trial.number)
            return
        failure = self.tell(self.study, trial, ret, self.objective)
        if failure:
            self.failures.append(failure)

    @staticmethod
    def tell(
        study: optuna.Study,
        trial: optuna.Trial | optuna.trial.FrozenTrial,
        ret: JobReturn,
        objective: list[str],
    ) -> str | None:
        """Record the job's outcome on its trial; return a line describing it if it failed."""
        error = job_error(ret)  # a pruned trial is not an error: nothing printed for it
        if isinstance(error, optuna.TrialPruned):
            study.tell(trial.number, state=TrialState.PRUNED)
            log.info("%s", error)
            return None
        if error is None:
            value = ret.return_value
            values = value if isinstance(value, list | tuple) else [value]
            try:
                values = [float(v) for v in values]
            except (TypeError, ValueError):
                error = ValueError(f"it returned {value!r}, not {len(objective)} number(s)")
            else:
                if len(values) != len(objective) or not all(math.isfinite(v) for v in values):
                    error = ValueError(f"it returned {value!r}, not {len(objective)} finite number(s)")
        if error is None:
            study.tell(trial.number, values=values)
            shown = " ".join(shown_value(v) for v in values)
            params = " ".join(f"{name}={shown_value(value)}" for name, value in trial.params.items())
            best = f"; best so far: trial {study.best_trial.number}" if len(values) == 1 else ""
            log.info("trial %d finished (%s): %s%s", trial.number, params, shown, best)
            return None
        study.tell(trial.number, state=TrialState.FAIL)
        message = f"trial {trial.number} ({' '.join(ret.overrides)}) failed: {error}"
        log.warning("%s", message)
        return message
