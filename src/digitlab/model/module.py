"""The LightningModules. `DigitClassifier` holds what every model shares (labels from scores, torchmetrics
accuracy overall and per class, the logged names); `ClassifierModule` adds a net, a loss and an optimizer.

Logged every epoch: `train/loss`, `train/acc`, `val/loss`, `val/acc` (the chapter's `batch_accuracy` over the
whole validation set), `val/acc_<class>` (e.g. `val/acc_3`), `val/acc_macro` (mean of the per-class
accuracies: the chapter's "(accuracy_3s + accuracy_7s) / 2") and `val/acc_best`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassAccuracy

from digitlab.checkpoint_format import BEST_KEY
from digitlab.drawing import Grid
from digitlab.errors import ConfigError
from digitlab.scheduler import build_scheduler

MAX_UNITS_SHOWN = 30  # the chapter's simple_net has 30 hidden units
SHOWN_IN_PROGRESS_BAR = ("val/loss", "val/acc", "train/loss")


def validation_metrics(
    loss: torch.Tensor | None,
    acc: torch.Tensor,
    per_class: torch.Tensor,
    acc_best: torch.Tensor,
    class_names: Sequence[str],
) -> dict[str, torch.Tensor]:
    """A validation epoch's metrics by the names a run logs them under (TensorBoard, `metrics.json`,
    checkpoint file names, compare), in that order: one value each for a single run, or a `[K]` column each
    for a stack's K trials (`per_class`: `[classes]` or `[K, classes]`). `loss` None: a model without one."""
    metrics = {} if loss is None else {"val/loss": loss}
    metrics["val/acc"] = acc
    metrics |= {f"val/acc_{name}": per_class[..., i] for i, name in enumerate(class_names)}
    metrics["val/acc_macro"] = per_class.mean(-1)
    metrics["val/acc_best"] = acc_best
    return metrics


def train_metrics(
    loss_sum: torch.Tensor, correct: torch.Tensor, count: torch.Tensor
) -> dict[str, torch.Tensor]:
    """A training epoch's metrics by their names, from its sums (one value, or a `[K]` column each)."""
    return {"train/loss": loss_sum / count, "train/acc": correct / count}


class DigitClassifier(L.LightningModule):
    """Scores -> labels -> metrics and logs. Subclasses implement `forward` (scores) and, if they learn, a loss.

    Scores are one logit per image when `binary` (positive means label 1, the chapter's "a 3"), else one
    score per class (highest wins).
    """

    def __init__(self, class_names: Sequence[str], binary: bool) -> None:
        super().__init__()
        self.class_names = tuple(str(name) for name in class_names)
        # Kept in checkpoints; logger=False because RunResults logs the whole composed config instead.
        self.save_hyperparameters({"class_names": list(self.class_names)}, logger=False)
        self.binary = binary
        n = len(self.class_names)
        # validate_args=False: the inputs are our own integer predictions, and the checks cost host syncs.
        self.val_acc = MulticlassAccuracy(num_classes=n, average="micro", validate_args=False)
        self.val_acc_per_class = MulticlassAccuracy(num_classes=n, average=None, validate_args=False)
        self.val_acc_best = MaxMetric()
        # (loss * n, n) of the current validation pass, summed on the device and logged once per epoch.
        self.register_buffer("val_sums", torch.zeros(2), persistent=False)

    def predict_labels(self, scores: torch.Tensor) -> torch.Tensor:
        # logit > 0 is the chapter's `sigmoid(logit) > 0.5`, without torchmetrics guessing whether these are logits.
        return (scores > 0).long() if self.binary else scores.argmax(dim=-1)

    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """`[B, num_classes]` class probabilities."""
        if self.binary:
            p = scores.sigmoid()
            return torch.stack([1 - p, p], dim=-1)
        return scores.softmax(dim=-1)

    def loss(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        """The training loss; None for models that do not learn by gradient descent."""
        return None

    def pictures(self) -> dict[str, Grid]:
        """What this model can show of itself: name -> a captioned grid of 28x28 images."""
        return {}

    def on_train_start(self) -> None:
        # The sanity-check validation before training must not count towards the best accuracy; a resumed
        # run's best so far comes from its checkpoint.
        self.val_acc_best.reset()
        restored = getattr(self, "_restored_best", None)
        if restored is not None and restored > float("-inf"):
            self.val_acc_best.update(torch.tensor(restored))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # torchmetrics keeps its states out of the state dict; the best so far is part of the run's state.
        checkpoint[BEST_KEY] = float(self.val_acc_best.max_value)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._restored_best = checkpoint.get(BEST_KEY)

    def on_validation_epoch_start(self) -> None:
        self.val_sums.zero_()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict:
        images, labels = batch
        scores = self(images)
        preds = self.predict_labels(scores)
        loss = self.loss(scores, labels)
        if loss is not None:
            self.val_sums += torch.stack([loss.detach() * len(labels), torch.full_like(loss, len(labels))])
        self.val_acc.update(preds, labels)
        self.val_acc_per_class.update(preds, labels)
        return {"preds": preds, "scores": scores.detach()}

    def on_validation_epoch_end(self) -> None:
        # Logged here, once: a self.log per validation step costs more than a small model's step. The
        # torchmetrics states and (under DDP) the loss sums are reduced over every process's batches.
        loss = None
        if type(self).loss is not DigitClassifier.loss:  # the baseline has no loss to report
            loss_sum, count = self.trainer.strategy.reduce(self.val_sums, reduce_op="sum")
            loss = loss_sum / count
        acc = self.val_acc.compute()
        per_class = self.val_acc_per_class.compute()
        self.val_acc.reset()
        self.val_acc_per_class.reset()
        self.val_acc_best.update(acc)
        metrics = validation_metrics(loss, acc, per_class, self.val_acc_best.compute(), self.class_names)
        for name, value in metrics.items():
            self.log(name, value, prog_bar=name in SHOWN_IN_PROGRESS_BAR)


class ClassifierModule(DigitClassifier):
    """Any net + loss + optimizer (+ scheduler), all injected by Hydra.

    Args:
        net: builds the `nn.Module` given `num_outputs` (a `_partial_` config): 1 for a binary loss, else the
            number of classes, so one net config serves MNIST_SAMPLE and MNIST with any loss.
        loss: a module from `digitlab.loss` (its `binary` attribute says what scores it reads).
        optimizer: builds the optimizer given `params` (a `_partial_` config).
        scheduler: builds an lr scheduler given `optimizer` (stepped every batch), or None.
        class_names: from the datamodule; `class_names[label]` is that label's digit.
        compile: run the net through `torch.compile` (the same math, fused kernels; the first steps wait
            for the compiler): true, or a dict of `torch.compile` arguments such as `{mode: max-autotune}`.
            Only the net is compiled: metrics and logging stay eager, and checkpoints are the same as
            without it.
    """

    def __init__(
        self,
        net: Callable[..., nn.Module],
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable | None = None,
        class_names: Sequence[str] = ("7", "3"),
        compile: bool | dict[str, Any] = False,
    ) -> None:
        binary = bool(getattr(loss, "binary", False))
        super().__init__(class_names, binary)
        if binary and len(self.class_names) != 2:
            raise ConfigError(
                f"loss {type(loss).__name__} reads one logit per image, so it only works with 2 classes; the "
                f"data has {len(self.class_names)} ({', '.join(self.class_names)}). Use loss=cross_entropy."
            )
        self.net = net(num_outputs=1 if binary else len(self.class_names))
        # Kept out of the module tree (a tuple, not an attribute nn.Module registers), so the state dict
        # holds the net's weights once, under the same names as an eager run's.
        options = compile if isinstance(compile, dict) else {}
        self._compiled_net = (torch.compile(self.net, **options),) if compile else ()
        self.loss_fn = loss
        # (loss * n, correct, n) of the current training epoch; not saved in checkpoints.
        self.register_buffer("train_sums", torch.zeros(3), persistent=False)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        net = self._compiled_net[0] if self._compiled_net else self.net
        scores = net(images)
        return scores.squeeze(-1) if self.binary else scores

    def loss(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(scores, labels)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        scores = self(images)
        loss = self.loss(scores, labels)
        # Running sums on the device, logged once per epoch: for a small model, a self.log or a torchmetrics
        # update per step costs more than the step itself, and only the epoch means are logged anyway.
        with torch.no_grad():
            correct = (self.predict_labels(scores) == labels).sum().to(loss.dtype)
            self.train_sums += torch.stack([loss * len(labels), correct, torch.full_like(loss, len(labels))])
        return loss

    def on_train_epoch_start(self) -> None:
        self.train_sums.zero_()

    def on_train_epoch_end(self) -> None:
        sums = self.trainer.strategy.reduce(self.train_sums, reduce_op="sum")
        for name, value in train_metrics(*sums).items():
            self.log(name, value, prog_bar=name in SHOWN_IN_PROGRESS_BAR)

    def pictures(self) -> dict[str, Grid]:
        """The first layer's weights as 28x28 images (the chapter's `w[0].view(28, 28)`), for nets that start
        with a Linear layer on the pixels (linear, mlp), with what their colours mean."""
        linears = [m for m in self.net.modules() if isinstance(m, nn.Linear)]
        if not linears or linears[0].in_features != 28 * 28:
            return {}
        first = linears[0]
        weights = first.weight.detach()[:MAX_UNITS_SHOWN]
        shown = f"{len(weights)} of {first.out_features}" if first.out_features > len(weights) else "all"
        if len(linears) == 1:  # the output layer itself: each unit's weights argue for a class
            if self.binary:  # one logit: a positive one is the second class (`probabilities`)
                low, high = self.class_names
                return {
                    "first_layer_weights": Grid(
                        weights.view(-1, 1, 28, 28),
                        [f"{high} vs {low}"],
                        "bwr",
                        "each pixel's weight (linear model)",
                        (f"a bright pixel pushes towards {low}", f"towards {high}"),
                    )
                }
            captions = [f"digit {self.class_names[i]}" for i in range(len(weights))]
            title, legend = "each digit's pixel weights", ("a bright pixel argues against it", "for it")
        else:
            captions = [f"unit {i}" for i in range(len(weights))]
            title = f"first layer: {shown} hidden units' pixel weights"
            legend = ("a bright pixel lowers the unit", "raises it")
        return {"first_layer_weights": Grid(weights.view(-1, 1, 28, 28), captions, "bwr", title, legend)}

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = build_scheduler(
            self.scheduler_factory, optimizer, self.trainer.estimated_stepping_batches
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
