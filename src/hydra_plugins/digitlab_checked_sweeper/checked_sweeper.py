"""The class Hydra discovers and instantiates from `conf/hydra/sweeper/checked.yaml`. Hydra's own
`BasicSweeper` composes each batch's jobs just before launching it, so a bad job is found only after the
jobs of earlier batches trained, and then only if it does not compose; this one checks every job of every
batch (`digitlab.job.check_sweep`) before the sweep folder is made. The check is imported when a sweep
starts, so plugin discovery stays light."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

log = logging.getLogger(__name__)


class CheckedSweeper(BasicSweeper):
    def sweep(self, arguments: list[str]) -> Any:
        from digitlab.job import check_sweep
        from digitlab.process import exit_on_error

        assert self.config is not None and self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides([*self._parse_config(), *arguments])
        jobs = [job for batch in self.split_arguments(overrides, None) for job in batch]
        started = time.perf_counter()
        with exit_on_error("digitlab-train"):
            check_sweep(self.hydra_context.config_loader, self.config, jobs)
        log.info("checked %d jobs in %.1f s", len(jobs), time.perf_counter() - started)
        return super().sweep(arguments)

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Done for every job before the sweep began (`sweep`)."""
