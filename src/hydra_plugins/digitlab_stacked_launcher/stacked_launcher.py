"""The class Hydra discovers and instantiates from `conf/hydra/launcher/stacked.yaml`; thin, so discovery
imports neither torch nor Lightning (the launch is in `_impl.py`; `digitlab.settings` is plain Python)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from digitlab.settings import takes, whole


@takes(max_stack=whole(1))
class StackedLauncher(Launcher):
    def __init__(self, max_stack: int = 64) -> None:
        self.max_stack = max_stack
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from digitlab.sweeps.compose import install

        # The sweeper composes every job through this same context to check it (`job.check_sweep`) before
        # the launcher composes it again; both reuse the work.
        install(hydra_context)
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from ._impl import launch

        return launch(self, job_overrides, initial_job_idx)

    def slots(self, n_trials: int) -> tuple[int, str]:
        """How many slots a continuous stack of an `n_trials` search has on this machine, and why, in words
        (`hydra.sweeper.n_jobs=auto`; `digitlab.stacked.slots.machine_slots`)."""
        from digitlab.stacked.slots import machine_slots

        assert self.config is not None
        return machine_slots(str(self.config.trainer.accelerator), n_trials)

    def stream(
        self,
        ask: Callable[[], tuple[int, list[str]] | None],
        tell: Callable[[int, JobReturn], None],
        slots: int,
        shapes: Sequence[Sequence[str]] = (),
    ) -> None:
        """A search's trials, asked one at a time as slots free, trained in one continuous stack of `slots`
        (`_impl.stream`); digitlab's Optuna sweeper calls this instead of `launch` when it can."""
        from ._impl import stream

        stream(self, ask, tell, slots, shapes)
