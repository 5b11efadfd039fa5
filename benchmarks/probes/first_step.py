"""A callback the benchmark adds from the command line (`+callbacks.first_step=...`): it writes how long
after the process started the first training step began. Kept out of the package on purpose."""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
from process_age import process_age_s


class FirstStepTimer(L.Callback):
    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.done = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.done:
            self.done = True
            self.path.write_text(json.dumps({"first_step_s": process_age_s(), "at": time.time()}))
