"""Stop a run whose training loss is no longer finite, naming the step, instead of training on NaNs."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from digitlab.errors import DigitlabError
from digitlab.settings import takes, whole


class TrainingDiverged(DigitlabError):
    """The training loss became NaN or infinite."""


def diverged(
    step: int, epoch: int, lr: Any, run_dir: Any, value: float | str = "nan or inf"
) -> TrainingDiverged:
    """The error of a run (or a stacked trial) whose training loss stopped being finite at `step`."""
    return TrainingDiverged(
        f"the training loss became {value} at step {step} (epoch {epoch}): training diverged. The usual cause "
        f"is a learning rate too large for this model and loss (now {lr}); try a smaller optimizer.lr. "
        f"Checkpoints and logs so far are kept in {run_dir}."
    )


@takes(check_every_n_steps=whole(1))
class StopOnNonFiniteLoss(L.Callback):
    """Checks every step's loss. The first bad step is remembered on the device, so checking only every
    `check_every_n_steps` (one host sync each time) still names the exact step."""

    def __init__(self, check_every_n_steps: int = 1) -> None:
        self.check_every_n_steps = check_every_n_steps
        self._first_bad: torch.Tensor | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs  # the baseline has none
        if loss is None:
            return
        step = trainer.global_step
        if self.check_every_n_steps == 1:  # checked at once: the step is the current one
            if not torch.isfinite(loss.detach()):
                self._raise(trainer, step, float(loss))
            return
        if self._first_bad is None:
            self._first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
        bad_now = ~torch.isfinite(loss.detach())
        self._first_bad = torch.where(
            bad_now & (self._first_bad < 0), torch.tensor(step, device=loss.device), self._first_bad
        )
        if step % self.check_every_n_steps == 0 and int(self._first_bad) >= 0:
            self._raise(trainer, int(self._first_bad), float(loss))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._first_bad is not None and int(self._first_bad) >= 0:
            self._raise(trainer, int(self._first_bad), float("nan"))

    @staticmethod
    def _raise(trainer: L.Trainer, step: int, value: float) -> None:
        lrs = [group["lr"] for optimizer in trainer.optimizers for group in optimizer.param_groups]
        raise diverged(step, trainer.current_epoch, lrs[0] if lrs else "?", trainer.default_root_dir, value)
