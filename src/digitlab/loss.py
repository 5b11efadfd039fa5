"""Losses, selected by `conf/loss/`. Each says whether it reads one logit per image (`binary = True`, the
chapter's "probability of a 3") or one logit per class; `ClassifierModule` sizes the net's output from it.
Each also computes K stacked trials' losses at once (`per_trial`: `[K, B]` logits, or `[K, B, C]`, against
`[K, B]` or shared `[B]` targets -> `[K]`), the same elementwise terms averaged per trial: one op for the
stack instead of `vmap` over the single loss, which cost most of a small stack's step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def mnist_loss(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The chapter's loss: how far the sigmoid of each prediction is from its 0/1 target, averaged.

    `predictions` are raw scores (logits) `[B]`; `targets` are 0/1 `[B]` with 1 meaning "a 3".
    """
    predictions = predictions.sigmoid()
    return torch.where(targets == 1, 1 - predictions, predictions).mean()


class MnistLoss(nn.Module):
    """`mnist_loss` as a module (binary only: it reads one logit per image)."""

    binary = True

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return mnist_loss(logits, targets)

    def per_trial(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        predictions = logits.sigmoid()
        return torch.where(targets == 1, 1 - predictions, predictions).mean(-1)


class BinaryCrossEntropy(nn.Module):
    """Binary cross entropy on one logit per image: mnist_loss's log-likelihood cousin."""

    binary = True

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))

    def per_trial(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = targets.to(logits.dtype).expand_as(logits)
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(-1)


class CrossEntropy(nn.CrossEntropyLoss):
    """Cross entropy on one logit per class (any number of classes)."""

    binary = False

    def per_trial(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.weight is not None or self.ignore_index >= 0:  # a weighted mean: each trial's own
            return torch.stack(
                [self(row, targets[k] if targets.dim() == 2 else targets) for k, row in enumerate(logits)]
            )
        k, b, classes = logits.shape
        terms = F.cross_entropy(
            logits.reshape(k * b, classes),
            targets.expand(k, b).reshape(k * b),
            reduction="none",
            label_smoothing=self.label_smoothing,
        )
        return terms.view(k, b).mean(-1)
