"""The class Hydra discovers and instantiates from `conf/hydra/sweeper/checked.yaml`. Hydra's own
`BasicSweeper` composes each batch's jobs just before launching it, so a bad job is found only after the
jobs of earlier batches trained, and then only if it does not compose; and its first failed job ends the
sweep with a traceback and no compare table. This one checks every job of every batch
(`digitlab.job.check_sweep`) before the sweep folder is made, and runs every job: failures are reported
after the rest, with their compare table. The check is imported when a sweep starts, so plugin discovery
stays light."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from omegaconf import OmegaConf

from digitlab.compat.hydra import BasicSweeper, job_error, sweeper_params

log = logging.getLogger(__name__)


class CheckedSweeper(BasicSweeper):
    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        from digitlab.config.checks import check_plugin
        from digitlab.process import exit_on_error
        from digitlab.sweeps.compose import install

        with exit_on_error("digitlab-train"):  # before Hydra makes the launcher from them
            check_plugin(config.hydra.launcher, "hydra.launcher")
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        install(hydra_context)  # each job is composed twice (checked, then launched): once is enough

    def sweep(self, arguments: list[str]) -> Any:
        from digitlab.config.checks import check_sweep_lists
        from digitlab.console import quiet_launchers, verbose
        from digitlab.errors import DigitlabError
        from digitlab.job import check_sweep
        from digitlab.process import exit_on_error
        from digitlab.run_lock import check_free, hold
        from digitlab.sweeps.summary import report_sweep

        assert self.config is not None and self.hydra_context is not None and self.launcher is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides([*sweeper_params(self), *arguments])
        with exit_on_error("digitlab-train"):
            check_free(sweep_dir)  # another command's sweep is running there: refused before any work
            check_sweep_lists(overrides)
        self.overrides = self.split_arguments(overrides, self.max_batch_size)
        jobs = [job for batch in self.overrides for job in batch]
        started = time.perf_counter()
        with exit_on_error("digitlab-train"):
            check_sweep(self.hydra_context.config_loader, self.config, jobs)
            # One sweep per sweep folder, held for this process's life (`run_lock`): the same sweep started
            # twice at once is refused here, before either trains.
            hold(sweep_dir)
        log.info("checked %d jobs in %.1f s", len(jobs), time.perf_counter() - started)
        if not verbose(self.config.hydra.verbose):
            quiet_launchers()  # each job prints its own line as it ends (digitlab.console)

        # Hydra's BasicSweeper.sweep from here, but a failed job (an error, a dead SLURM job) does not end the
        # sweep: the other jobs run, the compare table is written for them, then the failures are reported.
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        returns, failed, idx = [], [], 0
        while not self.is_done():
            batch = self.get_job_batch()
            results = self.launcher.launch(batch, initial_job_idx=idx)
            failed += [(idx + i, r) for i, r in enumerate(results) if r.status == JobStatus.FAILED]
            idx += len(batch)
            returns.append(results)
        if failed:
            report_sweep(sweep_dir)
            said = "; ".join(
                f"#{i} ({' '.join(r.overrides or [])}): {str(job_error(r)).rstrip('.')}"
                for i, r in failed[:3]
            )
            with exit_on_error("digitlab-train"):
                raise DigitlabError(
                    f"{len(failed)} of the {len(jobs)} jobs of this sweep failed, the first: {said}"
                    f"{' ...' if len(failed) > 3 else ''}. The others' results and compare table are in {sweep_dir}; "
                    "run the same command with resume=true (and hydra.sweep.dir=<that folder>) to retry the "
                    "failed jobs only."
                )
        return returns

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Done for every job before the sweep began (`sweep`)."""
