"""SGD for K stacked trials in one step per layer, not one per trial.

Stock `torch.optim.SGD` over the trials' parameters (one param group per trial) loops in Python over the K
groups and 2 K tensors every step: at K = 256 that loop took longer than the math. `StackedSGD` holds the
same param groups (each trial's own settings, changed by its own scheduler as before) and the same state in the
same format (`state_dict` is the stock optimizer's, so a trial's checkpoint is its single run's), but steps
each stacked leaf (`StackedNet.stacked`) at once, with each trial's lr, momentum, dampening and weight decay
as a column of per-row factors. Each element gets the arithmetic torch's single-tensor SGD gives it
(`add_(x, alpha=a)` is `addcmul_(x, a)` on a column: the same rounding, tested against stock SGD).

It serves `torch.optim.SGD` and digitlab's `BasicOptim` (SGD without momentum); other optimizers step the
stock way, each trial's gradient handed to its parameters first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from digitlab.optimizer import BasicOptim
from digitlab.stacked.net import own_part

VECTORISED = (torch.optim.SGD, BasicOptim)


def vectorisable(optimizers: Sequence[torch.optim.Optimizer]) -> bool:
    """Whether every trial's optimizer is plain SGD that `StackedSGD` steps exactly as its own would."""
    return all(
        type(o) in VECTORISED
        and not any(g.get("maximize") or g.get("differentiable") or g.get("fused") for g in o.param_groups)
        for o in optimizers
    )


class StackedSGD(torch.optim.Optimizer):
    def __init__(
        self,
        groups: list[dict[str, Any]],
        defaults: dict[str, Any],
        stacked: list[tuple[nn.Parameter, list[nn.Parameter]]],
        rows: Sequence[int],
    ) -> None:
        """`groups`: one per trial (its own optimizer's), in trial order; `stacked`: each stacked leaf with
        the trials' parameters that are its rows; `rows[j]`: the trial whose row j is."""
        super().__init__(groups, defaults)
        self.stacked = stacked
        self.rows = torch.as_tensor(list(rows))
        self._buffers: dict[int, torch.Tensor] = {}  # leaf index -> `[K, ...]` momentum buffers
        # Trials of different batch sizes (`steps.py`): which trials step now (`[K]` bool, trial order, set
        # by the module before each step; None: all), and per leaf the rows whose buffer has started.
        self.only: torch.Tensor | None = None
        self._started: dict[int, torch.Tensor] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        # The trials' own parameters never get a gradient here: only the stacked leaves do.
        for leaf, _ in self.stacked:
            leaf.grad = None

    def _columns(self) -> dict[str, torch.Tensor]:
        """Each trial's settings as `[K]` float64 columns in row order; what torch computes in Python floats
        (`1 - dampening`) is computed here in float64 too, then rounded once, as torch rounds its scalars."""
        groups = self.param_groups
        values = {
            key: torch.tensor([float(g.get(key, 0.0)) for g in groups], dtype=torch.float64).index_select(
                0, self.rows
            )
            for key in ("lr", "momentum", "dampening", "weight_decay", "nesterov")
        }
        values["dampening"] = values["dampening"].masked_fill(values["momentum"] == 0, 0.0)
        return {
            "minus_lr": -values["lr"],
            "momentum": values["momentum"],
            "keep": 1 - values["dampening"],
            "weight_decay": values["weight_decay"],
            "nesterov": values["nesterov"],
        }

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        columns = self._columns()
        with_decay = bool(columns["weight_decay"].any())
        with_momentum = bool(columns["momentum"].any())
        for index, (leaf, own) in enumerate(self.stacked):
            grad = leaf.grad
            if grad is None:
                continue
            shape = (-1, *([1] * (leaf.dim() - 1)))
            column = {key: value.to(leaf.dtype).to(leaf.device).view(shape) for key, value in columns.items()}
            stepping = None
            if self.only is not None:
                stepping = self.only.index_select(0, self.rows.to(self.only.device)).view(shape)
            if with_decay:  # grad.add(param, alpha=weight_decay), per row
                grad = grad.addcmul(leaf, column["weight_decay"])
            if with_momentum:
                grad = self._momentum(index, own, grad, column, stepping)
            if stepping is None:
                leaf.addcmul_(grad, column["minus_lr"])  # param.add_(grad, alpha=-lr)
            else:  # rows still accumulating stay as they are
                leaf.copy_(torch.where(stepping, leaf.addcmul(grad, column["minus_lr"]), leaf))
        return loss

    def _momentum(
        self,
        index: int,
        own: list[nn.Parameter],
        grad: torch.Tensor,
        column: dict[str, torch.Tensor],
        stepping: torch.Tensor | None,
    ) -> torch.Tensor:
        """The leaf's step direction with momentum, its buffer updated (only the `stepping` rows, if given)."""
        momentum = column["momentum"]
        buffer = self._buffers.get(index)
        if stepping is None:
            if buffer is None:  # the first step: the gradient itself, as torch starts it
                buffer = self._buffers[index] = grad.detach().clone()
                self._share_state(index, own)
            else:  # buf.mul_(momentum).add_(grad, alpha=1 - dampening)
                buffer.mul_(momentum).addcmul_(grad, column["keep"])
        else:
            if buffer is None:
                buffer = self._buffers[index] = torch.zeros_like(grad)
                self._started[index] = torch.zeros_like(stepping)
                self._share_state(index, own)
            started = self._started[index]
            moved = torch.where(started, buffer.mul(momentum).addcmul(grad, column["keep"]), grad)
            buffer.copy_(torch.where(stepping, moved, buffer))
            started |= stepping
        stepped = torch.where(momentum != 0, buffer, grad)  # no momentum: the gradient itself
        if bool(column["nesterov"].any()):  # grad.add(buf, alpha=momentum)
            ahead = (column["nesterov"] != 0) & (momentum != 0)
            stepped = torch.where(ahead, grad.addcmul(buffer, momentum), stepped)
        return stepped

    def _share_state(self, index: int, own: list[nn.Parameter]) -> None:
        """Each trial's `momentum_buffer` in `state` is a view of its row, as its own SGD keeps it (only for
        trials with momentum: torch keeps none for the others)."""
        rows = self._buffers[index].unbind(0)
        for trial, (param, row) in zip(self.rows.tolist(), zip(own, rows, strict=True), strict=True):
            if self.param_groups[trial].get("momentum", 0):
                self.state[param]["momentum_buffer"] = own_part(row, param)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """The stock format (a resumed stack, `checkpoint_format.join`): each trial's buffer gathered into
        its leaf's rows."""
        super().load_state_dict(state_dict)
        self._buffers, self._started = {}, {}
        for index, (leaf, own) in enumerate(self.stacked):
            saved = [self.state.get(param, {}).get("momentum_buffer") for param in own]
            if all(buffer is None for buffer in saved):
                continue
            shape = (-1, *([1] * (leaf.dim() - 1)))
            self._started[index] = torch.tensor([b is not None for b in saved], device=leaf.device).view(
                shape
            )
            buffer = self._buffers[index] = torch.zeros_like(leaf)
            for row, part in zip(buffer, saved, strict=True):
                if part is not None:
                    own_part(row, part).copy_(part)
            self._share_state(index, own)
