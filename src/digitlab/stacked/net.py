"""K trials' nets of one architecture run as one: the chapter's linear and MLP nets (`Flatten, Linear, ...`).

The first Linear of all K trials is one batched matmul. On a training batch (`[U, B, ...]`, one row per
distinct shuffle order, `batches.py`), when every order is shared by the same number m of trials, each
order's rows are read once for its m trials (`[U, m * out, pixels] @ [U, pixels, B]`); otherwise each trial
gets a copy of its rows (U = K, m = 1). A validation batch (`[B, ...]`) is read once for all K (U = 1). The
weights come first in the product so that their gradient is `[out, B] @ [B, pixels]`, the orientation CPU
BLAS is fast at: the other one, which `einsum` and a vmapped `Linear` pick, took 6 x longer on the chapter's
shapes. The rest of the net (ReLU, Linear) is batched matmuls over the trials too (`[K, B, in] @ [K, in, out]`).

Each layer's weights and biases of all K trials are one leaf tensor each (`stacked`: one gradient to
accumulate, one tensor for a vectorised optimizer step, `optim.py`), and each trial's own parameters are views
of its row (`tie`): its module reads and loads the live values, so its state dict, its checkpoint and its
param group in a stock optimizer stay a single run's. A stock optimizer's step gets each trial's gradient as a
view of the stacked one (`hand_out_grads`). Trials of different widths (and every continuous stack, whose
refills may bring any width) are computed at their own widths instead (`_ragged_scores`), and their gradients
land in their own parameters (`own_grads`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def stackable(net: nn.Module) -> bool:
    """`Flatten, Linear`, then Linears and ReLUs: the chapter's linear and MLP nets."""
    layers = list(net.children()) if isinstance(net, nn.Sequential) else []
    return (
        len(layers) >= 2
        and isinstance(layers[0], nn.Flatten)
        and isinstance(layers[1], nn.Linear)
        and all(isinstance(layer, nn.Linear | nn.ReLU) for layer in layers[2:])
    )


class StackedNet(nn.Module):
    def __init__(
        self, nets: Sequence[nn.Sequential], shuffle_of: Sequence[int], widest: Sequence[nn.Sequential] = ()
    ) -> None:
        """`nets`: the trials' own nets (registered by their trials' modules, not here); `shuffle_of[k]`: which
        row of a training batch is trial k's; `widest`: nets whose shapes the stack's rows must also hold (a
        continuous stack's: the widest a refill may bring, `refill`)."""
        super().__init__()
        if not stackable(nets[0]):
            raise ValueError(f"only Flatten, Linear, then Linear and ReLU layers stack, not {nets[0]}")
        self._nets = tuple(nets)
        groups = max(shuffle_of) + 1
        even = len({list(shuffle_of).count(u) for u in range(groups)}) == 1
        # Trials in the order of their shuffle rows, and where trial k sits in that order.
        order = sorted(range(len(nets)), key=lambda k: shuffle_of[k]) if even else list(range(len(nets)))
        self.groups = groups if even else len(nets)
        self.register_buffer("shuffle_of", torch.tensor(list(shuffle_of)), persistent=False)
        self.register_buffer(
            "position", torch.tensor([order.index(k) for k in range(len(order))]), persistent=False
        )
        self._grouped = order != list(range(len(nets)))  # scores come out grouped: put them back
        self._share_rows = even
        self._rest = [isinstance(layer, nn.Linear) for layer in list(nets[0].children())[2:]]  # else ReLU
        self._order = order  # row j of a stacked tensor is trial order[j]'s
        self.register_buffer("trial_of_row", torch.tensor(order), persistent=False)
        self._linears = [i for i, layer in enumerate(nets[0].children()) if isinstance(layer, nn.Linear)]
        # Per Linear layer, the trials' weights `[K, out, in]` and biases `[K, out]`, rows in `order`; trials
        # of different widths (`model.net.hidden`) sit in the widest one's shape, the rest zeros (see `padded`).
        self.weights = nn.ParameterList(
            [
                nn.Parameter(
                    padded([nets[k][i].weight.detach() for k in order], [w[i].weight for w in widest])
                )
                for i in self._linears
            ]
        )
        self.biases = nn.ParameterList(
            [
                nn.Parameter(padded([nets[k][i].bias.detach() for k in order], [w[i].bias for w in widest]))
                for i in self._linears
            ]
        )
        # A continuous stack whose refills may bring other widths computes every trial at its own width
        # throughout (`own_grads` stays as it is for the fit, whatever widths its slots hold at a time).
        full = [tuple(w.shape[1:]) for w in self.weights]
        self._refillable = any([tuple(net[i].weight.shape) for i in self._linears] != full for net in widest)
        self.tie()
        # A checkpoint holds each trial's own parameters only (a single run's names, read by `split`): the
        # stacked leaves are those same values, so they are left out, and loaded through the trials' views.
        self.register_state_dict_post_hook(_without_leaves)
        self.register_load_state_dict_pre_hook(_leaves_as_they_are)

    @property
    def rows(self) -> list[int]:
        """`rows[j]`: the trial whose row j of every stacked leaf is."""
        return list(self._order)

    def stacked(self) -> list[tuple[nn.Parameter, list[nn.Parameter]]]:
        """Each stacked leaf with the trials' own parameters that are its rows, in row order."""
        pairs = []
        for layer, i in enumerate(self._linears):
            pairs.append((self.weights[layer], [self._nets[k][i].weight for k in self._order]))
            pairs.append((self.biases[layer], [self._nets[k][i].bias for k in self._order]))
        return pairs

    def tie(self) -> None:
        """Each trial's parameters become views of its rows of the stacked leaves (again after a device move,
        which gives every tensor new storage)."""
        for leaf, own in self.stacked():
            for row, param in zip(leaf.data.unbind(0), own, strict=True):
                param.data = own_part(row, param)
        # Per trial (trial order), each Linear's (out, in); ragged when some trial is narrower than its rows.
        widths = [tuple(tuple(net[i].weight.shape) for i in self._linears) for net in self._nets]
        full = tuple(tuple(w.shape[1:]) for w in self.weights)
        self._ragged = self._refillable or any(shapes != full for shapes in widths)
        self._row_of = self.shuffle_of.tolist()  # trial k's row of a training batch
        self._layers = [list(net.children())[1:] for net in self._nets]  # past the Flatten

    def refill(self, k: int, net: nn.Sequential) -> None:
        """Trial k's slot holds another trial's net (a continuous stack, `stacked.slots`): its weights copied
        into the slot's rows, zeros around a narrower one (as `padded` leaves them), its parameters views of
        them."""
        incoming = [p for i in self._linears for p in (net[i].weight, net[i].bias)]
        for (leaf, _), param in zip(self.stacked(), incoming, strict=True):
            if any(n > m for n, m in zip(param.shape, leaf.shape[1:], strict=True)):
                raise ValueError(
                    f"a {tuple(param.shape)} parameter does not fit the stack's {tuple(leaf.shape[1:])} rows"
                )
        nets = list(self._nets)
        nets[k] = net
        self._nets = tuple(nets)
        row = self._order.index(k)
        with torch.no_grad():
            for leaf, own in self.stacked():
                leaf.data[row].zero_()
                own_part(leaf.data[row], own[row]).copy_(own[row].detach())
        self.tie()

    @property
    def own_grads(self) -> bool:
        """Whether each trial's gradient is in its own parameters (trials of different widths, computed at
        their own widths, `_ragged_scores`) rather than in the stacked leaves."""
        return self._ragged

    def hand_out_grads(self, only: Sequence[int] | None = None) -> None:
        """Each trial's gradient, a view of its row of the stacked one, for a stock optimizer's step; with
        `only` (trials of different batch sizes), the other trials get none, so the optimizer passes them
        over (they are still accumulating)."""
        stepping = set(only) if only is not None else None
        for leaf, own in self.stacked():
            if leaf.grad is not None:
                for k, row, param in zip(self._order, leaf.grad.unbind(0), own, strict=True):
                    param.grad = own_part(row, param) if stepping is None or k in stepping else None

    def restart_grads(self, stepped: torch.Tensor) -> None:
        """The stacked gradients of the trials that just stepped (`stepped[k]`, in trial order) start again
        from 0; the others keep accumulating."""
        rows = stepped.index_select(0, self.trial_of_row)
        for leaf in self.parameters():
            if leaf.grad is not None:
                leaf.grad.masked_fill_(rows.view(-1, *([1] * (leaf.dim() - 1))), 0.0)

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        result = super()._apply(fn, recurse)
        self.tie()
        return result

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Scores `[K, B, outputs]` from a training batch `[U, B, ...]` or one batch `[B, ...]` for all trials."""
        if self._ragged:
            return self._ragged_scores(images)
        weights, biases = list(self.weights), list(self.biases)  # rows in `order`
        if images.dim() == 4:  # one batch: every trial reads the same rows
            scores = self._scores(images.unsqueeze(0), weights, biases, groups=1)
        elif not self._share_rows:  # rows in trial order (`order` is the identity)
            return self._scores(images.index_select(0, self.shuffle_of), weights, biases, groups=self.groups)
        else:
            scores = self._scores(images, weights, biases, groups=self.groups)
        return scores.index_select(0, self.position) if self._grouped else scores

    def _ragged_scores(self, images: torch.Tensor) -> torch.Tensor:
        """Trials of different widths: each trial's layers at its own width, one matmul per layer per trial,
        so a narrow trial costs its own FLOPs, not the widest one's. The matmuls read each trial's own
        parameters (views of its part of its rows), so the backward pass leaves each trial's gradient in
        its own parameters, at its own shape, where a stock optimizer steps it as its single run's does
        (`StackedClassifier.configure_optimizers`): the padded stacked leaves are never read or written
        per step."""
        x = images.flatten(1 if images.dim() == 4 else 2)  # [B, pixels] or [U, B, pixels]
        return torch.stack(
            [self.trial_scores(k, x if x.dim() == 2 else x[self._row_of[k]]) for k in range(len(self._nets))]
        )

    def row_of(self, k: int) -> int:
        """Which row of a training batch (`[U, B, ...]`) is trial k's."""
        return self._row_of[k]

    def trial_scores(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """Trial k's scores `[B, outputs]` from its flattened rows `[B, pixels]`, at its own width, from its own
        parameters (see `_ragged_scores`)."""
        for layer in self._layers[k]:
            if isinstance(layer, nn.Linear):
                x = torch.addmm(layer.bias, x, layer.weight.t())
            else:
                x = torch.relu(x)
        return x

    def _scores(
        self, images: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor], groups: int
    ) -> torch.Tensor:
        weight, bias = weights[0], biases[0]  # [K, out, pixels], [K, out]
        k, out, pixels = weight.shape
        batch = images.shape[1]
        x = images.flatten(2)  # [U, B, pixels]
        hidden = torch.baddbmm(bias.view(groups, -1, 1), weight.view(groups, -1, pixels), x.transpose(1, 2))
        hidden = hidden.view(k, out, batch).transpose(1, 2)  # [K, B, out]
        layer = 1
        for linear in self._rest:
            if linear:
                weight, bias = weights[layer], biases[layer]  # [K, out, in], [K, out]
                hidden = torch.baddbmm(bias.unsqueeze(1), hidden, weight.transpose(1, 2))  # [K, B, out]
                layer += 1
            else:
                hidden = torch.relu(hidden)
        return hidden


def padded(tensors: Sequence[torch.Tensor], also: Sequence[torch.Tensor] = ()) -> torch.Tensor:
    """The trials' tensors of one layer stacked, each in the top-left corner of the largest shape, zeros
    around it. A trial narrower than the widest keeps its extra units at exactly 0: their input weights and
    bias are 0, so their ReLU output is 0 and ReLU's gradient at 0 is 0, and their output weights see a 0
    input, so no gradient, decay, momentum or Adam step ever moves them. Its scores are its own net's, summed
    with exact zeros. `also`: tensors whose shapes the rows must hold too (their values are not used)."""
    shape = [max(sizes) for sizes in zip(*(t.shape for t in [*tensors, *also]), strict=True)]
    out = tensors[0].new_zeros(len(tensors), *shape)
    for row, tensor in zip(out, tensors, strict=True):
        own_part(row, tensor).copy_(tensor)
    return out


def own_part(row: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """The part of a stacked leaf's row that is this trial's parameter (all of it, unless it is narrower)."""
    return row[tuple(slice(0, n) for n in param.shape)]


def _without_leaves(module: StackedNet, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    for name, _ in module.named_parameters():
        state_dict.pop(prefix + name, None)


def _leaves_as_they_are(module: StackedNet, state_dict: dict, prefix: str, *args) -> None:
    """The leaves take their own current values (the trials' entries, loaded into their views, set them)."""
    for name, param in module.named_parameters():
        state_dict.setdefault(prefix + name, param.detach().clone())
