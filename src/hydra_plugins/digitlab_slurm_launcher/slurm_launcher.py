"""The class Hydra discovers and instantiates from `conf/hydra/launcher/slurm.yaml`: hydra-submitit-launcher's
`SlurmLauncher`, with digitlab's launch (`_impl.launch`: a refused sbatch is one paragraph, a job that waits
says why, a job that dies is one failed job) and its job side (`_impl.run_in_job`: a job signalled ahead of
its time limit or preempted stops at a batch boundary with a checkpoint, requeues itself, and resumes).
Thin, so plugin discovery imports neither submitit nor torch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher


class DigitlabSlurmLauncher(SlurmLauncher):
    def __call__(self, sweep_overrides: list[str], *args: Any) -> JobReturn:
        from ._impl import run_in_job

        return run_in_job(
            lambda overrides: super(DigitlabSlurmLauncher, self).__call__(overrides, *args),
            self.params,
            sweep_overrides,
        )

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from ._impl import launch

        return launch(self, job_overrides, initial_job_idx)
