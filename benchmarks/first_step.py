"""A callback the benchmark adds from the command line (`+callbacks.first_step=...`): it writes how long
after the process started the first training step began. Kept out of the package on purpose."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import lightning as L


def process_age_s() -> float:
    """Seconds since this process started, from /proc (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - start_ticks / ticks


class FirstStepTimer(L.Callback):
    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.done = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.done:
            self.done = True
            self.path.write_text(json.dumps({"first_step_s": process_age_s(), "at": time.time()}))
