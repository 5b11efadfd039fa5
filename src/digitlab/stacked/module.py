"""K trials' `ClassifierModule`s trained as one LightningModule.

Each trial keeps its own module (its net's parameters initialised from its own seed, exactly as a single run
draws them, and saved in its own checkpoints under the same names). A step runs the trials' nets as one
(`net.py`: batched matmuls, no Python loop over trials). The trials' losses are summed: their parameters
are disjoint, so each trial's gradient is its own loss's.
One optimizer holds one param group per trial, with that trial's hyperparameters: `StackedSGD` for SGD
(each stacked leaf stepped at once, `optim.py`), else a stock torch optimizer of the trials' class, each trial's
gradient handed to its own parameters; trials of different widths, whose gradients are their own parameters'
already (`StackedNet.own_grads`), always step with the stock one. Each trial keeps its own stock lr scheduler.

Metrics are kept per trial on the device and handed to `on_epoch_metrics` once per epoch as
`[{name: value}] * K`, the names a single run logs; the last validation's predictions stay for the pictures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.func import vmap

from digitlab.checkpoint_format import STACKED_BEST_KEY, Continued, recount
from digitlab.model.module import ClassifierModule, train_metrics, validation_metrics
from digitlab.scheduler import build_scheduler
from digitlab.stacked.net import StackedNet
from digitlab.stacked.optim import StackedSGD, refill_group, vectorisable
from digitlab.stacked.steps import StepPlan

EpochMetrics = Callable[[list[dict[str, float]]], None]


class StackedClassifier(L.LightningModule):
    def __init__(
        self,
        trials: Sequence[ClassifierModule],
        on_epoch_metrics: EpochMetrics,
        shuffle_of: Sequence[int] | None = None,
        compile: bool | dict[str, Any] = False,
        plan: StepPlan | None = None,
        widest: Sequence[nn.Sequential] = (),
        trial_epochs: int | None = None,
        continued: dict[int, Continued] | None = None,
    ) -> None:
        """`shuffle_of[k]`: which row of a training batch (one per distinct shuffle order, `batches.py`) is
        trial k's; default: one row per trial. `plan`: when each trial steps, for trials of different batch
        sizes (`steps.py`); default: every trial at every batch. A continuous stack's (`slots.py`): `widest`,
        the nets a refill may bring that its rows must hold, and `trial_epochs`, each trial's own epochs
        (its scheduler's length; the fit itself runs until no trial is left), and `continued`: the trials
        that continue a run from the end of an epoch (their weights loaded), by slot (`continue_slot`)."""
        super().__init__()
        self.trials = nn.ModuleList(trials)
        first = trials[0]
        shuffle_of = list(shuffle_of) if shuffle_of is not None else list(range(len(trials)))
        self.net = StackedNet([trial.net for trial in trials], shuffle_of, widest)
        self.trial_epochs = trial_epochs
        self.continued = dict(continued or {})
        # As ClassifierModule compiles its net (`model.compile`): out of the module tree, the same weights.
        options = compile if isinstance(compile, dict) else {}
        self._compiled_net = (torch.compile(self.net, **options),) if compile else ()
        self.binary = first.binary
        self.class_names = first.class_names
        self.loss_fn = first.loss_fn
        self.on_epoch_metrics = on_epoch_metrics
        k, c = len(trials), len(self.class_names)
        self.register_buffer("train_sums", torch.zeros(k, 3), persistent=False)  # loss * n, correct, n
        self.register_buffer("val_loss_sums", torch.zeros(k), persistent=False)
        self.register_buffer("val_correct", torch.zeros(k, c), persistent=False)  # per class
        self.register_buffer("val_counts", torch.zeros(c), persistent=False)
        self.register_buffer("val_acc_best", torch.full((k,), -1.0), persistent=False)
        # The first step at which each trial's loss was not finite (-1: none), kept on the device so that
        # watching costs no host sync per step; `TrialRecords` reads it.
        self.register_buffer("first_bad_step", torch.full((k,), -1, dtype=torch.long), persistent=False)
        self.left_lr: dict[int, float] = {}  # trials that left the stack (`leave`): the lr each had
        self.plan: StepPlan | None = None
        self._recent: list[tuple[torch.Tensor, torch.Tensor]] = []  # `_own_batches_step`'s micro-batches
        self._stepping: torch.Tensor | None = None  # this micro-batch's `steps_after` row
        self._stepped: torch.Tensor | None = None  # the previous one's: their gradients start again
        self.use_plan(plan)

    def use_plan(self, plan: StepPlan | None) -> None:
        """When each trial steps from now on (a continuous stack's plan changes as its slots refill)."""
        self.plan = plan
        if plan is not None and not plan.uniform:
            # Per micro-batch j: each trial's loss weight, whether it steps after j, the step j belongs to.
            for name, value in (
                ("step_weights", plan.weights.float()),
                ("steps_after", plan.steps_after),
                ("step_number", plan.step_number),
                ("epoch_steps", torch.tensor(plan.steps_per_epoch)),
                ("joined_at", torch.tensor(plan.start_epochs)),  # a continuous stack's (0s otherwise)
            ):
                self.register_buffer(name, value.to(self.device), persistent=False)
            self._steppers = [torch.nonzero(row).flatten().tolist() for row in plan.steps_after]
            # Per micro-batch j, for `_own_batches_step`: each trial stepping after j, with the number of
            # micro-batches its batch spans (j and those before it since its last step).
            j = torch.arange(plan.micro_per_epoch).unsqueeze(1)
            spans = j + 1 - (plan.step_number - 1) * torch.tensor(plan.per_step)
            self._spans = [[(k, int(spans[j, k])) for k in ks] for j, ks in enumerate(self._steppers)]
            self._longest_step = max(plan.per_step)

    @property
    def size(self) -> int:
        return len(self.trials)

    @property
    def mixed(self) -> bool:
        """Whether the trials' batch sizes differ (they step at different micro-batches)."""
        return self.plan is not None and not self.plan.uniform

    def trial_steps(self, k: int, micro_batches: int) -> int:
        """Trial k's own step count (its single run's) after `micro_batches` trained batches of the stack."""
        return self.plan.trial_steps(k, micro_batches) if self.mixed else micro_batches

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Scores `[K, B]` (binary) or `[K, B, classes]` from one batch `[B, ...]` for all trials, or from a
        training batch `[U, B, ...]` of the U distinct shuffle orders (`StackedNet`)."""
        scores = (self._compiled_net[0] if self._compiled_net else self.net)(images)
        return scores.squeeze(-1) if self.binary else scores

    def losses(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """`[K]`: each trial's loss on its own batch (labels `[K, B]`) or the shared one (`[B]`)."""
        per_trial = getattr(self.loss_fn, "per_trial", None)  # digitlab's losses: one op for the stack
        if per_trial is not None:
            return per_trial(scores, labels)
        return vmap(self.loss_fn, in_dims=(0, 0 if labels.dim() == 2 else None))(scores, labels)

    def predict_labels(self, scores: torch.Tensor) -> torch.Tensor:
        return (scores > 0).long() if self.binary else scores.argmax(dim=-1)

    # Training -------------------------------------------------------------------------------------------

    @property
    def own_batches(self) -> bool:
        """Whether each trial is computed on its own batch when it steps (`_own_batches_step`): trials of
        different batch sizes computed at their own widths."""
        return self.mixed and self.net.own_grads

    def on_train_epoch_start(self) -> None:
        self.train_sums.zero_()
        self._recent = []

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.own_batches:
            return self._own_batches_step(*batch, batch_idx)
        images, labels = batch  # [U, B, ...], [U, B]: one row per distinct shuffle order
        labels = labels.index_select(0, self.net.shuffle_of)
        scores = self(images)
        losses = self.losses(scores, labels)
        with torch.no_grad():
            n = labels.shape[-1]
            correct = (self.predict_labels(scores) == labels).sum(-1).to(losses.dtype)
            self.train_sums += torch.stack([losses * n, correct, torch.full_like(losses, n)], dim=1)
        bad = ~torch.isfinite(losses.detach())
        # named as a single run names it (`StopOnNonFiniteLoss`): the steps taken, this one included
        step = (
            self.epoch_steps * (self.current_epoch - self.joined_at) + self.step_number[batch_idx]
            if self.mixed
            else torch.full_like(self.first_bad_step, self.global_step + 1)
        )
        self.first_bad_step = torch.where(bad & (self.first_bad_step < 0), step, self.first_bad_step)
        # A diverged trial adds nothing: the others' loss stays finite (their gradients never mix with its own).
        losses = losses.masked_fill(bad, 0.0)
        if self.mixed:  # each micro-batch's share of its trial's batch (`steps.py`)
            losses = losses * self.step_weights[batch_idx].to(losses.dtype)
        return losses.sum()

    def _own_batches_step(self, images: torch.Tensor, labels: torch.Tensor, batch_idx: int) -> torch.Tensor:
        """Trials of different batch sizes computed at their own widths: a trial is computed only on the
        micro-batch that completes its batch, on the whole batch (the micro-batches since its last step,
        kept in `_recent`), so its loss, gradient and step are its single run's, at its own batch size.
        A trial between two steps, or one that left the stack, costs nothing; its parameters get no
        gradient, so the stock optimizer passes them over."""
        self._recent.append((images, labels))
        del self._recent[: -self._longest_step]
        losses, steps = [], []
        for k, span in self._spans[batch_idx]:
            if k in self.left_lr:
                continue
            row, part = self.net.row_of(k), self._recent[-span:]
            x = torch.cat([im[row] for im, _ in part]) if span > 1 else images[row]
            y = torch.cat([lb[row] for _, lb in part]) if span > 1 else labels[row]
            scores = self.net.trial_scores(k, x.flatten(1))
            scores = scores.squeeze(-1) if self.binary else scores
            loss = self.loss_fn(scores, y)
            with torch.no_grad():  # as a single run sums its steps (`ClassifierModule.training_step`)
                correct = (self.predict_labels(scores) == y).sum().to(loss.dtype)
                self.train_sums[k] += torch.stack([loss * len(y), correct, torch.full_like(loss, len(y))])
            losses.append(loss)
            steps.append(k)
        if not losses:  # no trial's batch ends here: nothing to back-propagate (`backward`)
            return torch.zeros((), device=self.device)
        total = torch.stack(losses)
        # On the CPU, reading whether every loss is finite costs no device sync: a step without a bad loss
        # skips the bookkeeping below.
        if total.device.type == "cpu" and bool(torch.isfinite(total).all()):
            return total.sum()
        bad = ~torch.isfinite(total.detach())
        stepping = torch.tensor(steps, device=self.device)
        # named as a single run names it (`StopOnNonFiniteLoss`): the steps taken, this one included
        step = (
            self.epoch_steps[stepping] * (self.current_epoch - self.joined_at[stepping])
            + self.step_number[batch_idx][stepping]
        )
        first = self.first_bad_step[stepping]
        self.first_bad_step[stepping] = torch.where(bad & (first < 0), step, first)
        # A diverged trial adds nothing: the others' loss stays finite (their gradients never mix with its own).
        return total.masked_fill(bad, 0.0).sum()

    def backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        if loss.requires_grad:  # not when no trial's batch ended (`_own_batches_step`)
            super().backward(loss, *args, **kwargs)

    def configure_optimizers(self):
        """One optimizer of the trials' class, one param group per trial with that trial's settings. Each
        trial's scheduler is built as a single run builds it, on the trial's own optimizer, whose one param
        group is the very dict the shared optimizer holds, so the scheduler's lr reaches the shared step."""
        own = [trial.optimizer_factory(params=trial.parameters()) for trial in self.trials]
        groups = [optimizer.param_groups[0] for optimizer in own]
        # Trials of different widths keep their gradients in their own parameters (`StackedNet.own_grads`):
        # a stock optimizer steps them as their single runs' do, without touching the padded leaves.
        if vectorisable(own) and not self.net.own_grads:
            shared = StackedSGD(groups, own[0].defaults, self.net.stacked(), self.net.rows)
        else:
            shared = type(own[0])(groups, **_arguments_of(type(own[0]), own[0].defaults))
        self.trial_optimizers, self.trial_schedulers = own, TrialSchedulers(shared, [])
        factories = [trial.scheduler_factory for trial in self.trials]
        if factories[0] is None:
            return shared
        schedulers = [
            build_scheduler(f, optimizer, self._scheduled_steps(k))
            for k, (f, optimizer) in enumerate(zip(factories, own, strict=True))
        ]
        self.trial_schedulers = TrialSchedulers(shared, schedulers)
        return {"optimizer": shared, "lr_scheduler": {"scheduler": self.trial_schedulers, "interval": "step"}}

    def _scheduled_steps(self, k: int) -> int:
        """Trial k's steps over its whole run: what its single run's scheduler is sized to."""
        if self.trial_epochs is not None:  # a continuous stack: the fit runs until no trial is left
            return self.trial_epochs * self.plan.steps_per_epoch[k]
        return self.trial_steps(k, self.trainer.estimated_stepping_batches)

    def refill(self, k: int, trial: ClassifierModule, plan: StepPlan) -> None:
        """Slot k holds a new trial from the next epoch on (a continuous stack, `slots.py`): its net's
        weights in the slot's rows, its own optimizer's param group (its settings, no state yet) and its
        own scheduler in the slot's place, its best val/acc and divergence watch started again; `plan`
        the stack's steps with it."""
        trial.to(self.device)
        self.trials[k] = trial
        self.net.refill(k, trial.net)
        own = trial.optimizer_factory(params=trial.parameters())
        shared = self.trainer.optimizers[0]
        if isinstance(shared, StackedSGD):
            shared.refill(k, own.param_groups[0], self.net.stacked())
        else:
            refill_group(shared, k, own.param_groups[0])
        self.trial_optimizers[k] = own
        self.use_plan(plan)
        if trial.scheduler_factory is not None:
            self.trial_schedulers.schedulers[k] = build_scheduler(
                trial.scheduler_factory, own, self._scheduled_steps(k)
            )
        self.trial_schedulers.stopped.discard(k)
        self.left_lr.pop(k, None)
        self.val_acc_best[k] = -1.0
        self.first_bad_step[k] = -1

    def continue_slot(self, k: int, continued: Continued) -> None:
        """Slot k's trial (its weights loaded, `refill`ed or built with the stack) continues its run from the
        end of an epoch: its own optimizer's state (param group and momentum), its scheduler's, its best
        val/acc so far (a continuous stack's, `slots.py`)."""
        own = self.trial_optimizers[k]
        own.load_state_dict(continued.optimizer)  # its group becomes a new dict: the shared one's slot k
        shared = self.trainer.optimizers[0]
        if isinstance(shared, StackedSGD):
            shared.refill(k, own.param_groups[0], self.net.stacked(), own.state)
        else:
            refill_group(shared, k, own.param_groups[0])
            shared.state.update(own.state)
        if continued.scheduler is not None:
            self.trial_schedulers.schedulers[k].load_state_dict(continued.scheduler)
        self.val_acc_best[k] = continued.best

    def on_after_backward(self) -> None:
        # Trials of different widths: each gradient is in its trial's own parameters already (and when batch
        # sizes differ too, only the trials that step now have one, `_own_batches_step`).
        if self.net.own_grads:
            return
        if not isinstance(self.trainer.optimizers[0], StackedSGD):  # a stock optimizer steps each trial's own
            self.net.hand_out_grads(self._stepping_now if self.mixed else None)

    def optimizer_step(
        self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None
    ) -> None:
        """Trials of different batch sizes: only those whose batch this micro-batch completes step."""
        if not self.mixed:
            return super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        self._stepping = self.steps_after[batch_idx]
        self._stepping_now = self._steppers[batch_idx]
        inner = getattr(optimizer, "optimizer", optimizer)
        if isinstance(inner, StackedSGD):
            inner.only = self._stepping
        optimizer.step(closure=optimizer_closure)  # the closure runs the step, zero_grad and backward
        self._stepped = self._stepping

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: torch.optim.Optimizer) -> None:
        if self.net.own_grads:  # each trial's own gradient, computed whole at its step
            optimizer.zero_grad()
            return
        if not self.mixed or self._stepped is None:
            optimizer.zero_grad()
            self.net.zero_grad()  # the stacked leaves, which a stock optimizer does not hold
            return
        # Trials of different batch sizes: only those that just stepped start again, the others keep
        # accumulating (`StackedSGD.zero_grad` would drop every trial's).
        if not isinstance(getattr(optimizer, "optimizer", optimizer), StackedSGD):
            optimizer.zero_grad()  # the trials' own views, handed out again after the backward
        self.net.restart_grads(self._stepped)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[STACKED_BEST_KEY] = self.val_acc_best.tolist()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A resumed stack (`checkpoint_format.join`): each trial's best val/acc so far; its loops count the
        first trial's steps, which become the stack's micro-batches (Lightning restores the loops later)."""
        if self.mixed:
            recount(checkpoint, self.plan.from_trial(0))  # validation: in the first trial's batches already
        if STACKED_BEST_KEY in checkpoint:
            self.val_acc_best = torch.tensor(checkpoint[STACKED_BEST_KEY], device=self.val_acc_best.device)

    def on_train_start(self) -> None:
        # A resume restores the shared optimizer (after `on_fit_start`, before this) with
        # `Optimizer.load_state_dict`, which puts new dicts in its param_groups: each trial's own optimizer,
        # through which its scheduler sets the lr, gets its group again.
        for own, group in zip(self.trial_optimizers, self.trainer.optimizers[0].param_groups, strict=True):
            own.param_groups[0] = group
        for k, continued in self.continued.items():  # a continuous stack's first trials that continue runs
            self.continue_slot(k, continued)
        self.continued = {}

    def lr_scheduler_step(self, scheduler: TrialSchedulers, metric: Any) -> None:
        scheduler.step(self._stepping_now if self.mixed else None)

    def leave(self, k: int) -> None:
        """Trial k trains no more: its lr becomes 0 and its scheduler, which would set it again, stops; its
        weights stay as they are."""
        group = self.trainer.optimizers[0].param_groups[k]
        self.left_lr[k], group["lr"] = group["lr"], 0.0
        self.trial_schedulers.stopped.add(k)

    # Validation -----------------------------------------------------------------------------------------

    def on_validation_epoch_start(self) -> None:
        self.last_validation: list[tuple[torch.Tensor, ...]] = []  # for pictures
        self.val_loss_sums.zero_()
        self.val_correct.zero_()
        self.val_counts.zero_()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        scores = self(images)
        self.val_loss_sums += self.losses(scores, labels).detach() * len(labels)
        preds = self.predict_labels(scores)  # [K, B]
        self.last_validation.append((images, labels, preds, scores.detach()))
        hits = (preds == labels).to(self.val_correct.dtype)
        classes = nn.functional.one_hot(labels, len(self.class_names)).to(hits.dtype)  # [B, C]
        self.val_correct += hits @ classes
        self.val_counts += classes.sum(0)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        total = self.val_counts.sum()
        acc = self.val_correct.sum(1) / total
        per_class = self.val_correct / self.val_counts
        self.val_acc_best = torch.maximum(self.val_acc_best, acc)
        train = self.train_sums
        loss = self.val_loss_sums / total
        columns = validation_metrics(loss, acc, per_class, self.val_acc_best, self.class_names)
        if train[0, 2] > 0:  # not before the first training epoch
            columns |= train_metrics(*train.unbind(1))
        values = {name: column.tolist() for name, column in columns.items()}  # one host sync per epoch
        self.on_epoch_metrics([{n: v[k] for n, v in values.items()} for k in range(self.size)])

    def last_predictions(self, k: int) -> tuple[torch.Tensor, ...] | None:
        """`(images, labels, trial k's predictions, trial k's scores)` of the last validation, on the CPU."""
        if not getattr(self, "last_validation", None):
            return None
        images = torch.cat([b[0] for b in self.last_validation]).cpu()
        labels = torch.cat([b[1] for b in self.last_validation]).cpu()
        preds = torch.cat([b[2][k] for b in self.last_validation]).cpu()
        return images, labels, preds, torch.cat([b[3][k] for b in self.last_validation]).cpu()


class TrialSchedulers:
    """The trials' own lr schedulers, stepped together where Lightning steps one (every batch)."""

    def __init__(self, optimizer: torch.optim.Optimizer, schedulers: list) -> None:
        self.optimizer = optimizer
        self.schedulers = schedulers
        self.stopped: set[int] = set()  # trials that left the stack: their lr stays 0

    def step(self, only: list[int] | None = None) -> None:
        """Each trial's scheduler (or those of `only`: the trials that stepped)."""
        for k in range(len(self.schedulers)) if only is None else only:
            if k not in self.stopped:
                self.schedulers[k].step()

    def state_dict(self) -> dict[str, Any]:
        return {"schedulers": [scheduler.state_dict() for scheduler in self.schedulers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for scheduler, own in zip(self.schedulers, state["schedulers"], strict=True):
            scheduler.load_state_dict(own)


def _arguments_of(cls: type, defaults: dict[str, Any]) -> dict[str, Any]:
    """The optimizer's defaults that its constructor takes (AdamW keeps `decoupled_weight_decay` among its
    defaults but does not take it), so that a second one of the same class can be built with them."""
    import inspect

    parameters = inspect.signature(cls).parameters
    return {key: value for key, value in defaults.items() if key in parameters}
