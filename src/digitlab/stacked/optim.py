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
        # by the module before each step; None: all), and the rows (row order) that have stepped before.
        self.only: torch.Tensor | None = None
        self._started_rows: torch.Tensor | None = None
        self._mask_rows: torch.Tensor | None = None  # `rows` on the mask's device
        self._cached: tuple[Any, dict[str, Any]] | None = None  # `_columns`

    def zero_grad(self, set_to_none: bool = True) -> None:
        # The trials' own parameters never get a gradient here: only the stacked leaves do.
        for leaf, _ in self.stacked:
            leaf.grad = None

    def refill(
        self,
        k: int,
        group: dict[str, Any],
        stacked: list[tuple[nn.Parameter, list[nn.Parameter]]],
        state: dict[nn.Parameter, dict[str, Any]] | None = None,
    ) -> None:
        """Trial k's slot holds another trial (a continuous stack, `stacked.slots`): its param group is the new
        trial's own, its rows' momentum starts again at its first step, as its own SGD's does; or, for a
        trial that continues a run, goes on from its own optimizer's `state` (its momentum buffers)."""
        refill_group(self, k, group)
        self.stacked = stacked
        row = self.rows.tolist().index(k)
        for buffer in self._buffers.values():
            buffer[row].zero_()  # a diverged trial's NaNs would survive `x 0`
        if self._started_rows is not None:
            self._started_rows[row] = False
        for index, (leaf, own) in enumerate(stacked):
            saved = (state or {}).get(own[row], {}).get("momentum_buffer")
            if saved is None:
                continue
            if index not in self._buffers:
                self._buffers[index] = torch.zeros_like(leaf)
            own_part(self._buffers[index][row], saved).copy_(saved)
            if self._started_rows is None:  # no step yet: a continuous stack masks every step (`steps.py`)
                self._started_rows = torch.zeros(len(own), dtype=torch.bool, device=leaf.device)
            self._started_rows[row] = True  # its first step here is not its run's first
        self._cached = None
        for index in self._buffers:
            self._share_state(index, stacked[index][1])

    def _columns(self, like: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each trial's settings as `[K]` columns in row order, in `like`'s dtype and device; what torch computes
        in Python floats (`1 - dampening`) is computed here in float64, then rounded once, as torch rounds its
        scalars. Kept while no setting changes (a scheduler changes the lr; most searches have none)."""
        groups = self.param_groups
        settings = tuple(
            tuple(float(g.get(key, 0.0)) for g in groups)
            for key in ("lr", "momentum", "dampening", "weight_decay", "nesterov")
        )
        key = (settings, like.dtype, like.device)
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        lr, momentum, dampening, weight_decay, nesterov = (
            torch.tensor(values, dtype=torch.float64).index_select(0, self.rows) for values in settings
        )
        dampening = dampening.masked_fill(momentum == 0, 0.0)
        columns = {
            "minus_lr": -lr,
            "momentum": momentum,
            "keep": 1 - dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
        }
        columns = {name: value.to(like.dtype).to(like.device) for name, value in columns.items()}
        columns["flags"] = (bool(weight_decay.any()), bool(momentum.any()), bool(nesterov.any()))
        self._cached = (key, columns)
        return columns

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        leaves = [leaf for leaf, _ in self.stacked if leaf.grad is not None]
        if not leaves:
            return loss
        columns = self._columns(leaves[0])
        with_decay, with_momentum, nesterov = columns["flags"]
        minus_lr, momentum, keep = columns["minus_lr"], columns["momentum"], columns["keep"]
        if self.only is not None:
            # Trials of different batch sizes: the rows that do not step get lr 0 and keep their momentum
            # buffer (x 1 + grad x 0); a row's first step starts its buffer at its gradient (0 x 0 + grad x 1).
            # Exact for a finite gradient; a diverged trial's rows are its own.
            if self._mask_rows is None or self._mask_rows.device != self.only.device:
                self._mask_rows = self.rows.to(self.only.device)  # once, where the mask is
            stepping = self.only.index_select(0, self._mask_rows)
            if self._started_rows is None:
                self._started_rows = torch.zeros_like(stepping)
            started = self._started_rows
            minus_lr = minus_lr * stepping
            momentum = torch.where(stepping, torch.where(started, momentum, 0.0), 1.0)
            keep = torch.where(stepping, torch.where(started, keep, 1.0), 0.0)
            self._started_rows = started | stepping
        for index, (leaf, own) in enumerate(self.stacked):
            grad = leaf.grad
            if grad is None:
                continue
            shape = (-1, *([1] * (leaf.dim() - 1)))
            if with_decay:  # grad.add(param, alpha=weight_decay), per row
                grad = grad.addcmul(leaf, columns["weight_decay"].view(shape))
            if with_momentum:
                buffer = self._buffers.get(index)
                if (
                    buffer is None and self.only is None
                ):  # the first step: the gradient itself, as torch starts it
                    buffer = self._buffers[index] = grad.detach().clone()
                    self._share_state(index, own)
                else:
                    if buffer is None:
                        buffer = self._buffers[index] = torch.zeros_like(grad)
                        self._share_state(index, own)
                    # buf.mul_(momentum).add_(grad, alpha=1 - dampening)
                    buffer.mul_(momentum.view(shape)).addcmul_(grad, keep.view(shape))
                with_own = columns["momentum"].view(shape)
                stepped = torch.where(with_own != 0, buffer, grad)  # no momentum: the gradient itself
                if nesterov:  # grad.add(buf, alpha=momentum)
                    ahead = (columns["nesterov"].view(shape) != 0) & (with_own != 0)
                    stepped = torch.where(ahead, grad.addcmul(buffer, with_own), stepped)
                grad = stepped
            leaf.addcmul_(grad, minus_lr.view(shape))  # param.add_(grad, alpha=-lr)
        return loss

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
        self._buffers, self._started_rows, self._cached = {}, None, None
        for index, (leaf, own) in enumerate(self.stacked):
            saved = [self.state.get(param, {}).get("momentum_buffer") for param in own]
            if all(buffer is None for buffer in saved):
                continue
            if self._started_rows is None:  # a resumed stack stands at a step: its trials have stepped
                self._started_rows = torch.ones(len(own), dtype=torch.bool, device=leaf.device)
            buffer = self._buffers[index] = torch.zeros_like(leaf)
            for row, part in zip(buffer, saved, strict=True):
                if part is not None:
                    own_part(row, part).copy_(part)
            self._share_state(index, own)


def refill_group(optimizer: torch.optim.Optimizer, k: int, group: dict[str, Any]) -> None:
    """Param group k of a stack's optimizer becomes `group` (a new trial's own optimizer's); the state of the
    parameters it held goes, so the new trial's parameters start from none, as in a new optimizer."""
    for param in optimizer.param_groups[k]["params"]:
        optimizer.state.pop(param, None)
    optimizer.param_groups[k] = group
